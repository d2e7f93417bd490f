"""Command grammar: patterns as data, parsed without any chat."""

from __future__ import annotations

import pytest

from bot.core.chat import CommandContext, Reply, reply
from bot.core.grammar import Parsed, Pattern, UsageError, tokenize
from bot.core.registry import CommandRegistry

DEPLOY = ("/deploy <service> <version> [to <env>] "
          "[strategy=<strategy:rolling|canary|bluegreen>] [--dry-run]")


def match(pattern: str, text: str) -> dict[str, object] | None:
    parsed, _ = Pattern(pattern).match(tokenize(text))
    if parsed is None:
        return None
    return {**parsed.args, **{f"--{f}": True for f in parsed.flags}}


def test_positional_optional_options_and_flags_in_any_order() -> None:
    assert match(DEPLOY, "/deploy checkout v2") == {"service": "checkout", "version": "v2"}
    assert match(DEPLOY, "/deploy checkout v2 to production strategy=canary --dry-run") == {
        "service": "checkout", "version": "v2", "env": "production", "strategy": "canary",
        "--dry-run": True}
    assert match(DEPLOY, "/deploy --dry-run strategy=Canary checkout v2 TO staging") == {
        "service": "checkout", "version": "v2", "env": "staging", "strategy": "canary",
        "--dry-run": True}
    assert match(DEPLOY, "/deploy checkout") is None
    assert match(DEPLOY, "/deploy checkout v2 to") is None
    assert match(DEPLOY, "/deploy checkout v2 extra") is None


def test_typed_captures_explain_themselves() -> None:
    with pytest.raises(UsageError, match="replicas must be a whole number, not 'many'"):
        match("/scale <service> <replicas:int>", "/scale cart many")
    assert match("/scale <service> <replicas:int>", "/scale cart 4") == {
        "service": "cart", "replicas": 4}
    with pytest.raises(UsageError, match="strategy must be one of rolling, canary, bluegreen"):
        match(DEPLOY, "/deploy a b strategy=yolo")
    with pytest.raises(UsageError, match="unknown option --yolo"):
        match(DEPLOY, "/deploy a b --yolo")


def test_rest_captures_leave_room_for_what_follows() -> None:
    pattern = "/incident declare <title...> [sev=<sev>]"
    assert match(pattern, '/incident declare Checkout is down sev=1') == {
        "title": "Checkout is down", "sev": "1"}
    assert match(pattern, "/incident declare “quoted title” now") == {"title": "quoted title now"}
    assert match("/lock <service> <env> <reason...>", "/lock cart production db migration") == {
        "service": "cart", "env": "production", "reason": "db migration"}


def test_unbalanced_quotes_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no closing quotation"):
        tokenize('"open')


def test_registry_prefers_subcommands_and_explains_mistakes() -> None:
    reg = CommandRegistry()
    called: list[str] = []

    @reg.command("/deploy status <service> [<env>]", "What runs now")
    async def status(ctx: CommandContext, args: Parsed) -> Reply:
        called.append("status")
        return reply("status")

    @reg.command(DEPLOY, "Deploy a version")
    async def deploy(ctx: CommandContext, args: Parsed) -> Reply:
        called.append("deploy")
        return reply("deploy")

    form, parsed = reg.resolve("/deploy", "status checkout")
    assert form.summary == "What runs now" and parsed.args == {"service": "checkout"}
    form, parsed = reg.resolve("/deploy", "checkout v2")
    assert form.summary == "Deploy a version"
    with pytest.raises(UsageError) as err:
        reg.resolve("/deploy", "status")
    assert err.value.message == "Some arguments are missing."
    assert "/deploy status <service> [<env>]" in err.value.usage
    assert "/deploy <service> <version>" not in err.value.usage
    with pytest.raises(UsageError) as err:
        reg.resolve("/deploy", "checkout v2 now please")
    assert err.value.message == "I didn't expect 'now' there."
    with pytest.raises(UsageError, match="don't know the command /nope"):
        reg.resolve("/nope", "")
