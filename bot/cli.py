"""The `chatops` command: serve, shell, check-config, db."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bot.core.config import Config
from bot.core.config_loader import ConfigInvalid, load_config
from bot.core.jsonlog import setup_logging
from bot.core.settings import Settings
from bot.core.telemetry import setup_tracing

EXAMPLE_CONFIG = "chatops.example.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatops", description="Slack ChatOps bot")
    p.add_argument("--config", help="configuration file (default: $CHATOPS_CONFIG or chatops.yaml)")
    sub = p.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="run the bot: HTTP, Slack, scheduler and outbox")
    serve.add_argument("--host", default=os.environ.get("CHATOPS_HOST", "0.0.0.0"))  # noqa: S104 — a server in a container listens on all interfaces
    serve.add_argument("--port", type=int, default=int(os.environ.get("CHATOPS_PORT", "8080")))

    shell = sub.add_parser("shell", help="use the bot from a terminal prompt")
    shell.add_argument(
        "--as",
        dest="user",
        default=os.environ.get("CHATOPS_SHELL_USER", "ULOCAL"),
        help="Slack user id to act as (default ULOCAL)",
    )
    shell.add_argument("--channel", default="shell", help="channel the commands come from")
    shell.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for pending work at end of input (default 120)",
    )
    shell.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="also serve HTTP (webhooks, /metrics) while the prompt runs",
    )

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", nargs="?")

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "current"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    config_path = args.config or settings.config_path
    if args.cmd == "check-config":
        return check_config(args.file or config_path)
    if args.cmd == "db":
        setup_logging(settings.log_level, settings.secret_values())
        return asyncio.run(_db(settings, args.action))
    if (
        args.cmd == "shell"
        and not args.config
        and not Path(config_path).exists()
        and Path(EXAMPLE_CONFIG).exists()
    ):
        # A newcomer trying the bot before writing any configuration.
        print(
            f"(no {config_path} here: using {EXAMPLE_CONFIG}; copy it to make your own)",
            file=sys.stderr,
        )
        config_path = EXAMPLE_CONFIG
    config = _load_or_exit(config_path)
    setup_logging(settings.log_level, settings.secret_values())
    setup_tracing(settings.otlp_endpoint)
    if args.cmd == "serve":
        return asyncio.run(_serve(settings, config, args.host, args.port))
    if args.cmd == "shell":
        # Only warnings reach the terminal, so logs do not drown the conversation.
        if "CHATOPS_LOG_LEVEL" not in os.environ:
            setup_logging("WARNING", settings.secret_values())
        return asyncio.run(_shell(settings, config, args))
    return 2


def check_config(path: str) -> int:
    from bot.runbooks.loader import load_runbooks

    try:
        config = load_config(path)
    except ConfigInvalid as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} error(s) in {path}", file=sys.stderr)
        return 1
    base = Path(path).resolve().parent
    runbooks, errors = load_runbooks(
        [base / p for p in config.runbooks.paths], config.runbooks.shell_allowlist
    )
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print(f"{len(errors)} error(s) in runbooks", file=sys.stderr)
        return 1
    print(
        f"{path}: OK — {len(config.services)} services, "
        f"{len(config.environments)} environments, {len(config.rbac.grants)} RBAC grants, "
        f"{len(runbooks)} runbooks"
    )
    return 0


def _load_or_exit(path: str) -> Config:
    if not Path(path).exists():
        print(
            f"chatops: no configuration at {path}. Pass --config FILE, set CHATOPS_CONFIG, "
            "or start from chatops.example.yaml.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        return load_config(path)
    except ConfigInvalid as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        raise SystemExit(2) from None


async def _db(settings: Settings, action: str) -> int:
    from bot.core.db import Database, head_revision, redact_url

    db = Database.from_url(settings.database_url, schema=settings.database_schema)
    try:
        if action == "upgrade":
            await db.upgrade()
        current = await db.current_revision()
        print(f"{redact_url(settings.database_url)}: at {current} (head {head_revision()})")
    finally:
        await db.dispose()
    return 0


async def _serve(settings: Settings, config: Config, host: str, port: int) -> int:
    from bot.app import BotApp
    from bot.runtime import build_runtime

    started = time.perf_counter()
    runtime = build_runtime(BotApp(settings, config))
    await runtime.start(host, port)
    print(
        f"chatops: serving on {runtime.url} (ready in {time.perf_counter() - started:.2f}s)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runtime.stop()
    return 0


async def _shell(settings: Settings, config: Config, args: argparse.Namespace) -> int:
    from bot.app import BotApp
    from bot.console import ConsoleDeliverer
    from bot.runtime import build_runtime
    from bot.shell import run_shell

    sandbox = None
    if not settings.kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        sandbox, settings = await _start_sandbox(settings, config)
    # The terminal has no Slack rate limit to respect.
    bot = BotApp(settings, config, outbox_rate=50.0, outbox_burst=50)
    runtime = build_runtime(bot, deliverer=ConsoleDeliverer())
    host, port = None, 0
    if args.listen:
        host, _, port_text = args.listen.rpartition(":")
        port = int(port_text)
        if not _port_free(host, port):
            print(
                f"(port {port} is in use: running without HTTP; pass --listen HOST:PORT)",
                flush=True,
            )
            host = None
    await runtime.start(host or None, port)
    if runtime.url:
        print(f"(HTTP on {runtime.url})", flush=True)
    try:
        return await run_shell(bot, user=args.user, channel=args.channel, wait=args.wait)
    finally:
        await runtime.stop()
        if sandbox is not None:
            await sandbox.stop()


async def _start_sandbox(settings: Settings, config: Config) -> tuple[Any, Settings]:
    """No KUBECONFIG: run the sandbox cluster so deploys can be tried. The bot
    reaches it like any cluster, through a kubeconfig (never ~/.kube/config,
    so trying the bot cannot touch a real cluster by accident)."""
    from bot.sandbox_seed import sandbox_config
    from sandbox import start_sandbox

    fast = os.environ.get("CHATOPS_SANDBOX_FAST") == "1"
    sandbox = await start_sandbox(sandbox_config(config, fast=fast))
    folder = Path(".sandbox")
    await asyncio.to_thread(folder.mkdir, exist_ok=True)
    path = await asyncio.to_thread(sandbox.write_kubeconfig, folder / "kubeconfig")
    updates: dict[str, Any] = {"kubeconfig": str(path)}
    if not settings.prometheus_url:
        updates["prometheus_url"] = sandbox.prometheus_url
    print(
        f"(no KUBECONFIG: started a sandbox cluster with the example services at {sandbox.url};"
        f" metrics at {sandbox.prometheus_url}; try kubectl --kubeconfig {path} get deploy -A."
        " Tags ending -crash, -bad or -slow misbehave on purpose.)",
        file=sys.stderr,
        flush=True,
    )
    return sandbox, settings.model_copy(update=updates)


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
