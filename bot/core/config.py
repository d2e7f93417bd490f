"""The configuration file's schema: what the bot manages and who may do what.

Loaded by config_loader.py, which adds interpolation and file:line errors.
Every model forbids unknown keys, so a typo is an error instead of a
silently ignored setting.
"""

from __future__ import annotations

from datetime import timedelta
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bot.core.durations import Duration


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(IntEnum):
    """Ordered: each role can do everything the ones below it can."""

    VIEWER = 1
    DEPLOYER = 2
    APPROVER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, value: Any) -> Role:
        if isinstance(value, Role):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown role '{value}' (one of: {names})") from None


class Environment(Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    protected: bool = False
    # Protected environments need a second person's approval unless disabled.
    requires_approval: bool | None = None
    kube_context: str | None = None

    @property
    def needs_approval(self) -> bool:
        return self.protected if self.requires_approval is None else self.requires_approval


class ReplicaBounds(Strict):
    min: int = Field(default=1, ge=0)
    max: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Service(Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    # May contain "{env}", e.g. "shop-{env}", when environments share a cluster.
    namespace: str = "default"
    deployment: str | None = None  # Kubernetes Deployment name; defaults to the service name
    container: str | None = None  # container to patch; defaults to the first one
    image: str = Field(min_length=1, description="image repository without tag")
    github_repo: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")
    environments: list[str] = Field(min_length=1)
    default_environment: str | None = None
    default_strategy: Literal["rolling", "canary", "bluegreen"] = "rolling"
    replicas: ReplicaBounds = ReplicaBounds()
    scale_cooldown: Duration = timedelta(minutes=2)
    owners: list[str] = []

    @property
    def k8s_deployment(self) -> str:
        return self.deployment or self.name

    @property
    def home_environment(self) -> str:
        return self.default_environment or self.environments[0]

    def namespace_for(self, env: str) -> str:
        return self.namespace.replace("{env}", env)


def _role_or_none(value: Any) -> Role | None:
    return None if value in (None, "none") else Role.parse(value)


RoleName = Annotated[Role, BeforeValidator(Role.parse)]


class Grant(Strict):
    # Slack user ids (U…/W…) and user-group ids (S…).
    subjects: list[str] = Field(min_length=1)
    role: RoleName
    environments: list[str] = ["*"]


class Rbac(Strict):
    # Role of everybody not named in a grant; "none" means no access at all.
    default_role: Annotated[Role | None, BeforeValidator(_role_or_none)] = Role.VIEWER
    grants: list[Grant] = []


class Channels(Strict):
    deploys: str = "deploys"
    incidents: str = "incidents"
    alerts: str | None = None  # where alert-opened incidents post; defaults to incidents

    @property
    def alerts_channel(self) -> str:
        return self.alerts or self.incidents


class Severity(Strict):
    name: str = Field(pattern=r"^SEV[1-9]$")
    description: str = ""
    page: bool = False


DEFAULT_SEVERITIES = [
    Severity(name="SEV1", description="Service down, data loss or security breach", page=True),
    Severity(name="SEV2", description="Major degradation for many users", page=True),
    Severity(name="SEV3", description="Minor degradation, workaround exists", page=False),
    Severity(name="SEV4", description="Cosmetic or informational", page=False),
]


class Config(Strict):
    version: Literal[1] = 1
    environments: list[Environment] = Field(min_length=1)
    services: list[Service] = []
    rbac: Rbac = Rbac()
    channels: Channels = Channels()
    severities: list[Severity] = DEFAULT_SEVERITIES
    # Filled in by the on-call issue: schedules, escalation policies.
    oncall: dict[str, Any] = {}

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def environment(self, name: str) -> Environment | None:
        return next((e for e in self.environments if e.name == name), None)


Loc = tuple[str | int, ...]


def cross_reference_errors(raw: Any) -> list[tuple[Loc, str]]:
    """Checks that span sections (names that must exist, names that must be
    unique). They run on the raw data so they are reported even when other
    parts of the file fail validation."""
    if not isinstance(raw, dict):
        return []
    errors: list[tuple[Loc, str]] = []
    env_names = _names(raw.get("environments"), "environments", errors)
    services = raw.get("services")
    _names(services, "services", errors)
    for i, svc in enumerate(services if isinstance(services, list) else []):
        if not isinstance(svc, dict):
            continue
        svc_envs = svc.get("environments")
        for j, env in enumerate(svc_envs if isinstance(svc_envs, list) else []):
            if env_names is not None and isinstance(env, str) and env not in env_names:
                errors.append((("services", i, "environments", j), _unknown_env(env, env_names)))
        default = svc.get("default_environment")
        if isinstance(default, str) and isinstance(svc_envs, list) and default not in svc_envs:
            errors.append((("services", i, "default_environment"),
                           f"'{default}' is not one of this service's environments"))
    rbac = raw.get("rbac")
    grants = rbac.get("grants") if isinstance(rbac, dict) else None
    for i, grant in enumerate(grants if isinstance(grants, list) else []):
        envs = grant.get("environments") if isinstance(grant, dict) else None
        for j, env in enumerate(envs if isinstance(envs, list) else []):
            if env_names is not None and env != "*" and env not in env_names:
                errors.append((("rbac", "grants", i, "environments", j),
                               _unknown_env(str(env), env_names)))
    return errors


def _names(items: Any, section: str, errors: list[tuple[Loc, str]]) -> set[str] | None:
    if not isinstance(items, list):
        return None
    seen: set[str] = set()
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            if name in seen:
                errors.append(((section, i, "name"), f"duplicate name '{name}'"))
            seen.add(name)
    return seen


def _unknown_env(env: str, known: set[str]) -> str:
    return f"unknown environment '{env}' (known: {', '.join(sorted(known)) or 'none'})"
