"""Publishing a postmortem to Jira, as a scheduler job.

Idempotent end to end: every issue carries a unique label (the postmortem's,
or the action item's), and the client finds an issue by that label before it
creates one, so a second publish, or a retry after an answer that was lost,
updates the issue instead of filing another. Jira unavailable (5xx, 429, no
answer): retried with doubling delays, and the thread hears about it once.
Refused (credentials, permissions, bad fields): reported with Jira's own
words, not retried.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot.core import audit
from bot.core.audit import Actor
from bot.core.chat import Message
from bot.core.durations import format_duration
from bot.core.scheduler import JobContext
from bot.incidents.models import Incident
from bot.postmortems import render
from bot.postmortems.models import ActionItem, JiraStatus, Postmortem
from bot.postmortems.service import BOT, DRAFT, PUBLISH, REMIND, PostmortemService
from integrations.jira_issues import IssueRef, JiraClient, JiraError

log = logging.getLogger("chatops.postmortems")


class JiraPublisher:
    def __init__(self, service: PostmortemService, jira: JiraClient | None) -> None:
        self.pm, self.jira = service, jira
        self.cfg = service.settings.jira
        service.jira_configured = jira is not None
        service.scheduler.handler(PUBLISH)(self._publish)
        service.scheduler.handler(REMIND)(self._remind)
        service.scheduler.handler(DRAFT)(self._draft)

    async def _draft(self, job: JobContext) -> None:
        await self.pm.draft_required(int(job.payload["incident"]))

    async def _remind(self, job: JobContext) -> None:
        await self.pm.remind(int(job.payload["incident"]))

    async def _account(self, slack_user: str | None) -> str | None:
        """A Slack user's Jira account: from the config, else by email."""
        if slack_user is None or self.jira is None:
            return None
        if slack_user in self.cfg.users:
            return self.cfg.users[slack_user]
        if self.pm.emails is None:
            return None
        try:
            email = await self.pm.emails(slack_user)
            return await self.jira.account_for_email(email) if email else None
        except Exception:  # an unassigned item beats an unpublished postmortem
            log.warning("no Jira account found for a Slack user", exc_info=True)
            return None

    async def _issues(
        self, pm: Postmortem, items: list[ActionItem], inc: Incident
    ) -> tuple[IssueRef, dict[int, IssueRef]]:
        assert self.jira is not None
        cfg, prefix = self.cfg, f"{self.cfg.label_prefix}-postmortem-inc-{inc.id}"
        main = await self.jira.upsert_issue(
            unique_label=prefix,
            project=cfg.project,
            issue_type=cfg.issue_type,
            summary=str(pm.sections.get("title") or f"Postmortem {inc.ref}"),
            description=render.jira_description(pm, items, inc.ref),
            labels=cfg.labels,
            components=cfg.components,
        )
        made: dict[int, IssueRef] = {}
        for item in items:
            ref = await self.jira.upsert_issue(
                unique_label=f"{prefix}-action-{item.id}",
                project=cfg.project,
                issue_type=cfg.action_issue_type,
                summary=item.text,
                description=f"Action item from the postmortem of {inc.ref} ({main.key}).",
                labels=cfg.labels,
                components=cfg.components,
                parent=main.key if cfg.action_items == "subtask" else None,
                assignee=await self._account(item.owner),
                due=item.due,
            )
            if cfg.action_items == "linked":
                await self.jira.link(main.key, ref.key, cfg.link_type)
            made[item.id or 0] = ref
        return main, made

    async def _publish(self, job: JobContext) -> None:
        pm_id, attempt = int(job.payload["id"]), int(job.payload.get("attempt", 0))
        who = Actor(str(job.payload.get("by") or BOT), None, "jira")
        async with self.pm.db.transaction() as session:
            row = await session.get(Postmortem, pm_id)
            inc = await session.get(Incident, row.incident_id) if row else None
            _, items = await self.pm._load(session, row.incident_id) if row else (None, [])
        if row is None or inc is None:
            return
        if self.jira is None:
            await self._refused(
                job,
                row,
                inc,
                who,
                "Jira is not configured: set JIRA_URL, JIRA_USER and JIRA_TOKEN.",
            )
            return
        try:
            main, made = await self._issues(row, items, inc)
        except JiraError as exc:
            if exc.retryable:
                await self._retry(job, row, inc, attempt, exc)
            else:
                await self._refused(job, row, inc, who, f"{exc.message} ({exc.kind})")
            return
        except Exception as exc:  # a bug: say so once, rather than retry into duplicates
            log.exception("publishing a postmortem failed", extra={"postmortem": row.id})
            await self._refused(job, row, inc, who, f"internal error: {type(exc).__name__}")
            return
        await self._published(job, row, items, inc, who, main, made)

    async def _retry(
        self, job: JobContext, row: Postmortem, inc: Incident, attempt: int, exc: JiraError
    ) -> None:
        delay = min(self.cfg.retry_first * (2**attempt), self.cfg.retry_max)
        if exc.retry_after:
            delay = max(delay, timedelta(seconds=exc.retry_after))
        async with job.transaction() as session:
            pm = await session.get(Postmortem, row.id, populate_existing=True)
            if pm is not None:
                pm.jira_error = exc.message
                session.add(pm)
            await self.pm.scheduler.schedule(
                session,
                PUBLISH,
                {**job.payload, "attempt": attempt + 1},
                delay=delay.total_seconds(),
                key=f"postmortem-publish-{row.id}",
            )
            if attempt == 0:  # say it once, not on every retry
                await self.pm.outbox.post(
                    session,
                    "",
                    Message(
                        text=f":hourglass_flowing_sand: Jira is unavailable ({exc.message}); "
                        "the postmortem is queued and I will retry (next in "
                        f"{format_duration(delay)}). I will say here when it is published."
                    ),
                    thread_key=inc.ref,
                )
            await job.finish(session)

    async def _refused(
        self, job: JobContext, row: Postmortem, inc: Incident, who: Actor, reason: str
    ) -> None:
        async with job.transaction() as session:
            pm, items = await self.pm._load(session, inc.id or 0, lock=True)
            if pm is not None:
                pm.jira_status, pm.jira_error = JiraStatus.FAILED, reason
                session.add(pm)
                await self.pm.outbox.update(session, pm.key, render.message(pm, items, inc.ref))
            await self.pm.outbox.post(
                session,
                "",
                Message(
                    text=f":x: Jira refused the postmortem of {inc.ref}: {reason}\n"
                    f"Nothing more will be tried; fix that, then /postmortem publish {inc.ref}."
                ),
                thread_key=inc.ref,
            )
            await audit.by(
                session,
                who,
                at=self.pm.clock.now(),
                action="postmortem.publish",
                target=inc.ref,
                outcome="error",
                detail={"error": reason},
            )
            await job.finish(session)

    async def _published(
        self,
        job: JobContext,
        row: Postmortem,
        items: list[ActionItem],
        inc: Incident,
        who: Actor,
        main: IssueRef,
        made: dict[int, IssueRef],
    ) -> None:
        now = self.pm.clock.now()
        async with job.transaction() as session:
            pm, current = await self.pm._load(session, inc.id or 0, lock=True)
            if pm is None:
                await job.finish(session)
                return
            for item in current:
                if item.id in made:
                    item.jira_key = made[item.id].key
                    session.add(item)
            pm.jira_status, pm.jira_error = JiraStatus.PUBLISHED, None
            pm.jira_key, pm.jira_url = main.key, main.url
            pm.published_version, pm.published_at = row.version, now
            session.add(pm)
            await self.pm.outbox.update(session, pm.key, render.message(pm, current, inc.ref))
            verb = "Published" if main.created else "Updated"
            keys = ", ".join(ref.key for ref in made.values())
            extra = f" with {len(made)} action item(s): {keys}" if made else ""
            await self.pm.outbox.post(
                session,
                "",
                Message(text=f":white_check_mark: {verb} in Jira: <{main.url}|{main.key}>{extra}."),
                thread_key=inc.ref,
            )
            await self.pm.incidents.timeline(
                session, inc, "postmortem", f"postmortem {verb.lower()} in Jira as {main.key}"
            )
            detail: dict[str, Any] = {
                "key": main.key,
                "created": main.created,
                "version": row.version,
                "items": keys,
            }
            await audit.by(
                session, who, at=now, action="postmortem.published", target=inc.ref, detail=detail
            )
            await job.finish(session)
