"""Escalations (one per incident being paged), the pages sent, and on-call
overrides."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from bot.core.db import UTCDateTime


def _utc(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class EscalationStatus(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    EXHAUSTED = "exhausted"  # every step and repeat ran; nobody acknowledged
    CANCELLED = "cancelled"  # resolved, or severity lowered below paging


class Escalation(SQLModel, table=True):
    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_incident", "incident_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incidents.id")
    policy: str = Field(max_length=100)
    status: str = Field(default=EscalationStatus.ACTIVE, max_length=20)
    step: int = 0  # the next step to run
    round: int = 0  # 0 = first run of the policy, then each repeat
    started_at: datetime = _utc()
    next_at: datetime | None = _utc(nullable=True)
    finished_at: datetime | None = _utc(nullable=True)


class Page(SQLModel, table=True):
    __tablename__ = "pages"
    __table_args__ = (Index("ix_pages_user_sent", "user", "sent_at"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int | None = Field(default=None, foreign_key="incidents.id", index=True)
    escalation_id: int | None = Field(default=None, foreign_key="escalations.id")
    user: str = Field(max_length=100)  # a Slack user id, or a channel for channel targets
    kind: str = Field(max_length=20)  # escalation | repage | manual | bundle
    step: int | None = None
    round: int | None = None
    suppressed: bool = False  # over the person's rate limit: goes into a bundle
    bundled_at: datetime | None = _utc(nullable=True)
    message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    requested_by: str | None = Field(default=None, max_length=100)
    sent_at: datetime = _utc()
    acked_at: datetime | None = _utc(nullable=True)


class OnCallOverride(SQLModel, table=True):
    __tablename__ = "oncall_overrides"
    __table_args__ = (Index("ix_oncall_overrides_schedule", "schedule", "end"),)

    id: int | None = Field(default=None, primary_key=True)
    schedule: str = Field(max_length=100)
    layer: str | None = Field(default=None, max_length=100)
    user: str = Field(max_length=100)
    start: datetime = _utc()
    end: datetime = _utc()
    created_by: str = Field(max_length=100)
    created_at: datetime = _utc()
