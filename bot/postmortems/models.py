"""Postmortems, their versions, and their action items, as stored.

A postmortem's text lives in `sections` (the prose people edit, plus the
timeline and response metrics the bot drafted); every change stores the
whole document again as a new version, so nothing anyone wrote is lost.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Date, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.core.db import UTCDateTime


def _utc(*, nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class JiraStatus(StrEnum):
    NONE = "unpublished"
    PENDING = "pending"  # queued, or Jira was unavailable and it will retry
    PUBLISHED = "published"
    FAILED = "failed"  # Jira refused (credentials, permissions, fields): a person acts


class Postmortem(SQLModel, table=True):
    __tablename__ = "postmortems"
    __table_args__ = (UniqueConstraint("incident_id", name="uq_postmortems_incident"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incidents.id")
    version: int = 1
    sections: dict[str, Any] = _json()
    created_by: str = Field(max_length=100)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()
    jira_status: str = Field(default=JiraStatus.NONE, max_length=20)
    jira_key: str | None = Field(default=None, max_length=50)
    jira_url: str | None = Field(default=None, max_length=500)
    jira_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    published_version: int | None = None
    published_at: datetime | None = _utc(nullable=True)

    @property
    def key(self) -> str:
        """The outbox key of its message in the incident's thread."""
        return f"postmortem-{self.id}"


class PostmortemVersion(SQLModel, table=True):
    __tablename__ = "postmortem_versions"
    __table_args__ = (UniqueConstraint("postmortem_id", "version", name="uq_postmortem_version"),)

    id: int | None = Field(default=None, primary_key=True)
    postmortem_id: int = Field(foreign_key="postmortems.id")
    version: int
    sections: dict[str, Any] = _json()
    action_items: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    author: str = Field(max_length=100)
    change: str = Field(sa_column=Column(Text, nullable=False))  # what this version changed
    created_at: datetime = _utc()


class ActionItem(SQLModel, table=True):
    __tablename__ = "postmortem_action_items"

    id: int | None = Field(default=None, primary_key=True)
    postmortem_id: int = Field(foreign_key="postmortems.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    owner: str | None = Field(default=None, max_length=100)  # a Slack user id
    due: date | None = Field(default=None, sa_column=Column(Date(), nullable=True))
    added_by: str = Field(max_length=100)
    added_at: datetime = _utc()
    jira_key: str | None = Field(default=None, max_length=50)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "owner": self.owner,
            "due": self.due.isoformat() if self.due else None,
            "jira_key": self.jira_key,
        }
