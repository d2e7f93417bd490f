"""Who may do what where: roles per environment from the config's grants.

A grant names Slack users (U…/W…) or user groups (S…); group membership is
asked of a GroupDirectory (Slack's usergroups.users.list) and cached briefly,
so a person removed from a group loses the role within minutes.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from bot.core.config import Rbac, Role
from bot.core.errors import Refused

log = logging.getLogger("chatops.rbac")


class GroupDirectory(Protocol):
    async def members(self, group_id: str) -> list[str]: ...


class NoGroups:
    """Where there is no Slack (the terminal): groups have no members."""

    async def members(self, group_id: str) -> list[str]:
        return []


class Authorizer:
    def __init__(self, rbac: Rbac, groups: GroupDirectory | None = None,
                 cache_seconds: float = 300.0) -> None:
        self.rbac = rbac
        self.groups = groups or NoGroups()
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def role_of(self, user: str, environment: str) -> Role | None:
        best = self.rbac.default_role
        for grant in self.rbac.grants:
            if "*" not in grant.environments and environment not in grant.environments:
                continue
            if best is not None and grant.role <= best:
                continue
            if await self._matches(user, grant.subjects):
                best = grant.role
        return best

    async def require(self, user: str, environment: str, role: Role, *, action: str,
                      target: str | None = None) -> None:
        """Raise Refused (which the dispatcher audits) unless `user` has `role`."""
        have = await self.role_of(user, environment)
        if have is None or have < role:
            held = have.name.lower() if have is not None else "no role"
            what = action.replace("_", " ")
            raise Refused(
                f"You need the {role.name.lower()} role in {environment} to {what} "
                f"(you have {held}).",
                action=action, target=target, environment=environment, reason="forbidden")

    async def _matches(self, user: str, subjects: list[str]) -> bool:
        if user in subjects:
            return True
        for subject in subjects:
            if subject.startswith("S") and user in await self._members(subject):
                return True
        return False

    async def _members(self, group: str) -> frozenset[str]:
        cached = self._cache.get(group)
        now = time.monotonic()
        if cached and now - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            members = frozenset(await self.groups.members(group))
        except Exception:
            # Fail closed for the group (its members get no extra role), and
            # keep the last known answer if there is one.
            log.warning("could not read user group; its grant is not applied",
                        extra={"group": group}, exc_info=True)
            return cached[1] if cached else frozenset()
        self._cache[group] = (now, members)
        return members
