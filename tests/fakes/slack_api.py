"""A fake Slack Web API that the real slack-sdk `AsyncWebClient` talks to over HTTP.

    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
        await client.chat_postMessage(channel="C1", text="hi")
        [call] = await slack.wait_for("chat.postMessage")

Every request is recorded as a `Call` (failed and injected ones too), the workspace
state lives in `slack_state.SlackState`, and faults are injected per method with
`fail` / `error` / `delay`. Going through real HTTP keeps slack-sdk's own encoding,
error raising and retry handlers in the loop, which is what the bot depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote

from aiohttp import web
from multidict import CIMultiDict

from .slack_socket import SocketModeServer
from .slack_state import JSON, Ephemeral, Message, SlackError, SlackState, flag, ts_key

# Fields Slack accepts as JSON text inside form bodies; decoded so tests see objects.
JSON_FIELDS = frozenset({"blocks", "attachments", "metadata", "view", "unfurls",
                         "user_auth_blocks"})
_STATUS_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}


@dataclass
class UploadedFile:
    filename: str | None
    content_type: str
    content: bytes


@dataclass
class Call:
    """One HTTP request the fake received, and what it answered."""

    method: str  # "chat.postMessage", or "response_url"
    time: float  # time.monotonic() on arrival
    http_method: str
    headers: CIMultiDict[str]
    encoding: str  # "json" | "form" | "multipart" | "query" (args in URL) | "empty"
    form: dict[str, str]  # raw string fields (query + form/multipart), before JSON decoding
    body: JSON  # all arguments, JSON_FIELDS decoded to objects
    raw_body: bytes
    token: str | None
    files: dict[str, UploadedFile] = field(default_factory=dict)
    name: str | None = None  # the response_url name
    status: int = 200
    response: JSON = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    injected: str | None = None  # "status" / "error" when forced by fail() / error()

    @property
    def ok(self) -> bool:
        """Delivered: HTTP 200 and ok:true."""
        return self.status == 200 and self.response.get("ok") is True

    @property
    def error(self) -> str | None:
        err = self.response.get("error")
        return str(err) if err is not None else None

    @property
    def channel(self) -> str | None:
        """The channel id Slack resolved (from the response), else the one sent."""
        chan = self.response.get("channel", self.body.get("channel"))
        if isinstance(chan, dict):
            chan = chan.get("id")
        return str(chan) if chan is not None else None

    def describe(self) -> str:
        outcome = "ok" if self.ok else f"{self.status} {self.error or ''}".strip()
        args = {k: v for k, v in self.body.items() if k in ("channel", "text", "ts", "user")}
        tag = f"[{self.injected}] " if self.injected else ""
        return f"{self.method}{f'({self.name})' if self.name else ''} -> {tag}{outcome} {args}"


@dataclass
class _Rule:
    method: str
    status: int = 200
    error: str | None = None
    retry_after: int | None = None
    extra: JSON = field(default_factory=dict)
    delay: float = 0.0
    times: int | None = None
    until: float | None = None

    def take(self, method: str) -> bool:
        """True if this rule applies to this request; uses up one of its `times`."""
        if self.method not in ("*", method) or self.times == 0:
            return False
        if self.until is not None and time.monotonic() >= self.until:
            return False
        if self.times is not None:
            self.times -= 1
        return True


class FakeSlack:
    def __init__(
        self,
        *,
        tokens: Iterable[str] | None = None,
        team_id: str = "T0000FAKE",
        bot_user_id: str = "U0000BOT",
        bot_id: str = "B0000BOT",
        strict: bool = False,
        response_url_limit: int | None = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`tokens`: accepted tokens (default: any xoxb-/xoxp- token). `strict`: unknown
        channels/users are errors instead of being created on first use.
        `response_url_limit`: Slack allows 5 posts per response_url."""
        self.tokens = set(tokens) if tokens is not None else None
        self.state = SlackState(team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id,
                                strict=strict, clock=clock)
        self.response_url_limit = response_url_limit
        self._calls: list[Call] = []
        self._rules: list[_Rule] = []
        self._bindings: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.socket_mode = SocketModeServer()

    # ---- lifecycle -----------------------------------------------------------------
    async def start(self) -> FakeSlack:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response_url/{name}", self._handle_response_url)
        self.socket_mode.routes(app)
        # A short shutdown_timeout so a handler parked in delay() cannot stall stop().
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        await self.socket_mode.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """Pass as AsyncWebClient(base_url=...); ends with "/api/" like Slack's."""
        if not self.url:
            raise RuntimeError("FakeSlack is not started")
        return f"{self.url}/api/"

    def response_url(self, name: str, *, channel: str | None = None,
                     message_ts: str | None = None, user: str | None = None) -> str:
        """A response_url on the fake. Bound to a channel (and the message it came from,
        and the user who clicked), posts there also act on the workspace: in_channel
        posts a message, ephemeral (the default) adds an ephemeral for `user`,
        replace_original edits `message_ts`, delete_original deletes it."""
        self._bindings[name] = (channel, message_ts, user)
        return f"{self.base_url.removesuffix('/api/')}/response_url/{quote(name, safe='')}"

    # ---- seeding -------------------------------------------------------------------
    def add_user(self, id: str | None = None, name: str = "user", **kw: Any) -> JSON:
        """Seed the user directory (real_name, email, tz, is_bot, extra profile fields)."""
        return self.state.add_user(id, name, **kw)

    def add_channel(self, name: str, id: str | None = None, **kw: Any) -> JSON:
        """Seed a channel (is_private, members)."""
        return self.state.add_channel(name, id, **kw)

    def add_usergroup(self, id: str, users: Iterable[str]) -> None:
        self.state.add_usergroup(id, users)

    def add_message(self, channel: str, text: str, *, user: str, **kw: Any) -> Message:
        """Seed a message by a human (thread_ts, ts, blocks, metadata...)."""
        return self.state.add_message(channel, text, user=user, **kw)

    # ---- fault injection -----------------------------------------------------------
    def fail(self, method: str, status: int = 429, *, retry_after: int | None = None,
             times: int | None = None, for_seconds: float | None = None) -> None:
        """Answer `method` ("*" = all) with HTTP `status`; 429 carries Retry-After
        (default 1). Lasts `times` requests or `for_seconds`, else until heal()."""
        if status == 429 and retry_after is None:
            retry_after = 1
        self._add_rule(_Rule(method, status=status, retry_after=retry_after), times, for_seconds)

    def error(self, method: str, error: str, *, times: int | None = None,
              for_seconds: float | None = None, **extra: Any) -> None:
        """Answer `method` with HTTP 200 {"ok": false, "error": error, **extra}."""
        self._add_rule(_Rule(method, error=error, extra=extra), times, for_seconds)

    def delay(self, method: str, seconds: float, *, times: int | None = None) -> None:
        """Hold `method` for `seconds` before answering (the work still happens)."""
        self._add_rule(_Rule(method, delay=seconds), times, None)

    def heal(self, method: str | None = None) -> None:
        """Drop injected faults, for one method or all."""
        self._rules = [r for r in self._rules if method is not None and r.method != method]

    def _add_rule(self, rule: _Rule, times: int | None, for_seconds: float | None) -> None:
        rule.times = times
        rule.until = time.monotonic() + for_seconds if for_seconds is not None else None
        self._rules.append(rule)

    # ---- HTTP ----------------------------------------------------------------------
    async def _handle_api(self, request: web.Request) -> web.Response:
        call = await self._decode(request, request.match_info["method"])
        if await self._inject(call):
            return self._finish(call)
        if call.body.get("_invalid_json"):
            call.response = {"ok": False, "error": "invalid_json"}
        elif not call.token:
            call.response = {"ok": False, "error": "not_authed"}
        elif call.method == "apps.connections.open":
            # Only an app-level token may open a Socket Mode connection.
            call.response = (self.socket_mode.open_connection(self.url, call.token)
                             if call.token.startswith("xapp-")
                             else {"ok": False, "error": "not_allowed_token_type"})
        elif not self._token_ok(call.token):
            call.response = {"ok": False, "error": "invalid_auth"}
        else:
            try:
                call.response = self.state.dispatch(call.method, call.body)
            except SlackError as e:
                call.response = {"ok": False, "error": e.error, **e.extra}
        return self._finish(call)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        call = await self._decode(request, "response_url")
        call.name = request.match_info["name"]
        if await self._inject(call):
            return self._finish(call)
        used = len([c for c in self.calls("response_url") if c.name == call.name and c.ok])
        if self.response_url_limit is not None and used >= self.response_url_limit:
            call.status, call.response = 404, {"ok": False, "error": "used_url"}
            return self._finish(call)
        try:
            self._apply_response(call.name, call.body)
            call.response = {"ok": True}
        except SlackError as e:
            call.status, call.response = 400, {"ok": False, "error": e.error}
        return self._finish(call)

    def _apply_response(self, name: str, body: JSON) -> None:
        channel, message_ts, user = self._bindings.get(name, (None, None, None))
        if channel is None:
            return  # unbound: recorded only
        s = self.state
        if flag(body.get("delete_original")) and message_ts:
            s.delete(s.message(channel, message_ts))
        elif flag(body.get("replace_original")) and message_ts:
            s.update(s.message(channel, message_ts), {k: v for k, v in body.items()
                                                      if k in ("text", "blocks", "attachments")})
        elif body.get("response_type") == "in_channel":
            s.post({**body, "channel": channel})
        else:
            eph = Ephemeral(s.channel(channel)["id"], user or "", str(body.get("text") or ""),
                            body.get("blocks"), s.new_ts(), body.get("thread_ts"))
            s.ephemerals.append(eph)

    async def _inject(self, call: Call) -> bool:
        """Apply delay rules, then the first failure rule; True if one answered."""
        for rule in list(self._rules):
            if rule.delay and rule.take(call.method):
                await asyncio.sleep(rule.delay)
        for rule in self._rules:
            if (rule.status != 200 or rule.error) and rule.take(call.method):
                if rule.error:
                    call.response = {"ok": False, "error": rule.error, **rule.extra}
                    call.injected = "error"
                    return True
                call.status, call.injected = rule.status, "status"
                call.response = {"ok": False,
                                 "error": _STATUS_ERRORS.get(rule.status, "request_failed")}
                if rule.retry_after is not None:
                    call.response_headers["Retry-After"] = str(rule.retry_after)
                return True
        return False

    def _token_ok(self, token: str) -> bool:
        if self.tokens is not None:
            return token in self.tokens
        return token.startswith(("xoxb-", "xoxp-"))

    def _finish(self, call: Call) -> web.Response:
        self._calls.append(call)
        self._rules = [r for r in self._rules if r.times != 0]
        # Wake every wait_for(); each waiter re-checks its own condition.
        self._changed.set()
        self._changed = asyncio.Event()
        return web.json_response(call.response, status=call.status,
                                 headers=call.response_headers)

    async def _decode(self, request: web.Request, method: str) -> Call:
        arrived = time.monotonic()
        raw = await request.read()
        # slack-sdk sends `params=` methods as POST with the arguments in the query string.
        form = dict(request.query.items())
        body: JSON = {}
        files: dict[str, UploadedFile] = {}
        ctype = request.content_type
        encoding = "query" if form else "empty"
        if raw and ctype == "application/json":
            encoding = "json"
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else {"_invalid_json": True}
            except ValueError:
                body = {"_invalid_json": True}
        elif raw and ctype == "multipart/form-data":
            encoding = "multipart"
            files = _parse_multipart(request.headers["Content-Type"], raw, form)
        elif raw:
            encoding = "form"
            form.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        body = {**form, **body}
        for key in JSON_FIELDS & body.keys():
            if isinstance(body[key], str):
                # Invalid JSON is left as sent: Slack would reject it, the test will see why.
                with contextlib.suppress(ValueError):
                    body[key] = json.loads(body[key])
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else body.get("token")
        return Call(method=method, time=arrived, http_method=request.method,
                    headers=CIMultiDict(request.headers), encoding=encoding, form=form,
                    body=body, raw_body=raw, token=token, files=files)

    # ---- assertions ----------------------------------------------------------------
    def calls(self, method: str | None = None, *, ok: bool | None = None) -> list[Call]:
        """Recorded calls in completion order, filtered by method and by delivery."""
        return [c for c in self._calls
                if (method is None or c.method == method) and (ok is None or c.ok == ok)]

    # A timeout argument (not asyncio.timeout) so a test states its wait in one call.
    async def wait_for(
        self, method: str | None, predicate: Callable[[Call], bool] | None = None,
        count: int = 1, timeout: float = 5.0,
    ) -> list[Call]:
        """Wait until `count` calls match; returns all matching calls. Raises
        AssertionError listing everything received on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls(method) if predicate is None or predicate(c)]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = "\n  ".join(c.describe() for c in self._calls) or "(nothing)"
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} {method or 'any'} call(s)"
                    f"{' matching the predicate' if predicate else ''}; {len(found)} matched. "
                    f"Received:\n  {got}")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def clear(self) -> None:
        """Forget recorded calls (state and injected faults stay)."""
        self._calls.clear()

    def _channel_id(self, ref: str) -> str | None:
        chans = self.state.channels
        if ref in chans:
            return ref
        return next((c["id"] for c in chans.values() if c["name"] == ref.lstrip("#")), None)

    def messages(self, channel: str | None = None, *, thread_ts: str | None = None,
                 include_deleted: bool = False) -> list[Message]:
        """Current messages (edits applied), replies included, oldest first."""
        ids = [self._channel_id(channel)] if channel is not None else list(self.state.messages)
        out = [m for cid in ids if cid for m in self.state.messages.get(cid, [])
               if (include_deleted or not m.deleted)
               and (thread_ts is None or thread_ts in (m.ts, m.thread_ts))]
        return sorted(out, key=lambda m: ts_key(m.ts))

    def message(self, channel: str, ts: str) -> Message:
        return self.state.message(self._channel_id(channel) or channel, ts)

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[Ephemeral]:
        cid = self._channel_id(channel) if channel is not None else None
        return [e for e in self.state.ephemerals
                if (channel is None or e.channel == cid) and (user is None or e.user == user)]

    def posted_texts(self, channel: str | None = None) -> list[str]:
        """Text of each delivered chat.postMessage, as posted, in delivery order."""
        cid = self._channel_id(channel) if channel is not None else None
        return [str(c.body.get("text") or "") for c in self.calls("chat.postMessage", ok=True)
                if channel is None or c.channel == cid]

    def per_channel_send_times(self, method: str = "chat.postMessage") -> dict[str, list[float]]:
        """{channel id: sorted arrival times (monotonic) of delivered calls}."""
        out: dict[str, list[float]] = {}
        for c in self.calls(method, ok=True):
            out.setdefault(c.channel or "", []).append(c.time)
        return {k: sorted(v) for k, v in out.items()}

    def max_rate(self, channel: str, window: float = 1.0,
                 method: str = "chat.postMessage") -> int:
        """Most deliveries to `channel` within any `window` seconds."""
        times = self.per_channel_send_times(method).get(self._channel_id(channel) or channel, [])
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def _parse_multipart(
    content_type: str, raw: bytes, form: dict[str, str],
) -> dict[str, UploadedFile]:
    """Split multipart/form-data with the stdlib MIME parser: plain fields go to `form`."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    msg = BytesParser(policy=policy.HTTP).parsebytes(head + raw)
    files: dict[str, UploadedFile] = {}
    for part in msg.iter_parts():
        name = str(part.get_param("name", header="content-disposition") or "")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is None and part.get_content_type() in ("text/plain", ""):
            form[name] = data.decode(part.get_content_charset() or "utf-8", "replace")
        else:
            files[name] = UploadedFile(filename, part.get_content_type(), data)
    return files
