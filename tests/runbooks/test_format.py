"""Runbook files: strict format, templates checked against parameters,
shell commands against the allowlist, every problem with file:line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.runbooks.loader import load_runbooks

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: high-error-rate
title: High error rate
parameters:
  - {name: service, required: true, allowed: [checkout, cart]}
  - {name: environment, default: production}
  - {name: threshold, type: number, default: 0.05}
match: {alertname: HighErrorRate}
steps:
  - name: measure
    type: prometheus.query
    query: 'sum(rate(http_requests_total{service="{{ service }}",code=~"5.."}[5m]))'
    assert: "< 0.05"
    on_failure: continue
  - name: ask
    type: approval
    role: approver
    message: "Roll back {{ service }} in {{ environment }}?"
  - name: roll back
    type: deploy.rollback
    service: "{{ service }}"
    environment: "{{ environment }}"
    when: "{{ steps['measure'].value > threshold }}"
  - name: settle
    type: wait
    duration: 2m
  - name: inspect
    type: shell
    command: [kubectl, get, pods, "-l", "app={{ service }}; rm -rf /"]
"""

BAD = """\
name: broken
title: Broken
parameters:
  - {name: service, required: true}
steps:
  - name: restart
    type: kubernetes.reboot
    service: "{{ service }}"
  - name: tell
    type: slack.message
    text: "Restarting {{ service }} in {{ region }}"
  - name: run
    type: shell
    command: [bash, -c, "echo hi"]
"""


def write(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "runbooks"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def test_a_good_runbook_loads(tmp_path: Path) -> None:
    runbooks, errors = load_runbooks([write(tmp_path, good=GOOD)], ["kubectl"])
    assert errors == []
    [rb] = runbooks
    assert [s.type for s in rb.steps] == [
        "prometheus.query",
        "approval",
        "deploy.rollback",
        "wait",
        "shell",
    ]
    # Shell arguments are an argv: metacharacters stay literal text, never a shell.
    assert rb.steps[4].command[-1] == "app={{ service }}; rm -rf /"  # type: ignore[union-attr]


def test_unknown_step_undefined_variable_and_unlisted_command(tmp_path: Path) -> None:
    folder = write(tmp_path, bad=BAD)
    _runbooks, errors = load_runbooks([folder], ["kubectl"])
    path = str(folder / "bad.yaml")
    assert [str(e) for e in errors] == [
        f"{path}:6: steps[0]: unknown step type 'kubernetes.reboot' (one of: prometheus.query, "
        "http.check, kubernetes.restart, kubernetes.scale, kubernetes.rollback, "
        "deploy.rollback, wait, approval, slack.message, shell)",
        f"{path}:11: steps[1].text: template uses 'region', which is not a parameter "
        "(parameters: service)",
        f"{path}:14: steps[2].command: 'bash' is not on the shell allowlist "
        "(runbooks.shell_allowlist: kubectl)",
    ]


def test_check_config_reports_runbook_errors(tmp_path: Path) -> None:
    write(tmp_path, bad=BAD)
    config = tmp_path / "chatops.yaml"
    config.write_text("environments: [{name: staging}]\nrunbooks: {shell_allowlist: [kubectl]}\n")
    run = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 1
    assert "unknown step type 'kubernetes.reboot'" in run.stderr
    assert "template uses 'region'" in run.stderr
    assert run.stderr.strip().endswith("error(s) in runbooks")


MISSING = """\
name: missing
title: Missing pieces
parameters:
  - {type: string, default: x}
steps:
  - name: measure
    type: prometheus.query
  - name: scale
    type: kubernetes.scale
    service: cart
    environment: staging
    replicas: 3
    when: steps.measure.value > limit
"""


def test_missing_settings_and_undefined_names_in_conditions(tmp_path: Path) -> None:
    folder = write(tmp_path, missing=MISSING)
    runbooks, errors = load_runbooks([folder], [])
    path = str(folder / "missing.yaml")
    assert runbooks == []
    assert [str(e) for e in errors] == [
        f"{path}:4: parameters[0].name: required setting is missing",
        f"{path}:6: steps[0].query: required setting is missing",
        f"{path}:13: steps[1].when: template uses 'limit', which is not a parameter "
        "(parameters: none)",
    ]
