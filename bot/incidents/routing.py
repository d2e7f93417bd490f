"""Where an alert goes: which service, which severity, which channel, and
whether it opens an incident at all."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.config import AlertRoute, Config


@dataclass(frozen=True)
class Route:
    service: str | None
    severity: str
    channel: str
    opens_incident: bool


def matches(route: AlertRoute, labels: dict[str, str]) -> bool:
    return labels_match(route.match, labels)


def labels_match(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    """Every matcher holds: an exact value, or "~regex" matching the whole
    value. A missing label is the empty string, as in Alertmanager."""
    for label, wanted in matchers.items():
        value = labels.get(label, "")
        if wanted.startswith("~"):
            if re.fullmatch(wanted[1:], value) is None:
                return False
        elif value != wanted:
            return False
    return True


def route_alert(config: Config, labels: dict[str, str]) -> Route:
    policy = config.alerts
    chosen = next((r for r in policy.routes if matches(r, labels)), None)
    service = chosen.service if chosen and chosen.service else None
    if service is None and config.service(labels.get("service", "")) is not None:
        service = labels["service"]
    severity = (
        (chosen.severity if chosen and chosen.severity else None)
        or policy.severity_map.get(labels.get(policy.severity_label, "").lower())
        or policy.default_severity
    )
    channel = (
        chosen.channel if chosen and chosen.channel else None
    ) or config.channels.alerts_channel
    return Route(service, severity, channel, severity in policy.incident_severities)
