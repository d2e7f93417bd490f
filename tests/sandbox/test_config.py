"""Sandbox configuration: files, defaults and image behaviour rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox import RunningSandbox, SandboxConfig
from sandbox.__main__ import EXAMPLE_CONFIG
from sandbox.config import image_tag


def test_example_config_loads() -> None:
    config = SandboxConfig.from_file(EXAMPLE_CONFIG)
    assert {d.name for d in config.deployments} >= {"web", "checkout-blue", "checkout-green"}
    assert config.behaviour_for("registry.example.com/web:1.5.0-crash").crash
    assert config.behaviour_for("registry.example.com/web:1.5.0-errors").error_ratio == 0.2


def test_json_file_and_namespaces_are_implied(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    path.write_text('{"deployments": [{"name": "api", "namespace": "team", "image": "api:1"}]}')
    config = SandboxConfig.from_file(path)
    assert config.namespaces == ["default", "team"]
    assert config.deployments[0].pod_labels() == {"app": "api"}
    with pytest.raises(ValidationError):
        SandboxConfig.model_validate({"pod_ready_seconds": -1})
    with pytest.raises(ValidationError):
        SandboxConfig.model_validate({"unknown_field": 1})


@pytest.mark.parametrize(("image", "tag"), [
    ("web:1.2.3", "1.2.3"), ("registry:5000/team/web:2.0", "2.0"), ("web", "latest"),
    ("web@sha256:abc", "sha256:abc"),
])
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag


def test_rules_match_tags_and_fall_back_to_defaults() -> None:
    config = SandboxConfig.model_validate({
        "images": [{"pattern": "2.*", "error_ratio": 0.5},
                   {"pattern": "registry/slow:*", "latency_p99_seconds": 2.0}],
        "default_behaviour": {"error_ratio": 0.01, "latency_p99_seconds": 0.1}})
    bad = config.behaviour_for("registry/web:2.1")
    assert (bad.error_ratio, bad.latency_p99_seconds, bad.crash) == (0.5, 0.1, False)
    slow = config.behaviour_for("registry/slow:1.0")
    assert (slow.error_ratio, slow.latency_p99_seconds) == (0.01, 2.0)
    assert config.behaviour_for("registry/web:1.0").error_ratio == 0.01


async def test_behaviour_can_change_at_run_time(sandbox: RunningSandbox) -> None:
    sandbox.set_image_behaviour("1.0.0", error_ratio=0.9)
    assert sandbox.config.behaviour_for("registry.local/web:1.0.0").error_ratio == 0.9
