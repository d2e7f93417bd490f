"""Incidents, their timelines, and the alerts behind them.

Alertmanager delivers at least once (retries, HA duplicates, repeats), so
every notification is stored once under a de-duplication key before it is
acknowledged, and alerts are tracked individually by fingerprint + startsAt
inside the group (receiver + groupKey) that opened the incident.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.core.db import UTCDateTime


def _utc(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class IncidentStatus(StrEnum):
    DECLARED = "Declared"  # opened by a person
    TRIGGERED = "Triggered"  # opened by an alert
    ACKNOWLEDGED = "Acknowledged"
    MITIGATED = "Mitigated"
    RESOLVED = "Resolved"


OPEN_STATUSES = (
    IncidentStatus.DECLARED,
    IncidentStatus.TRIGGERED,
    IncidentStatus.ACKNOWLEDGED,
    IncidentStatus.MITIGATED,
)


class Incident(SQLModel, table=True):
    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_status", "status", "id"),
        Index("ix_incidents_service", "service", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=500)
    service: str | None = Field(default=None, max_length=100)
    severity: str = Field(max_length=10)
    status: str = Field(max_length=20)
    source: str = Field(default="alert", max_length=20)  # alert | declared
    commander: str | None = Field(default=None, max_length=100)
    responders: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    channel: str = Field(max_length=100)  # where its message and thread live
    dedicated_channel: str | None = Field(default=None, max_length=100)
    labels: dict[str, str] = _json()
    links: dict[str, str] = _json()  # generatorURL, runbook, dashboard
    summary: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    opened_by: str = Field(default="alertmanager", max_length=100)
    detected_at: datetime = _utc(index=True)
    acknowledged_at: datetime | None = _utc(nullable=True)
    acknowledged_by: str | None = Field(default=None, max_length=100)
    mitigated_at: datetime | None = _utc(nullable=True)
    resolved_at: datetime | None = _utc(nullable=True)

    @property
    def ref(self) -> str:
        return f"INC-{self.id}"

    @property
    def open(self) -> bool:
        return self.status != IncidentStatus.RESOLVED


class IncidentEvent(SQLModel, table=True):
    """One line of an incident's timeline."""

    __tablename__ = "incident_events"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incidents.id", index=True)
    at: datetime = _utc()
    kind: str = Field(max_length=40)  # status, severity, commander, update, alert, deploy, pin...
    actor: str | None = Field(default=None, max_length=100)
    text: str = Field(sa_column=Column(Text, nullable=False))
    data: dict[str, Any] = _json()


class AlertNotification(SQLModel, table=True):
    """A webhook delivery, stored once (the de-duplication key) before the
    200 is sent; processed afterwards by a scheduler job."""

    __tablename__ = "alert_notifications"
    __table_args__ = (UniqueConstraint("dedupe_key", name="uq_alert_notifications_dedupe"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=64)
    receiver: str = Field(max_length=200)
    group_key: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=20)
    payload: dict[str, Any] = _json()
    received_at: datetime = _utc(index=True)
    processed_at: datetime | None = _utc(nullable=True)


class AlertGroup(SQLModel, table=True):
    """An Alertmanager aggregation group and the incident it currently feeds."""

    __tablename__ = "alert_groups"
    __table_args__ = (UniqueConstraint("group_hash", name="uq_alert_groups_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    group_hash: str = Field(max_length=64)  # sha256 of receiver + groupKey (keys can be long)
    receiver: str = Field(max_length=200)
    group_key: str = Field(sa_column=Column(Text, nullable=False))
    incident_id: int | None = Field(default=None, foreign_key="incidents.id")
    last_notification_at: datetime | None = _utc(nullable=True)


class Alert(SQLModel, table=True):
    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("group_id", "fingerprint", "starts_at", name="uq_alerts_identity"),
        Index("ix_alerts_incident", "incident_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = Field(foreign_key="alert_groups.id")
    incident_id: int | None = Field(default=None, foreign_key="incidents.id")
    fingerprint: str = Field(max_length=64)
    starts_at: datetime = _utc()
    ends_at: datetime | None = _utc(nullable=True)
    status: str = Field(max_length=20)  # firing | resolved
    labels: dict[str, str] = _json()
    annotations: dict[str, str] = _json()
    generator_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    first_seen: datetime = _utc()
    last_seen: datetime = _utc()
