"""Runbook runs and their steps, as stored.

A run is a state machine the scheduler advances one step at a time; what a
step is in the middle of (a wait's deadline, the rollback it issued, an
approval's deadline) lives in `step_state`, so a restart resumes it where it
was instead of starting the step again.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

from bot.core.db import UTCDateTime


def _utc(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class RunStatus(StrEnum):
    RUNNING = "Running"
    WAITING = "Waiting for approval"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REJECTED = "Rejected"
    CANCELLED = "Cancelled"


FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class RunbookRun(SQLModel, table=True):
    __tablename__ = "runbook_runs"
    __table_args__ = (Index("ix_runbook_runs_incident", "incident_id"),)

    id: int | None = Field(default=None, primary_key=True)
    runbook: str = Field(max_length=100)
    title: str = Field(max_length=300)
    status: str = Field(default=RunStatus.RUNNING, max_length=30)
    params: dict[str, Any] = _json()
    # Template context that is not a parameter: labels, annotations, incident.
    context: dict[str, Any] = _json()
    incident_id: int | None = Field(default=None, foreign_key="incidents.id")
    channel: str = Field(max_length=100)  # where the command ran (or the incident's channel)
    # The outbox key of the message whose thread gets the details: the
    # incident's own message, or the run's progress message.
    thread_key: str = Field(max_length=100)
    started_by: str = Field(max_length=100)
    automatic: bool = False
    step: int = 0  # index of the step being run
    step_state: dict[str, Any] = _json()
    outputs: dict[str, Any] = _json()  # step name -> output, for later templates
    cancel_requested_by: str | None = Field(default=None, max_length=100)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _utc(index=True)
    finished_at: datetime | None = _utc(nullable=True)

    @property
    def key(self) -> str:
        """The outbox key of the run's progress message."""
        return f"runbook-run-{self.id}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class RunbookStepRecord(SQLModel, table=True):
    """What one step did: its resolved inputs, its output, its timing."""

    __tablename__ = "runbook_steps"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runbook_runs.id", index=True)
    index: int
    name: str = Field(max_length=200)
    type: str = Field(max_length=40)
    status: str = Field(max_length=20)
    inputs: dict[str, Any] = _json()
    output: dict[str, Any] = _json()
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    started_at: datetime = _utc()
    finished_at: datetime = _utc()
