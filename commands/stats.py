"""/stats: incident response and DORA figures over the last days; the same
figures as gauges on /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.core.chat import CommandContext, Reply
from bot.core.config import Service
from bot.core.errors import ChatOpsError, UsageError
from bot.core.grammar import Parsed
from bot.reports.exporter import StatsExporter
from bot.reports.render import render_stats
from bot.reports.report import stats_report
from bot.reports.stats import default_environment

if TYPE_CHECKING:
    from bot.app import BotApp

MAX_DAYS = 365


def register(bot: BotApp) -> None:
    r, config = bot.registry, bot.config
    bot.metrics.add_refresher(StatsExporter(bot.db, config, bot.clock, bot.metrics).refresh)

    def service_named(name: str | None) -> Service | None:
        if name is None:
            return None
        found = config.service(name)
        if found is None:
            known = ", ".join(s.name for s in config.services) or "none configured"
            raise ChatOpsError(f"There is no service '{name}' (known: {known}).")
        return found

    def environment_for(service: Service | None, name: str | None) -> str:
        if name is None:
            return default_environment(config, service)
        known = service.environments if service else [e.name for e in config.environments]
        if name not in known:
            where = f"{service.name}'s environments" if service else "environments"
            raise ChatOpsError(f"'{name}' is not one of the {where} ({', '.join(known)}).")
        return name

    @r.command(
        "/stats [<service>] [days=<days:int>] [env=<env>]",
        "Incidents, MTTA/MTTR, pages per person and the DORA four over the last days "
        "(deploys in the production-like environment unless env= says otherwise)",
        family_summary="Incident response and deployment (DORA) figures",
    )
    async def stats(ctx: CommandContext, a: Parsed) -> Reply:
        days = int(a.get("days", config.stats.default_days))
        if not 1 <= days <= MAX_DAYS:
            raise UsageError(
                f"days must be between 1 and {MAX_DAYS}.", r.commands["/stats"].usage()
            )
        service = service_named(a.get("service"))
        report = await stats_report(
            bot.db,
            config,
            bot.clock.now(),
            days=days,
            service=service.name if service else None,
            environment=environment_for(service, a.get("env")),
        )
        return render_stats(report)
