"""What the sandbox starts with and how simulated images behave.

Loaded from YAML or JSON (``SandboxConfig.from_file``) or built in Python by
tests. Image behaviours are matched by glob against the image *tag* (``web:2.0``
→ ``2.0``); a pattern containing ``:`` or ``/`` is matched against the whole
image reference instead. The first matching rule wins; fields a rule leaves
unset fall back to ``default_behaviour``.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Behaviour(_Model):
    """How a running container of some image serves traffic."""

    crash: bool = False
    error_ratio: float = Field(default=0.002, ge=0.0, le=1.0)
    latency_p50_seconds: float = Field(default=0.02, gt=0.0)
    latency_p99_seconds: float = Field(default=0.08, gt=0.0)


class ImageRule(_Model):
    """A behaviour override for images whose tag matches ``pattern``."""

    pattern: str
    crash: bool | None = None
    error_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_p50_seconds: float | None = Field(default=None, gt=0.0)
    latency_p99_seconds: float | None = Field(default=None, gt=0.0)

    def matches(self, image: str) -> bool:
        subject = image if (":" in self.pattern or "/" in self.pattern) else image_tag(image)
        return fnmatch.fnmatchcase(subject, self.pattern)


class DeploymentConfig(_Model):
    name: str
    namespace: str = "default"
    # Pod labels and selector; empty means {"app": name}.
    labels: dict[str, str] = Field(default_factory=dict)
    container_name: str = "app"
    image: str
    container_port: int = 8080
    replicas: int = Field(default=2, ge=0)
    progress_deadline_seconds: int = Field(default=600, gt=0)
    revision_history_limit: int = Field(default=10, ge=0)
    min_ready_seconds: int = Field(default=0, ge=0)
    strategy: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"
    annotations: dict[str, str] = Field(default_factory=dict)

    def pod_labels(self) -> dict[str, str]:
        return dict(self.labels) if self.labels else {"app": self.name}


class ServiceConfig(_Model):
    name: str
    namespace: str = "default"
    selector: dict[str, str]
    port: int = 80
    target_port: int = 8080
    labels: dict[str, str] = Field(default_factory=dict)
    # Total request rate spread over the ready pods; None means per-pod rate.
    requests_per_second: float | None = Field(default=None, ge=0.0)


class SandboxConfig(_Model):
    namespaces: list[str] = Field(default_factory=lambda: ["default"])
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    services: list[ServiceConfig] = Field(default_factory=list)
    images: list[ImageRule] = Field(default_factory=list)
    default_behaviour: Behaviour = Field(default_factory=Behaviour)
    # Seconds from pod creation until its container runs and passes readiness.
    pod_ready_seconds: float = Field(default=1.0, ge=0.0)
    # Seconds between restarts of a crashing container (CrashLoopBackOff).
    crash_restart_seconds: float = Field(default=5.0, gt=0.0)
    # How often the controllers run; a real controller reacts within milliseconds.
    tick_seconds: float = Field(default=0.1, gt=0.0)
    token: str = "sandbox-token"  # noqa: S105 - a local sandbox's well-known token
    requests_per_second_per_pod: float = Field(default=10.0, ge=0.0)
    scrape_interval_seconds: float = Field(default=1.0, gt=0.0)
    retention_seconds: float = Field(default=3600.0, gt=0.0)
    server_version: str = "v1.32.4"

    @model_validator(mode="after")
    def _namespaces_cover_objects(self) -> SandboxConfig:
        # Objects in an unlisted namespace would be unreachable through the API.
        wanted = [d.namespace for d in self.deployments] + [s.namespace for s in self.services]
        for namespace in wanted:
            if namespace not in self.namespaces:
                self.namespaces.append(namespace)
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> SandboxConfig:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return cls.model_validate(data or {})

    def behaviour_for(self, image: str) -> Behaviour:
        merged = self.default_behaviour.model_dump()
        for rule in self.images:
            if rule.matches(image):
                overrides = rule.model_dump(exclude={"pattern"}, exclude_none=True)
                merged.update(overrides)
                break
        return Behaviour.model_validate(merged)


def image_tag(image: str) -> str:
    """The version part of an image reference, as the metrics' ``version`` label."""
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"
