"""Tables of the core mechanisms: scheduler jobs, the outbox, the audit log
and inbound de-duplication receipts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.core.db import UTCDateTime


def _utc(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"  # gave up after max_attempts; kept for inspection


class Job(SQLModel, table=True):
    """A durable timer: run handler `kind` with `payload` at `due_at`."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "status", "due_at"),
        UniqueConstraint("key", name="uq_jobs_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=100)
    # Optional identity: scheduling a key that is still pending replaces it,
    # so "advance deployment 42" exists at most once.
    key: str | None = Field(default=None, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=JobStatus.PENDING, max_length=20)
    due_at: datetime = _utc()
    attempts: int = 0
    max_attempts: int = 10
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = _utc(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _utc()
    finished_at: datetime | None = _utc(nullable=True)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # handed to the transport; outcome unknown until marked
    SENT = "sent"
    FAILED = "failed"  # permanent error (e.g. channel_not_found); not retried


class OutboxKind(StrEnum):
    POST = "post"  # chat.postMessage
    UPDATE = "update"  # chat.update of the message with `key`
    EPHEMERAL = "ephemeral"  # chat.postEphemeral to `user`
    RESPOND = "respond"  # POST to a slash command's response_url


class OutboxMessage(SQLModel, table=True):
    """Something the bot says, stored before it is said."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_lane_pending", "lane", "status", "id"),
        Index("ix_outbox_key", "key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Messages of one lane are delivered in order and rate-limited together:
    # a channel's posts and edits share its lane; a person's replies to their
    # own commands get a lane of their own so they never queue behind a storm.
    lane: str = Field(max_length=200)
    channel: str = Field(max_length=100)  # Slack channel (or user id for a DM)
    kind: str = Field(max_length=20)
    # Logical name of a posted message ("INC-3", "deploy-42"): updates and
    # thread replies refer to it before Slack has assigned its ts.
    key: str | None = Field(default=None, max_length=200)
    thread_key: str | None = Field(default=None, max_length=200)
    thread_ts: str | None = Field(default=None, max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=OutboxStatus.PENDING, max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = _utc()
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    ts: str | None = Field(default=None, max_length=40)  # Slack's id once posted
    created_at: datetime = _utc()
    sent_at: datetime | None = _utc(nullable=True)


class OutboxLane(SQLModel, table=True):
    """Per-lane delivery state shared by every replica: who drains the lane
    now (lease) and the rate limiter's theoretical arrival time."""

    __tablename__ = "outbox_lanes"

    lane: str = Field(primary_key=True, max_length=200)
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = _utc(nullable=True)
    tat: datetime | None = _utc(nullable=True)  # GCRA state
    paused_until: datetime | None = _utc(nullable=True)  # honoured Retry-After


class AuditEntry(SQLModel, table=True):
    """Who changed what, where, when, and how it ended."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _utc(index=True)
    actor: str = Field(max_length=100, index=True)
    action: str = Field(max_length=100, index=True)
    target: str | None = Field(default=None, max_length=200)
    environment: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=100)
    transport: str = Field(default="unknown", max_length=20)
    outcome: str = Field(max_length=20)  # ok | refused | error
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class InboundReceipt(SQLModel, table=True):
    """Ids of inbound deliveries already handled (Slack retries events; Bolt
    does not de-duplicate)."""

    __tablename__ = "inbound_receipts"

    key: str = Field(primary_key=True, max_length=200)
    received_at: datetime = _utc()
