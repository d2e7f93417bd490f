"""A /stats report: the rows it needs, read from the database, and the
figures computed from them (off the event loop)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlmodel import col, select

from bot.core.config import Config
from bot.core.db import Database
from bot.deploys.models import Deployment
from bot.incidents.models import Incident
from bot.paging.models import Page
from bot.reports.dora import DeployRow, DoraFigures, dora_figures
from bot.reports.stats import (
    IncidentFigures,
    IncidentRow,
    PageRow,
    Window,
    incident_figures,
    pages_per_person,
    production_environments,
)


@dataclass(frozen=True)
class History:
    """What a report is computed from: plain rows, safe to hand to a thread."""

    incidents: list[IncidentRow]  # detected in the window, or still open
    pages: list[PageRow]  # delivered in the window
    deploys: list[DeployRow]  # deploys and rollbacks alive at some point in the window


async def load_history(
    db: Database, window: Window, *, service: str | None = None, environment: str | None = None
) -> History:
    """The rows the figures need. Every rollback, later deploy and incident
    that can bear on a deploy finishing in the window happens after it, so
    inside the window too: nothing before the window start is needed except
    deploys still running then and incidents still open."""
    async with db.transaction() as s:
        incident_query = select(Incident).where(
            col(Incident.detected_at) <= window.end,
            or_(col(Incident.detected_at) >= window.start, col(Incident.resolved_at).is_(None)),
        )
        # Delivered pages only: one held back by the rate limit reached the
        # person inside a bundle page, which has a row of its own.
        page_query = select(Page.user, Page.sent_at).where(
            col(Page.sent_at) >= window.start,
            col(Page.sent_at) <= window.end,
            col(Page.suppressed).is_(False),
        )
        deploy_query = select(Deployment).where(
            col(Deployment.created_at) <= window.end,
            or_(col(Deployment.finished_at).is_(None), col(Deployment.finished_at) >= window.start),
        )
        if service is not None:
            incident_query = incident_query.where(Incident.service == service)
            # Pages about that service's incidents; manual pages and bundles
            # belong to no service.
            page_query = page_query.join(Incident, col(Page.incident_id) == col(Incident.id)).where(
                Incident.service == service
            )
            deploy_query = deploy_query.where(Deployment.service == service)
        if environment is not None:
            deploy_query = deploy_query.where(Deployment.environment == environment)
        incidents = (await s.exec(incident_query)).all()
        pages = (await s.exec(page_query)).all()
        deploys = (await s.exec(deploy_query)).all()
    return History(
        incidents=[
            IncidentRow(
                id=i.id or 0,
                service=i.service,
                severity=i.severity,
                detected_at=i.detected_at,
                acknowledged_at=i.acknowledged_at,
                mitigated_at=i.mitigated_at,
                resolved_at=i.resolved_at,
            )
            for i in incidents
        ],
        pages=[PageRow(user=user, sent_at=sent_at) for user, sent_at in pages],
        deploys=[
            DeployRow(
                id=d.id or 0,
                kind=d.kind,
                service=d.service,
                environment=d.environment,
                state=d.state,
                created_at=d.created_at,
                started_at=d.started_at,
                finished_at=d.finished_at,
                commit_time=d.commit_time,
            )
            for d in deploys
        ],
    )


@dataclass(frozen=True)
class StatsReport:
    window: Window
    days: int
    service: str | None
    environment: str
    failure_window: timedelta
    incidents: IncidentFigures
    pages: list[tuple[str, int]]
    dora: DoraFigures


def build_report(
    history: History,
    window: Window,
    config: Config,
    *,
    days: int,
    service: str | None,
    environment: str,
) -> StatsReport:
    """Pure: the figures of one report from its rows."""
    failure_window = config.stats.change_failure_window
    return StatsReport(
        window=window,
        days=days,
        service=service,
        environment=environment,
        failure_window=failure_window,
        incidents=incident_figures(history.incidents, window, [s.name for s in config.severities]),
        pages=pages_per_person(history.pages, window),
        dora=dora_figures(
            [d for d in history.deploys if d.environment == environment],
            history.incidents,
            window,
            failure_window=failure_window,
            incident_environments=production_environments(config),
        ),
    )


async def stats_report(
    db: Database,
    config: Config,
    now: datetime,
    *,
    days: int,
    service: str | None,
    environment: str,
) -> StatsReport:
    window = Window.last_days(now, days)
    history = await load_history(db, window, service=service, environment=environment)
    # A year of history is a few thousand rows: cheap, but arithmetic over it
    # still has no business holding up the event loop.
    return await asyncio.to_thread(
        build_report,
        history,
        window,
        config,
        days=days,
        service=service,
        environment=environment,
    )
