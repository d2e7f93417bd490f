"""Deployment records, their transitions, locks, scalings and the desired
state the bot last applied (for drift detection)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, text
from sqlmodel import Field, SQLModel

from bot.core.db import UTCDateTime


def _utc(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class DeployState(StrEnum):
    REQUESTED = "Requested"
    AWAITING_APPROVAL = "AwaitingApproval"
    CONFIGURING = "Configuring"
    ROLLING_OUT = "RollingOut"
    HEALTH_GATING = "HealthGating"
    PAUSED = "Paused"  # analysis inconclusive: a person decides
    PROMOTING = "Promoting"
    COMPLETED = "Completed"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    REJECTED = "Rejected"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {DeployState.COMPLETED, DeployState.ROLLED_BACK, DeployState.FAILED, DeployState.REJECTED}
)


class Deployment(SQLModel, table=True):
    __tablename__ = "deployments"
    __table_args__ = (
        # One deploy in flight per service and environment, whichever replica
        # accepted it: the database refuses the second.
        Index(
            "uq_deployments_active",
            "service",
            "environment",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        Index("ix_deployments_service_env", "service", "environment", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(default="deploy", max_length=20)  # deploy | rollback
    service: str = Field(max_length=100)
    environment: str = Field(max_length=100)
    version: str = Field(max_length=200)
    image: str = Field(max_length=500)
    strategy: str = Field(max_length=20)
    state: str = Field(default=DeployState.REQUESTED, max_length=30)
    active: bool = True
    # Bumped on every stored change: a tick that read an older row loses.
    revision: int = 0
    requested_by: str = Field(max_length=100)
    approved_by: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=100)
    previous_version: str | None = Field(default=None, max_length=200)
    previous_image: str | None = Field(default=None, max_length=500)
    sha: str | None = Field(default=None, max_length=64)
    commit_time: datetime | None = _utc(nullable=True)
    github_deployment_id: int | None = None
    forced_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Strategy progress (canary step, slots, analysis counters), stored
    # between ticks so a restart resumes exactly where it was.
    progress: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _utc(index=True)
    started_at: datetime | None = _utc(nullable=True)
    finished_at: datetime | None = _utc(nullable=True)

    @property
    def key(self) -> str:
        """The message key of this deploy's progress message and thread."""
        return f"deploy-{self.id}"

    @property
    def deploy_state(self) -> DeployState:
        return DeployState(self.state)


class DeployTransition(SQLModel, table=True):
    __tablename__ = "deploy_transitions"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployments.id", index=True)
    at: datetime = _utc()
    from_state: str | None = Field(default=None, max_length=30)
    to_state: str = Field(max_length=30)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))


class DeployLock(SQLModel, table=True):
    __tablename__ = "deploy_locks"

    service: str = Field(primary_key=True, max_length=100)
    environment: str = Field(primary_key=True, max_length=100)
    owner: str = Field(max_length=100)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    automatic: bool = False  # taken by the bot after a failed deploy
    created_at: datetime = _utc()


class ScaleEvent(SQLModel, table=True):
    __tablename__ = "scale_events"
    __table_args__ = (Index("ix_scale_events_service_env", "service", "environment", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(max_length=100)
    environment: str = Field(max_length=100)
    replicas: int
    previous: int | None = None
    by: str = Field(max_length=100)
    at: datetime = _utc()


class DesiredState(SQLModel, table=True):
    """What the bot last applied; /drift compares the cluster with it."""

    __tablename__ = "desired_state"

    service: str = Field(primary_key=True, max_length=100)
    environment: str = Field(primary_key=True, max_length=100)
    image: str | None = Field(default=None, max_length=500)
    replicas: int | None = None
    # The Deployment that serves (blue-green moves it between slots).
    workload: str | None = Field(default=None, max_length=200)
    updated_by: str = Field(max_length=100)
    updated_at: datetime = _utc()
