"""Configuration: interpolation, validation, and errors with file:line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.core.config import Role
from bot.core.config_loader import parse_config_text

ROOT = Path(__file__).resolve().parents[2]

THREE_MISTAKES = """\
environments:
  - name: staging
  - name: production
    protected: true
services:
  - name: checkout
    image: ex/checkout
    environments: [staging]
  - name: cart
    image: ex/cart
    environments: [staging, prod]
    replicas: {min: 1, max: 3}
    colour: blue
rbac:
  default_role: root
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    _config, errors = parse_config_text(text, "chatops.yaml", env or {})
    return [str(e) for e in errors]


def test_three_mistakes_are_all_reported_with_lines() -> None:
    assert errors_of(THREE_MISTAKES) == [
        "chatops.yaml:11: services[1].environments[1]: unknown environment 'prod' "
        "(known: production, staging)",
        "chatops.yaml:13: services[1].colour: unknown setting (check the spelling)",
        "chatops.yaml:15: rbac.default_role: unknown role 'root' "
        "(one of: viewer, deployer, approver, admin)",
    ]


def test_interpolation_with_defaults_and_missing_variables() -> None:
    text = """\
environments: [{name: staging}]
channels:
  deploys: "${DEPLOYS:-deploys}"
  incidents: "${INCIDENTS}"
  alerts: "cost: $$5"
"""
    config, errors = parse_config_text(text, "c.yaml", {"INCIDENTS": "C123"})
    assert errors == [] and config is not None
    assert config.channels.deploys == "deploys"
    assert config.channels.incidents == "C123"
    assert config.channels.alerts == "cost: $5"
    assert errors_of(text) == [
        "chatops.yaml:4: channels.incidents: environment variable INCIDENTS is not set "
        "(use ${INCIDENTS:-default})"]


def test_duplicates_defaults_and_structure() -> None:
    text = """\
environments: [{name: staging}, {name: staging}]
services:
  - {name: a, image: x, environments: [staging], default_environment: production}
"""
    assert errors_of(text) == [
        "chatops.yaml:1: environments[1].name: duplicate name 'staging'",
        "chatops.yaml:3: services[0].default_environment: "
        "'production' is not one of this service's environments",
    ]
    assert errors_of("- just\n- a list\n") == [
        "chatops.yaml:1: the file must be a mapping of sections"]
    assert errors_of("environments: [\n") [0].startswith("chatops.yaml:2: invalid YAML")
    assert errors_of("services: []\n") == [
        "chatops.yaml:1: environments: required setting is missing"]


def test_the_example_config_is_valid_and_roles_are_ordered() -> None:
    config, errors = parse_config_text((ROOT / "chatops.example.yaml").read_text(),
                                       "chatops.example.yaml", {})
    assert errors == [] and config is not None
    assert [s.name for s in config.services] == ["checkout", "cart", "search"]
    assert config.service("checkout") is not None
    assert config.service("checkout").namespace_for("production") == "shop-production"  # type: ignore[union-attr]
    assert Role.ADMIN > Role.APPROVER > Role.DEPLOYER > Role.VIEWER
    assert config.environment("production").needs_approval  # type: ignore[union-attr]


def test_check_config_command(tmp_path: Path) -> None:
    bad = tmp_path / "chatops.yaml"
    bad.write_text(THREE_MISTAKES)
    run = subprocess.run([sys.executable, "-m", "bot.cli", "check-config", str(bad)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert [line.split(":")[1] for line in lines[:3]] == ["11", "13", "15"]
    assert lines[-1] == f"3 error(s) in {bad}"
    good = subprocess.run([sys.executable, "-m", "bot.cli", "check-config",
                           str(ROOT / "chatops.example.yaml")],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert good.returncode == 0
    assert good.stdout.strip().endswith(
        "OK — 3 services, 2 environments, 3 RBAC grants, 4 runbooks")


def test_alert_routing_must_name_known_services_and_severities() -> None:
    text = """\
environments: [{name: staging}]
services:
  - {name: cart, image: x, environments: [staging]}
alerts:
  severity_map: {critical: SEV7}
  routes:
    - match: {team: payments}
      service: payments
      severity: SEV2
    - match: {job: "~(unclosed"}
"""
    assert errors_of(text) == [
        "chatops.yaml:5: alerts.severity_map.critical: unknown severity 'SEV7' "
        "(known: SEV1, SEV2, SEV3, SEV4)",
        "chatops.yaml:8: alerts.routes[0].service: unknown service 'payments'",
        "chatops.yaml:10: alerts.routes[1]: match.job: bad regular expression: "
        "missing ), unterminated subpattern at position 0",
    ]


def test_oncall_references_are_checked() -> None:
    text = """\
environments: [{name: staging}]
services:
  - {name: cart, image: x, environments: [staging], escalation_policy: cart-team}
severities:
  - {name: SEV1, page: true, policy: nope}
oncall:
  schedules:
    - name: ops
      layers: [{name: primary, participants: [U1], start: "2026-01-05T09:00:00"}]
  escalation_policies:
    - name: default
      steps:
        - targets: [{schedule: ops, layer: primry}, {schedule: dev}]
"""
    assert errors_of(text) == [
        "chatops.yaml:3: services[0].escalation_policy: unknown escalation policy 'cart-team' "
        "(known: default)",
        "chatops.yaml:5: severities[0].policy: unknown escalation policy 'nope' (known: default)",
        "chatops.yaml:13: oncall.escalation_policies[0].steps[0].targets[0].layer: "
        "schedule 'ops' has no layer 'primry' (layers: primary)",
        "chatops.yaml:13: oncall.escalation_policies[0].steps[0].targets[1].schedule: "
        "unknown schedule 'dev'",
    ]
