"""Runbook fixtures: the deploy test bed (sandbox cluster, fake GitHub, the
bot over signed HTTP) with the shipped runbooks and the tests' own loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import col, select

from bot.core.config import Config, RunbookSettings
from bot.core.db import Database
from bot.runbooks.models import RunbookRun, RunbookStepRecord
from tests.conftest import RunningBot, eventually
from tests.deploys.conftest import cluster, deploy_bot, github  # noqa: F401 (fixtures)
from tests.fakes.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[2]
TEST_RUNBOOKS = Path(__file__).resolve().parent / "data"


@pytest.fixture
def config(config: Config) -> Config:
    settings = RunbookSettings(
        paths=[str(ROOT / "runbooks"), str(TEST_RUNBOOKS)],
        shell_allowlist=["kubectl", "printf"],
    )
    return config.model_copy(update={"runbooks": settings})


async def runs(db: Database) -> list[RunbookRun]:
    async with db.transaction() as s:
        return list((await s.exec(select(RunbookRun).order_by(col(RunbookRun.id)))).all())


async def steps(db: Database, run_id: int) -> list[RunbookStepRecord]:
    async with db.transaction() as s:
        rows = await s.exec(
            select(RunbookStepRecord)
            .where(RunbookStepRecord.run_id == run_id)
            .order_by(col(RunbookStepRecord.id))
        )
        return list(rows.all())


async def wait_run(rb: RunningBot, run_id: int, *states: str, timeout: float = 30) -> RunbookRun:
    seen: list[str] = []

    async def reached() -> bool:
        run = next((r for r in await runs(rb.bot.db) if r.id == run_id), None)
        seen[:] = [f"{run.status} at step {run.step}: {run.error}"] if run else ["no such run"]
        return run is not None and run.status in states

    try:
        await eventually(reached, timeout=timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(f"run #{run_id} never reached {states}; last: {seen}") from None
    return next(r for r in await runs(rb.bot.db) if r.id == run_id)


async def wait_for_series(prometheus_url: str, query: str, timeout: float = 20) -> None:
    """Wait until the sandbox's Prometheus answers the instant ``query`` with a
    number: a rate needs two scrapes of a ready pod that served traffic, which
    a busy machine can delay past the moment a test starts a runbook."""

    async def answered() -> bool:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{prometheus_url}/api/v1/query", params={"query": query}) as resp,
        ):
            body = await resp.json()
        result = body["data"]["result"] if resp.status == 200 else []
        return any(r["value"][1] != "NaN" for r in result)

    await eventually(answered, timeout=timeout, interval=0.2)


def buttons(slack: FakeSlack, action_id: str) -> list[dict[str, Any]]:
    """Every button with this action id the bot has posted or edited in."""
    found = []
    for call in slack.calls(ok=True):
        raw = call.body.get("blocks") if isinstance(call.body, dict) else None
        blocks = json.loads(raw) if isinstance(raw, str) else raw or []
        for block in blocks:
            for element in block.get("elements", []) if isinstance(block, dict) else []:
                if isinstance(element, dict) and element.get("action_id") == action_id:
                    found.append(element)
    return found
