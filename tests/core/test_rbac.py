"""Roles per environment, including Slack user groups read from the fake Slack."""

from __future__ import annotations

import pytest

from bot.core.config import Config, Role
from bot.core.errors import Refused
from bot.core.rbac import Authorizer
from bot.slack.directory import SlackGroupDirectory
from integrations.slack import SlackPoster
from tests.conftest import BOT_TOKEN
from tests.fakes.slack_api import FakeSlack


async def test_roles_by_user_group_and_environment(config: Config, slack: FakeSlack) -> None:
    slack.add_usergroup("S0DEVS", ["UDAVE"])
    auth = Authorizer(config.rbac, SlackGroupDirectory(SlackPoster(BOT_TOKEN, slack.base_url)))
    assert await auth.role_of("UALICE", "production") == Role.ADMIN
    assert await auth.role_of("UBOB", "staging") == Role.APPROVER
    assert await auth.role_of("UCAROL", "staging") == Role.DEPLOYER
    assert await auth.role_of("UCAROL", "production") == Role.VIEWER  # the default role
    assert await auth.role_of("UDAVE", "staging") == Role.DEPLOYER  # through S0DEVS
    assert await auth.role_of("UDAVE", "production") == Role.VIEWER
    assert await auth.role_of("UNOBODY", "staging") == Role.VIEWER
    # Memberships are cached: one directory call for several checks.
    assert len(slack.calls("usergroups.users.list")) == 1


async def test_require_refuses_with_a_clear_message(config: Config) -> None:
    auth = Authorizer(config.rbac)
    await auth.require("UCAROL", "staging", Role.DEPLOYER, action="deploy", target="checkout")
    with pytest.raises(Refused) as refused:
        await auth.require("UCAROL", "production", Role.DEPLOYER, action="deploy",
                           target="checkout")
    assert refused.value.message == (
        "You need the deployer role in production to deploy (you have viewer).")
    assert refused.value.environment == "production" and refused.value.target == "checkout"


async def test_a_failing_directory_grants_nothing_extra(config: Config, slack: FakeSlack) -> None:
    slack.fail("usergroups.users.list", 500)
    auth = Authorizer(config.rbac, SlackGroupDirectory(SlackPoster(BOT_TOKEN, slack.base_url)))
    assert await auth.role_of("UDAVE", "staging") == Role.VIEWER
