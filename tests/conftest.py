"""Shared fixtures: a database per test on SQLite and on PostgreSQL, the fake
Slack Web API, and a running bot reached over real HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import BotApp
from bot.core.config import Config
from bot.core.config_loader import load_config
from bot.core.db import Database
from bot.core.settings import Settings
from bot.runtime import Runtime, build_runtime
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import SlackRequester

DATA = Path(__file__).parent / "data"
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-bot-token"


def _pg_reachable() -> bool:
    host = PG_URL.split("@")[-1].split("/")[0]
    name, _, port = host.partition(":")
    try:
        with socket.create_connection((name, int(port or 5432)), timeout=1):
            return True
    except OSError:
        return False


PG_UP = _pg_reachable()


def require_postgres() -> None:
    """Under CI=true a missing PostgreSQL fails the run; locally it skips."""
    if PG_UP:
        return
    if IN_CI:
        pytest.fail(f"PostgreSQL is required under CI=true and is not reachable at {PG_URL}")
    pytest.skip(f"PostgreSQL not reachable at {PG_URL}")


@dataclass
class DbTarget:
    """Where a test's database lives; subprocess tests pass it as environment."""

    backend: str
    url: str
    schema: str | None = None

    def env(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.url}
        if self.schema:
            env["CHATOPS_DB_SCHEMA"] = self.schema
        return env

    def database(self) -> Database:
        return Database.from_url(self.url, schema=self.schema)


async def _pg_admin(sql: str) -> None:
    engine = create_async_engine(PG_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DbTarget]:
    if request.param == "sqlite":
        yield DbTarget("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
        return
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield DbTarget("postgresql", PG_URL, schema)
    finally:
        await _pg_admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def db(db_target: DbTarget) -> AsyncIterator[Database]:
    database = db_target.database()
    await database.upgrade()
    yield database
    await database.dispose()


@pytest.fixture
def config() -> Config:
    return load_config(DATA / "config.yaml", env={})


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def bot_settings(slack: FakeSlack, target: DbTarget, **extra: str) -> Settings:
    values = {
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url, "DATABASE_URL": target.url,
        "CHATOPS_WEBHOOK_TOKEN": "test-webhook-token", **extra,
    }
    if target.schema:
        values["CHATOPS_DB_SCHEMA"] = target.schema
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class RunningBot:
    runtime: Runtime
    slack: FakeSlack
    requests: SlackRequester

    @property
    def bot(self) -> BotApp:
        return self.runtime.bot

    @property
    def url(self) -> str:
        assert self.runtime.url is not None
        return self.runtime.url


@pytest.fixture
async def running_bot(
    db: Database, db_target: DbTarget, slack: FakeSlack, config: Config
) -> AsyncIterator[RunningBot]:
    bot = BotApp(bot_settings(slack, db_target), config, db=db, outbox_rate=20.0,
                 scheduler_poll=0.05)
    runtime = build_runtime(bot)
    await runtime.start("127.0.0.1", 0)
    assert runtime.url is not None
    try:
        yield RunningBot(runtime, slack, SlackRequester(runtime.url, SIGNING_SECRET))
    finally:
        await runtime.stop()


async def eventually(predicate: object, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Poll an (async) predicate until it holds; fail with the timeout otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate() if callable(predicate) else predicate
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


_SPANS: object | None = None


@pytest.fixture
def spans() -> object:
    """Spans recorded in memory (the tracer provider can be set once a process)."""
    global _SPANS
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if _SPANS is None:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _SPANS = exporter
    assert isinstance(_SPANS, InMemorySpanExporter)
    _SPANS.clear()
    return _SPANS
