"""Sends Slack's inbound requests to the running bot exactly as Slack does:
form-encoded slash commands, `payload=` interactivity (buttons, modal
submissions), JSON events, each signed with the signing secret (or
deliberately not)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier


@dataclass
class SlackResult:
    status: int
    text: str
    elapsed: float  # seconds from send to the bot's HTTP answer


class SlackRequester:
    def __init__(self, bot_url: str, signing_secret: str, *, team_id: str = "T0000FAKE") -> None:
        self.url = bot_url.rstrip("/") + "/slack/events"
        self.secret = signing_secret
        self.team_id = team_id
        self._trigger = 0

    def sign(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = SignatureVerifier(self.secret).generate_signature(timestamp=ts, body=body)
        assert sig is not None
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}

    async def post(self, body: str, content_type: str, *, headers: dict[str, str] | None = None,
                   sign: bool = True, timestamp: int | None = None) -> SlackResult:
        all_headers = {"Content-Type": content_type}
        if sign:
            all_headers.update(self.sign(body, timestamp))
        all_headers.update(headers or {})
        started = time.perf_counter()
        async with aiohttp.ClientSession() as http, \
                http.post(self.url, data=body.encode(), headers=all_headers) as resp:
            text = await resp.text()
            return SlackResult(resp.status, text, time.perf_counter() - started)

    def command_body(self, command: str, text: str = "", *, user: str = "UALICE",
                     channel: str = "C0TEST", response_url: str | None = None) -> str:
        self._trigger += 1
        fields = {
            "token": "deprecated-verification-token", "team_id": self.team_id,
            "team_domain": "example", "channel_id": channel, "channel_name": "test",
            "user_id": user, "user_name": user.lower(), "command": command, "text": text,
            "api_app_id": "A0CHATOPS", "is_enterprise_install": "false",
            "response_url": response_url or "", "trigger_id": f"trigger.{self._trigger}",
        }
        return urlencode(fields)

    async def command(self, command: str, text: str = "", *, user: str = "UALICE",
                      channel: str = "C0TEST", response_url: str | None = None,
                      **kw: Any) -> SlackResult:
        body = self.command_body(command, text, user=user, channel=channel,
                                 response_url=response_url)
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def action(self, action_id: str, value: str = "", *, user: str = "UALICE",
                     channel: str = "C0TEST", message_ts: str = "1700000000.000100",
                     thread_ts: str | None = None, response_url: str | None = None,
                     **kw: Any) -> SlackResult:
        self._trigger += 1
        message: dict[str, Any] = {"type": "message", "ts": message_ts, "text": ""}
        if thread_ts:
            message["thread_ts"] = thread_ts
        payload = {
            "type": "block_actions", "team": {"id": self.team_id, "domain": "example"},
            "user": {"id": user, "username": user.lower(), "team_id": self.team_id},
            "api_app_id": "A0CHATOPS", "token": "deprecated-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": False},
            "trigger_id": f"trigger.{self._trigger}",
            "channel": {"id": channel, "name": "test"}, "message": message,
            "response_url": response_url or "",
            "actions": [{"action_id": action_id, "block_id": "b1", "value": value,
                         "type": "button", "action_ts": f"{time.time():.6f}",
                         "text": {"type": "plain_text", "text": action_id}}],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def view_submission(self, callback_id: str, values: dict[str, Any],
                              private_metadata: str = "", *, user: str = "UALICE",
                              view: dict[str, Any] | None = None, **kw: Any) -> SlackResult:
        """Submit a modal. `values` is the view's state as Slack sends it,
        {block_id: {action_id: {"type": "plain_text_input", "value": ...}}};
        `view` the opened view (as views.open answered), else a bare one."""
        self._trigger += 1
        base: dict[str, Any] = {"id": "V0FAKE", "type": "modal", "blocks": [], "hash": "1.2",
                                "title": {"type": "plain_text", "text": "Form"}}
        submitted = {**base, **(view or {}), "callback_id": callback_id,
                     "private_metadata": private_metadata, "state": {"values": values},
                     "team_id": self.team_id, "app_id": "A0CHATOPS"}
        payload = {
            "type": "view_submission", "team": {"id": self.team_id, "domain": "example"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": self.team_id},
            "api_app_id": "A0CHATOPS", "token": "deprecated-verification-token",
            "trigger_id": f"trigger.{self._trigger}", "view": submitted,
            "response_urls": [], "is_enterprise_install": False, "enterprise": None,
        }
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def event(self, event: dict[str, Any], *, event_id: str,
                    retry_num: int | None = None, **kw: Any) -> SlackResult:
        body = json.dumps({
            "token": "deprecated-verification-token", "team_id": self.team_id,
            "api_app_id": "A0CHATOPS", "event": event, "type": "event_callback",
            "event_id": event_id, "event_time": int(time.time()),
        })
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} \
            if retry_num is not None else None
        return await self.post(body, "application/json", headers=headers, **kw)
