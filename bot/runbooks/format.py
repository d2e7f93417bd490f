"""The runbook file format: one YAML file per runbook, validated strictly.

Templates ({{ ... }}) are Jinja in a sandboxed environment; every variable a
template names must be a parameter, `alert`, `labels`, `incident` or
`steps` (earlier outputs), or the runbook is refused before anything runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.core.config import Comparison, Role, RoleName
from bot.core.durations import Duration

OnFailure = Literal["stop", "continue", "rollback"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Parameter(_Strict):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    type: Literal["string", "number", "integer", "boolean"] = "string"
    required: bool = False
    default: Any = None
    allowed: list[Any] | None = None
    description: str = ""


class _Step(_Strict):
    name: str = Field(min_length=1)
    when: str | None = None  # a template that must render true for the step to run
    timeout: Duration = timedelta(minutes=5)
    on_failure: OnFailure = "stop"


class PrometheusQuery(_Step):
    type: Literal["prometheus.query"]
    query: str
    assert_: Comparison | None = Field(default=None, alias="assert")


class HttpCheck(_Step):
    type: Literal["http.check"]
    url: str
    method: Literal["GET", "POST", "HEAD"] = "GET"
    expect_status: int = Field(default=200, ge=100, le=599)
    json_field: str | None = None  # dotted path into the JSON answer
    json_value: Any = None
    retries: int = Field(default=0, ge=0, le=10)


class KubernetesRestart(_Step):
    type: Literal["kubernetes.restart"]
    service: str
    environment: str


class KubernetesScale(_Step):
    type: Literal["kubernetes.scale"]
    service: str
    environment: str
    replicas: str | int


class KubernetesRollback(_Step):
    type: Literal["kubernetes.rollback", "deploy.rollback"]
    service: str
    environment: str
    to: str | None = None


class Wait(_Step):
    type: Literal["wait"]
    duration: Duration | None = None
    until: str | None = None  # PromQL condition, checked every `every` until `timeout`
    every: Duration = timedelta(seconds=15)

    @model_validator(mode="after")
    def _one(self) -> Wait:
        if (self.duration is None) == (self.until is None):
            raise ValueError("give either duration or until")
        return self


class Approval(_Step):
    type: Literal["approval"]
    role: RoleName = Role.APPROVER
    message: str = "Continue?"
    timeout: Duration = timedelta(hours=4)


class SlackMessage(_Step):
    type: Literal["slack.message"]
    text: str
    to: Literal["thread", "channel"] = "thread"


class Shell(_Step):
    type: Literal["shell"]
    command: list[str] = Field(min_length=1)  # argv: never through a shell
    max_output: int = Field(default=4000, ge=100, le=100_000)


Step = Annotated[
    PrometheusQuery
    | HttpCheck
    | KubernetesRestart
    | KubernetesScale
    | KubernetesRollback
    | Wait
    | Approval
    | SlackMessage
    | Shell,
    Field(discriminator="type"),
]
STEP_TYPES = (
    "prometheus.query",
    "http.check",
    "kubernetes.restart",
    "kubernetes.scale",
    "kubernetes.rollback",
    "deploy.rollback",
    "wait",
    "approval",
    "slack.message",
    "shell",
)


class Runbook(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    description: str = ""
    parameters: list[Parameter] = []
    # Alerts it fits: label matchers (values starting with "~" are regexes).
    match: dict[str, str] = {}
    automatic: bool = False  # run at once for matching alerts (still stops at approvals)
    steps: list[Step] = Field(min_length=1)
