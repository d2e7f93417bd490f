"""Slack Web API calls the bot makes, with failures classified.

Built on slack-sdk's AsyncWebClient; the base URL is configurable (tests
point it at a local fake). The client's own retry handlers are disabled:
the outbox decides when to retry, so a failing call never stalls a caller.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

# Errors that retrying later can fix; everything else Slack says is final.
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
              "request_timeout", "team_not_found_temporarily"}
OUTBOX_EVENT_TYPE = "chatops_outbox"


@dataclass
class SlackCallError(Exception):
    kind: Literal["rate_limited", "transient", "permanent"]
    error: str
    retry_after: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind}: {self.error}"


class SlackPoster:
    def __init__(self, token: str, base_url: str, timeout: float = 10.0) -> None:
        self.client = AsyncWebClient(token=token, base_url=base_url, timeout=int(timeout),
                                     retry_handlers=[])
        self.timeout = timeout

    async def call(self, request: Awaitable[AsyncSlackResponse]) -> dict[str, Any]:
        """Await one SDK call (the SDK knows each method's HTTP shape)."""
        try:
            response = await request
        except SlackApiError as exc:
            raise _classify(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SlackCallError("transient", f"{type(exc).__name__}: {exc}") from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def post_message(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None, *,
        thread_ts: str | None = None, reply_broadcast: bool = False,
        outbox_id: int | None = None,
    ) -> tuple[str, str]:
        """Post; returns (channel id, ts). `outbox_id` is attached as message
        metadata so a post can be found again after a crash mid-send."""
        params: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
        if blocks:
            params["blocks"] = blocks
        if thread_ts:
            params["thread_ts"] = thread_ts
            if reply_broadcast:
                params["reply_broadcast"] = True
        if outbox_id is not None:
            params["metadata"] = {"event_type": OUTBOX_EVENT_TYPE,
                                  "event_payload": {"outbox_id": outbox_id}}
        try:
            data = await self.call(self.client.chat_postMessage(**params))
        except SlackCallError as exc:
            if exc.error != "not_in_channel":
                raise
            # Public channels can be joined without an invitation.
            await self.call(self.client.conversations_join(channel=channel))
            data = await self.call(self.client.chat_postMessage(**params))
        return str(data.get("channel", channel)), str(data["ts"])

    async def update_message(self, channel: str, ts: str, text: str,
                             blocks: list[dict[str, Any]] | None = None) -> None:
        await self.call(self.client.chat_update(channel=channel, ts=ts, text=text,
                                                blocks=blocks or []))

    async def post_ephemeral(self, channel: str, user: str, text: str,
                             blocks: list[dict[str, Any]] | None = None,
                             thread_ts: str | None = None) -> None:
        params: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if blocks:
            params["blocks"] = blocks
        if thread_ts:
            params["thread_ts"] = thread_ts
        await self.call(self.client.chat_postEphemeral(**params))

    async def respond(self, response_url: str, body: dict[str, Any]) -> None:
        """POST to a response_url (no token: the URL itself authorises)."""
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as http, \
                    http.post(response_url, json=body) as resp:
                if resp.status == 429:
                    raise SlackCallError("rate_limited", "ratelimited",
                                         float(resp.headers.get("Retry-After", "1")))
                if resp.status >= 500:
                    raise SlackCallError("transient", f"HTTP {resp.status}")
                if resp.status >= 400:
                    raise SlackCallError("permanent", f"HTTP {resp.status}: {await resp.text()}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SlackCallError("transient", f"{type(exc).__name__}: {exc}") from None

    async def find_outbox_message(self, channel: str, outbox_id: int,
                                  oldest: float) -> str | None:
        """The ts of the message posted for `outbox_id`, if it reached Slack."""
        data = await self.call(self.client.conversations_history(
            channel=channel, oldest=f"{oldest:.6f}", include_all_metadata=True, limit=200))
        for message in data.get("messages", []):
            meta = message.get("metadata") or {}
            if (meta.get("event_type") == OUTBOX_EVENT_TYPE
                    and meta.get("event_payload", {}).get("outbox_id") == outbox_id):
                return str(message["ts"])
        return None

    async def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """One message by its ts (thread replies too), or None."""
        # Replies always start with the thread's parent, then come from `oldest`.
        data = await self.call(self.client.conversations_replies(
            channel=channel, ts=ts, oldest=ts, inclusive=True, limit=2))
        for message in data.get("messages", []):
            if message.get("ts") == ts:
                return dict(message)
        return None

    async def create_channel(self, name: str) -> str:
        """Create a public channel (or find ours from an earlier try); its id."""
        try:
            data = await self.call(self.client.conversations_create(name=name))
        except SlackCallError as exc:
            if exc.error != "name_taken":
                raise
            found = await self.call(self.client.conversations_list(
                exclude_archived=True, limit=1000, types="public_channel"))
            for channel in found.get("channels", []):
                if channel.get("name") == name:
                    return str(channel["id"])
            raise
        return str(data["channel"]["id"])

    async def invite(self, channel: str, users: list[str]) -> None:
        try:
            await self.call(self.client.conversations_invite(channel=channel,
                                                             users=",".join(users)))
        except SlackCallError as exc:
            if exc.error != "already_in_channel":
                raise

    async def user_timezone(self, user: str) -> str | None:
        """The IANA time zone a person set in Slack (users.info `tz`)."""
        data = await self.call(self.client.users_info(user=user))
        tz = (data.get("user") or {}).get("tz")
        return str(tz) if tz else None

    async def user_email(self, user: str) -> str | None:
        """A person's email address (users.info `profile.email`; needs the
        users:read.email scope), or None when Slack does not show one."""
        data = await self.call(self.client.users_info(user=user))
        email = ((data.get("user") or {}).get("profile") or {}).get("email")
        return str(email) if email else None

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        """Open a modal for the person whose interaction gave `trigger_id`
        (valid once, for three seconds after the interaction)."""
        await self.call(self.client.views_open(trigger_id=trigger_id, view=view))

    async def usergroup_members(self, group_id: str) -> list[str]:
        data = await self.call(self.client.usergroups_users_list(usergroup=group_id))
        return [str(u) for u in data.get("users", [])]


def _classify(exc: SlackApiError) -> SlackCallError:
    status = exc.response.status_code
    error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
    if status == 429 or error == "ratelimited":
        retry = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        return SlackCallError("rate_limited", error or "HTTP 429", float(retry or 1))
    if status >= 500 or error in _TRANSIENT:
        return SlackCallError("transient", error or f"HTTP {status}")
    return SlackCallError("permanent", error or f"HTTP {status}")
