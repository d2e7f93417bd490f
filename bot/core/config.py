"""The configuration file's schema: what the bot manages and who may do what.

Loaded by config_loader.py, which adds interpolation and file:line errors.
Every model forbids unknown keys, so a typo is an error instead of a
silently ignored setting.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import IntEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


class CanaryStep(Strict):
    weight: int = Field(ge=1, le=100)  # percent of the primary's replicas
    pause: Duration = timedelta(seconds=30)


Comparison = Annotated[str, Field(pattern=r"^\s*(<=|>=|==|!=|<|>)\s*-?\d+(\.\d+)?([eE]-?\d+)?\s*$")]


class AnalysisMetric(Strict):
    """One PromQL query and the conditions on its (single) value. In the
    query, {{version}}, {{service}}, {{namespace}}, {{environment}} and
    {{deployment}} are replaced before it runs."""

    name: str = Field(min_length=1)
    query: str = Field(min_length=1)
    success: Comparison | None = None  # e.g. "< 0.01"
    failure: Comparison | None = None  # e.g. ">= 0.05"; neither holding = inconclusive

    @model_validator(mode="after")
    def _has_condition(self) -> AnalysisMetric:
        if self.success is None and self.failure is None:
            raise ValueError("give a success or a failure condition (or both)")
        return self


class Analysis(Strict):
    """Counted as Argo Rollouts counts: a measurement is Successful, Failed,
    Inconclusive or Error; the gate fails when failed > failure_limit, pauses
    for a person when inconclusive > inconclusive_limit, errors when
    consecutive errors > consecutive_error_limit, and passes after `count`
    measurements."""

    interval: Duration = timedelta(seconds=30)
    count: int = Field(default=3, ge=1)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=0, ge=0)
    consecutive_error_limit: int = Field(default=4, ge=0)
    # What an empty query result means (no traffic yet is the usual cause).
    on_empty: Literal["inconclusive", "failure", "success", "error"] = "inconclusive"
    metrics: list[AnalysisMetric] = Field(min_length=1)


class DeploySettings(Strict):
    # How a version maps to the image tag; {version} is what the person typed.
    tag: str = "{version}"
    canary_steps: list[CanaryStep] = [CanaryStep(weight=10), CanaryStep(weight=50)]
    # Blue-green: how long the previous slot stays scaled up for instant rollback.
    keep_previous: Duration = timedelta(minutes=10)
    # The bot's own limit on waiting for a rollout; Kubernetes' progress
    # deadline is honoured too.
    rollout_timeout: Duration = timedelta(minutes=10)
    require_checks: bool = True  # GitHub combined status and check runs must be green
    analysis: Analysis | None = None


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
    escalation_policy: str | None = None
    deploy: DeploySettings = DeploySettings()

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
    policy: str | None = None  # escalation policy (a service's own policy wins)
    # An acknowledged incident that is not mitigated or resolved pages its
    # acknowledger again after this long (None: never).
    ack_timeout: Duration | None = None
    announce: bool = False  # @here in the incident's channel


DEFAULT_SEVERITIES = [
    Severity(name="SEV1", description="Service down, data loss or security breach", page=True),
    Severity(name="SEV2", description="Major degradation for many users", page=True),
    Severity(name="SEV3", description="Minor degradation, workaround exists", page=False),
    Severity(name="SEV4", description="Cosmetic or informational", page=False),
]


class FreezeWindow(Strict):
    """No deploys in these environments during the window, unless an admin
    forces it with a reason. Either a fixed range (`start`/`end`) or a
    recurring one (`cron` start in `timezone`, lasting `duration`)."""

    name: str
    reason: str
    environments: list[str] = ["*"]
    start: datetime | None = None
    end: datetime | None = None
    cron: str | None = None
    duration: Duration | None = None
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _one_kind(self) -> FreezeWindow:
        fixed = self.start is not None and self.end is not None
        recurring = self.cron is not None and self.duration is not None
        if fixed == recurring:
            raise ValueError("give either start and end, or cron and duration")
        if fixed and self.start is not None and self.end is not None:
            if self.start.tzinfo is None or self.end.tzinfo is None:
                raise ValueError("start and end need a timezone offset, e.g. 2026-12-24T00:00:00Z")
            if self.end <= self.start:
                raise ValueError("end must be after start")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ValueError(f"'{self.cron}' is not a valid cron expression")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{self.timezone}'") from None
        return self


class AlertRoute(Strict):
    """Alerts whose labels match go to this service/severity/channel. A
    matcher value starting with "~" is a regular expression (full match)."""

    match: dict[str, str] = Field(min_length=1)
    service: str | None = None
    severity: str | None = Field(default=None, pattern=r"^SEV[1-9]$")
    channel: str | None = None

    @model_validator(mode="after")
    def _regexes_compile(self) -> AlertRoute:
        import re

        for label, value in self.match.items():
            if value.startswith("~"):
                try:
                    re.compile(value[1:])
                except re.error as exc:
                    raise ValueError(f"match.{label}: bad regular expression: {exc}") from None
        return self


class AlertPolicy(Strict):
    severity_label: str = "severity"
    severity_map: dict[str, str] = {"page": "SEV1", "critical": "SEV2", "warning": "SEV3",
                                    "info": "SEV4"}
    default_severity: str = Field(default="SEV3", pattern=r"^SEV[1-9]$")
    # Below these, an alert is posted to the channel but opens no incident.
    incident_severities: list[str] = ["SEV1", "SEV2", "SEV3"]
    routes: list[AlertRoute] = []
    # A group that resolved and fires again: a new incident, or the old one re-opened.
    reopen_within: Duration | None = None
    # Mitigated incidents with no new alerts are resolved after this long (None: by a person).
    auto_resolve_after: Duration | None = None
    # Labels shown on the incident message, in this order, when present.
    shown_labels: list[str] = ["alertname", "service", "severity", "namespace", "instance", "job"]
    dedicated_channels: bool = False  # a channel per incident, responders invited


class Rotation(Strict):
    """One layer of a schedule: participants take turns of `shift` each,
    starting at `start` (wall-clock time in the schedule's time zone).
    Hand-offs are computed in wall-clock time, so a daily 09:00 hand-off
    stays at 09:00 across daylight-saving changes."""

    name: str = Field(min_length=1)  # e.g. primary, secondary
    participants: list[str] = Field(min_length=1)  # Slack user ids
    shift: Duration = timedelta(weeks=1)
    start: datetime  # naive: local wall-clock time in the schedule's zone

    @model_validator(mode="after")
    def _whole_hours(self) -> Rotation:
        seconds = self.shift.total_seconds()
        if seconds <= 0 or seconds % 3600:
            raise ValueError("shift must be a whole number of hours, days or weeks")
        if self.start.tzinfo is not None:
            raise ValueError("start is a local wall-clock time: leave out the offset "
                             "(the schedule's timezone applies)")
        return self


class Schedule(Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    timezone: str = "UTC"
    layers: list[Rotation] = Field(min_length=1)

    @model_validator(mode="after")
    def _zone(self) -> Schedule:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{self.timezone}'") from None
        return self


class Target(Strict):
    """Who a step pages: the on-call person of a schedule layer, a user, a
    Slack user group, or a channel (posted to, with the Ack button)."""

    schedule: str | None = None
    layer: str | None = None  # default: the schedule's first layer
    user: str | None = None
    group: str | None = None
    channel: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = [k for k in ("schedule", "user", "group", "channel") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of schedule, user, group or channel")
        if self.layer and not self.schedule:
            raise ValueError("layer goes with schedule")
        return self


class EscalationStep(Strict):
    targets: list[Target] = Field(min_length=1)
    delay: Duration = timedelta(minutes=5)  # before the next step when nobody acknowledges


class EscalationPolicy(Strict):
    name: str = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=5)  # times the whole policy runs again
    steps: list[EscalationStep] = Field(min_length=1)


class PageRateLimit(Strict):
    """During a storm a person gets at most `pages` pages per `window`; the
    rest arrive as one "N more incidents" page when the window ends."""

    pages: int = Field(default=5, ge=1)
    window: Duration = timedelta(minutes=15)


class ExternalPager(Strict):
    """Also send pages for `user` to an SMS/voice gateway or PagerDuty."""

    user: str
    url: str = Field(pattern=r"^https?://")
    format: Literal["generic", "pagerduty"] = "generic"
    token: str | None = None  # bearer token, or the PagerDuty routing key


class OnCall(Strict):
    schedules: list[Schedule] = []
    escalation_policies: list[EscalationPolicy] = []
    default_policy: str | None = None  # for severities and services that name none
    rate_limit: PageRateLimit = PageRateLimit()
    pagers: list[ExternalPager] = []

    def schedule(self, name: str) -> Schedule | None:
        return next((s for s in self.schedules if s.name == name), None)

    def policy(self, name: str | None) -> EscalationPolicy | None:
        wanted = name or self.default_policy or (
            self.escalation_policies[0].name if self.escalation_policies else None)
        return next((p for p in self.escalation_policies if p.name == wanted), None)


class RunbookSettings(Strict):
    # Directories of runbook files, relative to the configuration file.
    paths: list[str] = ["runbooks"]
    # Commands a `shell` step may run (the first word of its argv).
    shell_allowlist: list[str] = []


class DeployPolicy(Strict):
    approval_timeout: Duration = timedelta(hours=1)
    changelog_limit: int = Field(default=15, ge=0, le=100)
    auto_lock_on_failure: bool = True


class StatsSettings(Strict):
    """/stats and the response-metrics gauges on /metrics."""

    # A deploy followed by an incident on its service within this long counts
    # as a failed change.
    change_failure_window: Duration = timedelta(hours=1)
    # The window of /stats without days=, and of the gauges.
    default_days: int = Field(default=30, ge=1, le=365)


class JiraSettings(Strict):
    """Where postmortems go in Jira (the server and credentials come from the
    environment: JIRA_URL, JIRA_USER, JIRA_TOKEN)."""

    project: str = Field(default="OPS", min_length=1)
    issue_type: str = "Task"
    labels: list[str] = ["postmortem"]
    components: list[str] = []
    # Each action item becomes a sub-task of the postmortem's issue, or an
    # issue of its own linked to it.
    action_items: Literal["subtask", "linked"] = "linked"
    action_issue_type: str = "Task"  # "Sub-task" (or your sub-task type) with subtask
    link_type: str = "Relates"
    # Slack user id -> Jira account (accountId on Cloud, user name on Server);
    # people not listed are looked up by their Slack email.
    users: dict[str, str] = {}
    # Prefix of the labels that find an already published postmortem again.
    label_prefix: str = Field(default="chatops", pattern=r"^[A-Za-z0-9_-]+$")
    retry_first: Duration = timedelta(seconds=30)  # Jira down: first retry, then doubling
    retry_max: Duration = timedelta(minutes=30)


class PostmortemSettings(Strict):
    # Resolving an incident of these severities drafts its postmortem at once
    # and reminds the commander until it is published.
    required_for: list[str] = ["SEV1", "SEV2"]
    remind_after: Duration = timedelta(hours=24)
    remind_every: Duration = timedelta(hours=24)
    jira: JiraSettings = JiraSettings()


class Config(Strict):
    version: Literal[1] = 1
    environments: list[Environment] = Field(min_length=1)
    services: list[Service] = []
    rbac: Rbac = Rbac()
    channels: Channels = Channels()
    severities: list[Severity] = DEFAULT_SEVERITIES
    freeze_windows: list[FreezeWindow] = []
    alerts: AlertPolicy = AlertPolicy()
    deploys: DeployPolicy = DeployPolicy()
    oncall: OnCall = OnCall()
    runbooks: RunbookSettings = RunbookSettings()
    stats: StatsSettings = StatsSettings()
    postmortems: PostmortemSettings = PostmortemSettings()

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def environment(self, name: str) -> Environment | None:
        return next((e for e in self.environments if e.name == name), None)

    def severity(self, name: str) -> Severity | None:
        return next((s for s in self.severities if s.name == name), None)


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
    errors.extend(_alert_reference_errors(raw, services))
    errors.extend(_oncall_reference_errors(raw, services))
    rbac = raw.get("rbac")
    grants = rbac.get("grants") if isinstance(rbac, dict) else None
    for i, grant in enumerate(grants if isinstance(grants, list) else []):
        envs = grant.get("environments") if isinstance(grant, dict) else None
        for j, env in enumerate(envs if isinstance(envs, list) else []):
            if env_names is not None and env != "*" and env not in env_names:
                errors.append((("rbac", "grants", i, "environments", j),
                               _unknown_env(str(env), env_names)))
    return errors


def _alert_reference_errors(raw: dict[str, Any], services: Any) -> list[tuple[Loc, str]]:
    alerts = raw.get("alerts")
    if not isinstance(alerts, dict):
        return []
    errors: list[tuple[Loc, str]] = []
    sevs = raw.get("severities")
    known_sevs = ({s.get("name") for s in sevs if isinstance(s, dict)} if isinstance(sevs, list)
                  else {s.name for s in DEFAULT_SEVERITIES})
    known_services = {s.get("name") for s in services if isinstance(s, dict)} \
        if isinstance(services, list) else set()

    def check_sev(loc: Loc, value: Any) -> None:
        if isinstance(value, str) and value not in known_sevs:
            errors.append((loc, f"unknown severity '{value}' (known: "
                                f"{', '.join(sorted(str(s) for s in known_sevs))})"))

    severity_map = alerts.get("severity_map")
    for label, sev in (severity_map.items() if isinstance(severity_map, dict) else []):
        check_sev(("alerts", "severity_map", str(label)), sev)
    check_sev(("alerts", "default_severity"), alerts.get("default_severity"))
    for i, sev in enumerate(alerts.get("incident_severities") or []):
        check_sev(("alerts", "incident_severities", i), sev)
    for i, route in enumerate(alerts.get("routes") or []):
        if not isinstance(route, dict):
            continue
        check_sev(("alerts", "routes", i, "severity"), route.get("severity"))
        service = route.get("service")
        if isinstance(service, str) and service not in known_services:
            errors.append((("alerts", "routes", i, "service"), f"unknown service '{service}'"))
    return errors


def _oncall_reference_errors(raw: dict[str, Any], services: Any) -> list[tuple[Loc, str]]:
    oncall = raw.get("oncall")
    oncall = oncall if isinstance(oncall, dict) else {}
    errors: list[tuple[Loc, str]] = []
    layers: dict[str, set[str]] = {}
    for s in oncall.get("schedules") or []:
        if isinstance(s, dict) and isinstance(s.get("name"), str):
            layers[s["name"]] = {str(lay.get("name")) for lay in s.get("layers") or []
                                 if isinstance(lay, dict)}
    policies = {p.get("name") for p in oncall.get("escalation_policies") or []
                if isinstance(p, dict)}

    def check_policy(loc: Loc, name: Any) -> None:
        if isinstance(name, str) and name not in policies:
            errors.append((loc, f"unknown escalation policy '{name}' (known: "
                                f"{', '.join(sorted(str(p) for p in policies)) or 'none'})"))

    check_policy(("oncall", "default_policy"), oncall.get("default_policy"))
    for i, sev in enumerate(raw.get("severities") or []):
        if isinstance(sev, dict):
            check_policy(("severities", i, "policy"), sev.get("policy"))
    for i, svc in enumerate(services if isinstance(services, list) else []):
        if isinstance(svc, dict):
            check_policy(("services", i, "escalation_policy"), svc.get("escalation_policy"))
    for i, policy in enumerate(oncall.get("escalation_policies") or []):
        for j, step in enumerate((policy or {}).get("steps") or []):
            for k, target in enumerate((step or {}).get("targets") or []):
                if not isinstance(target, dict) or not isinstance(target.get("schedule"), str):
                    continue
                loc: Loc = ("oncall", "escalation_policies", i, "steps", j, "targets", k)
                name = target["schedule"]
                if name not in layers:
                    errors.append(((*loc, "schedule"), f"unknown schedule '{name}'"))
                elif target.get("layer") and target["layer"] not in layers[name]:
                    errors.append(((*loc, "layer"), f"schedule '{name}' has no layer "
                                   f"'{target['layer']}' (layers: "
                                   f"{', '.join(sorted(str(x) for x in layers[name]))})"))
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
