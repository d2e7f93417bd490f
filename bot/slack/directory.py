"""Slack user groups as the RBAC group directory."""

from __future__ import annotations

from integrations.slack import SlackPoster


class SlackGroupDirectory:
    def __init__(self, poster: SlackPoster) -> None:
        self.poster = poster

    async def members(self, group_id: str) -> list[str]:
        return await self.poster.usergroup_members(group_id)
