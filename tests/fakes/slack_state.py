"""In-memory workspace behind FakeSlack: users, channels, messages, views.

Kept apart from the HTTP layer so that every Web API method is a plain function
from decoded arguments to a Slack-shaped response dict. Errors are raised as
`SlackError` and become `{"ok": false, "error": ...}` with HTTP 200, as Slack does.
"""

from __future__ import annotations

import base64
import copy
import itertools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


#: Seeded in every workspace (user id → name; email name@example.com).
TEAM = {"UALICE": "alice", "UBOB": "bob", "UCAROL": "carol"}


class SlackError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def flag(value: Any) -> bool:
    """Slack booleans arrive as true/false (JSON) or "1"/"0"/"true" (forms)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _ids(value: Any) -> list[str]:
    """`users` arrives as "U1,U2" (slack-sdk joins lists) or as a JSON list."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def ts_key(ts: Any) -> tuple[int, int]:
    # Compare ts exactly: float("1700000000.000100") would lose the microseconds.
    sec, _, frac = str(ts).partition(".")
    return int(sec or 0), int((frac + "000000")[:6])


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    user: str
    bot_id: str | None = None
    blocks: list[Any] | None = None
    attachments: list[Any] | None = None
    metadata: JSON | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    deleted: bool = False
    edited_ts: str | None = None
    #: snapshots (as returned by `to_api`) of every earlier version, oldest first
    edits: list[JSON] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def to_api(self, team_id: str, *, include_metadata: bool = True) -> JSON:
        out: JSON = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        out["team"] = team_id
        if self.bot_id:
            out["bot_id"] = self.bot_id
        for key in ("blocks", "attachments", "thread_ts"):
            if getattr(self, key) is not None:
                out[key] = copy.deepcopy(getattr(self, key))
        if self.metadata is not None and include_metadata:
            out["metadata"] = copy.deepcopy(self.metadata)
        if self.edited_ts:
            out["edited"] = {"user": self.user, "ts": self.edited_ts}
        if self.reactions:
            out["reactions"] = [
                {"name": n, "users": list(u), "count": len(u)} for n, u in self.reactions.items()
            ]
        return out


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[Any] | None
    message_ts: str
    thread_ts: str | None = None


class SlackState:
    """The workspace. `strict=True` turns unknown channels/users into errors;
    otherwise channels are created on first use so tests need no seeding."""

    def __init__(
        self,
        *,
        team_id: str = "T0000FAKE",
        bot_user_id: str = "U0000BOT",
        bot_id: str = "B0000BOT",
        strict: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.team_id, self.bot_user_id, self.bot_id = team_id, bot_user_id, bot_id
        self.strict, self.clock = strict, clock
        self.users: dict[str, JSON] = {}
        self.channels: dict[str, JSON] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.messages: dict[str, list[Message]] = {}
        self.ephemerals: list[Ephemeral] = []
        self.views: dict[str, JSON] = {}
        self.home_views: dict[str, JSON] = {}
        self._ids = itertools.count(1)
        self._last_ts = (0, 0)
        self.add_user(bot_user_id, "chatops-bot", is_bot=True)
        self.triggers_used: set[str] = set()
        # The people of tests/data/config.yaml. No time zone, so the bot shows
        # times in the schedules' zones unless a test gives one.
        for uid, name in TEAM.items():
            self.add_user(uid, name, email=f"{name}@example.com", tz=None)

    # ---- seeding -----------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def new_ts(self) -> str:
        # Wall-clock based so bots computing `oldest=now-N` see them; forced unique and
        # increasing because a ts is a message's identity.
        cand = divmod(int(self.clock() * 1_000_000), 1_000_000)
        if cand <= self._last_ts:
            sec, us = self._last_ts
            cand = (sec + 1, 0) if us == 999_999 else (sec, us + 1)
        self._last_ts = cand
        return f"{cand[0]}.{cand[1]:06d}"

    def add_user(
        self,
        id: str | None = None,
        name: str = "user",
        *,
        real_name: str | None = None,
        email: str | None = None,
        tz: str | None = "UTC",
        is_bot: bool = False,
        **profile: Any,
    ) -> JSON:
        uid = id or self.new_id("U")
        prof = {"real_name": real_name or name, "display_name": name, **profile}
        if email:
            prof["email"] = email
            # Emails are unique in a workspace: the newest holder keeps it.
            for other in self.users.values():
                if str(other["profile"].get("email", "")).lower() == email.lower():
                    del other["profile"]["email"]
        user = {"id": uid, "team_id": self.team_id, "name": name, "real_name": real_name or name,
                "is_bot": is_bot, "deleted": False, "profile": prof}
        if tz:
            user["tz"] = tz
        self.users[uid] = user
        return user

    def add_channel(
        self, name: str, id: str | None = None, *, is_private: bool = False,
        members: Iterable[str] = (), is_im: bool = False, user: str | None = None,
    ) -> JSON:
        cid = id or self.new_id("D" if is_im else ("G" if is_private else "C"))
        chan: JSON = {
            "id": cid, "name": name, "is_channel": not (is_im or is_private),
            "is_group": is_private and not is_im, "is_im": is_im, "is_private": is_private,
            "is_archived": False, "created": int(self.clock()), "creator": self.bot_user_id,
            "members": list(members), "topic": {"value": ""}, "purpose": {"value": ""},
        }
        if is_im:
            chan["user"] = user
        self.channels[cid] = chan
        self.messages.setdefault(cid, [])
        return chan

    def add_usergroup(self, id: str, users: Iterable[str]) -> None:
        self.usergroups[id] = list(users)

    def add_message(self, channel: str, text: str, *, user: str, thread_ts: str | None = None,
                    ts: str | None = None, **extra: Any) -> Message:
        """Seed a message as if a human had posted it."""
        msg = Message(channel=self.channel(channel)["id"], ts=ts or self.new_ts(), text=text,
                      user=user, thread_ts=thread_ts, **extra)
        self.messages[msg.channel].append(msg)
        self.messages[msg.channel].sort(key=lambda m: ts_key(m.ts))
        return msg

    # ---- lookups -----------------------------------------------------------------
    def channel(self, ref: Any) -> JSON:
        """Resolve an id, a "#name"/"name", or a user id (= the DM with that user)."""
        ref = str(ref or "")
        if not ref:
            raise SlackError("channel_not_found")
        if ref in self.channels:
            return self.channels[ref]
        if ref[:1] in "UW" and (ref in self.users or not self.strict):
            return self.dm(ref)
        name = ref.lstrip("#")
        for chan in self.channels.values():
            if chan["name"] == name:
                return chan
        if self.strict:
            raise SlackError("channel_not_found")
        # An id-looking reference keeps its id so tests can use "C123" unseeded.
        looks_like_id = re.fullmatch(r"[CGD][A-Z0-9]+", ref) is not None
        return self.add_channel(name.lower(), ref if looks_like_id else None,
                                members=[self.bot_user_id])

    def dm(self, user: str) -> JSON:
        for chan in self.channels.values():
            if chan["is_im"] and chan.get("user") == user:
                return chan
        return self.add_channel(user, is_im=True, user=user, members=[user, self.bot_user_id])

    def message(self, channel: str, ts: Any) -> Message:
        for msg in self.messages.get(self.channel(channel)["id"], []):
            if msg.ts == str(ts) and not msg.deleted:
                return msg
        raise SlackError("message_not_found")

    def user(self, uid: Any) -> JSON:
        if str(uid) not in self.users:
            raise SlackError("user_not_found")
        return self.users[str(uid)]

    def replies_of(self, parent: Message) -> list[Message]:
        return [m for m in self.messages[parent.channel]
                if m.is_reply and m.thread_ts == parent.ts and not m.deleted]

    def render(self, msg: Message, include_metadata: bool = True) -> JSON:
        out = msg.to_api(self.team_id, include_metadata=include_metadata)
        replies = [] if msg.is_reply else self.replies_of(msg)
        if replies:
            out.update(thread_ts=msg.ts, reply_count=len(replies), latest_reply=replies[-1].ts,
                       reply_users=sorted({r.user for r in replies}))
        return out

    # ---- Web API methods -----------------------------------------------------------
    def dispatch(self, method: str, args: JSON) -> JSON:
        handler = METHODS.get(method)
        if handler is None:
            raise SlackError("unknown_method")
        return {"ok": True, **handler(self, args)}

    def post(self, args: JSON, *, user: str | None = None) -> Message:
        chan = self.channel(args.get("channel"))
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            raise SlackError("no_text")
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        msg = Message(channel=chan["id"], ts=self.new_ts(), text=str(args.get("text") or ""),
                      user=user or self.bot_user_id, bot_id=None if user else self.bot_id,
                      blocks=args.get("blocks"), attachments=args.get("attachments"),
                      metadata=args.get("metadata"), thread_ts=thread_ts,
                      reply_broadcast=flag(args.get("reply_broadcast")))
        self.messages[chan["id"]].append(msg)
        return msg

    def update(self, msg: Message, args: JSON) -> None:
        if msg.user != self.bot_user_id:
            raise SlackError("cant_update_message")
        msg.edits.append(msg.to_api(self.team_id))
        if args.get("text") is not None:
            msg.text = str(args["text"])
        # Slack keeps earlier blocks/attachments unless the update sends the field
        # ([] clears them).
        for key in ("blocks", "attachments", "metadata"):
            if args.get(key) is not None:
                setattr(msg, key, args[key])
        msg.edited_ts = self.new_ts()

    def delete(self, msg: Message) -> None:
        msg.deleted = True


def _window(msgs: list[Message], args: JSON) -> list[Message]:
    """Apply oldest/latest/inclusive; `msgs` is ordered as it will be returned."""
    inclusive = flag(args.get("inclusive"))
    out = []
    for m in msgs:
        k = ts_key(m.ts)
        if args.get("oldest") and (k < ts_key(args["oldest"]) or
                                   (k == ts_key(args["oldest"]) and not inclusive)):
            continue
        if args.get("latest") and (k > ts_key(args["latest"]) or
                                   (k == ts_key(args["latest"]) and not inclusive)):
            continue
        out.append(m)
    return out


def _page(state: SlackState, msgs: list[Message], args: JSON) -> JSON:
    """One page of `msgs`; the cursor is an opaque offset into the filtered list."""
    limit = int(args.get("limit") or 100)
    cursor = str(args.get("cursor") or "")
    start = int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
    page, more = msgs[start:start + limit], len(msgs) > start + limit
    nxt = base64.b64encode(f"next_offset:{start + limit}".encode()).decode() if more else ""
    meta = flag(args.get("include_all_metadata"))
    return {"messages": [state.render(m, meta) for m in page], "has_more": more,
            "pin_count": 0, "response_metadata": {"next_cursor": nxt}}


def _history(s: SlackState, a: JSON) -> JSON:
    chan = s.channel(a.get("channel"))
    # Newest first; thread replies only show up when broadcast to the channel.
    msgs = [m for m in reversed(s.messages[chan["id"]])
            if not m.deleted and (not m.is_reply or m.reply_broadcast)]
    return _page(s, _window(msgs, a), a)


def _replies(s: SlackState, a: JSON) -> JSON:
    try:
        parent = s.message(str(a.get("channel")), a.get("ts"))
    except SlackError:
        raise SlackError("thread_not_found") from None
    if parent.is_reply:
        parent = s.message(parent.channel, parent.thread_ts)
    thread = [parent, *s.replies_of(parent)]
    return _page(s, _window(thread, a), a)


def _post_message(s: SlackState, a: JSON) -> JSON:
    msg = s.post(a)
    return {"channel": msg.channel, "ts": msg.ts, "message": s.render(msg)}


def _update(s: SlackState, a: JSON) -> JSON:
    msg = s.message(str(a.get("channel")), a.get("ts"))
    s.update(msg, a)
    return {"channel": msg.channel, "ts": msg.ts, "text": msg.text, "message": s.render(msg)}


def _ephemeral(s: SlackState, a: JSON) -> JSON:
    chan = s.channel(a.get("channel"))
    if not a.get("user"):
        raise SlackError("user_not_in_channel")
    eph = Ephemeral(chan["id"], str(a["user"]), str(a.get("text") or ""), a.get("blocks"),
                    s.new_ts(), str(a["thread_ts"]) if a.get("thread_ts") else None)
    s.ephemerals.append(eph)
    return {"message_ts": eph.message_ts}


def _delete(s: SlackState, a: JSON) -> JSON:
    msg = s.message(str(a.get("channel")), a.get("ts"))
    s.delete(msg)
    return {"channel": msg.channel, "ts": msg.ts}


def _permalink(s: SlackState, a: JSON) -> JSON:
    msg = s.message(str(a.get("channel")), a.get("message_ts"))
    link = f"https://fake.slack.com/archives/{msg.channel}/p{msg.ts.replace('.', '')}"
    if msg.is_reply:
        link += f"?thread_ts={msg.thread_ts}&cid={msg.channel}"
    return {"channel": msg.channel, "permalink": link}


def _channel_info(s: SlackState, chan: JSON) -> JSON:
    info = {k: v for k, v in chan.items() if k != "members"}
    info["is_member"] = s.bot_user_id in chan["members"]
    info["num_members"] = len(chan["members"])
    return info


def _create(s: SlackState, a: JSON) -> JSON:
    name = str(a.get("name") or "")
    if not re.fullmatch(r"[a-z0-9_-]{1,80}", name):
        raise SlackError("invalid_name_specials" if name else "invalid_name_required")
    if any(c["name"] == name for c in s.channels.values()):
        raise SlackError("name_taken")
    chan = s.add_channel(name, is_private=flag(a.get("is_private")), members=[s.bot_user_id])
    return {"channel": _channel_info(s, chan)}


def _invite(s: SlackState, a: JSON) -> JSON:
    chan = s.channel(a.get("channel"))
    users = _ids(a.get("users"))
    if not users:
        raise SlackError("no_user")
    for uid in users:
        if s.strict:
            s.user(uid)
        if uid in chan["members"]:
            raise SlackError("already_in_channel")
    chan["members"].extend(users)
    return {"channel": _channel_info(s, chan)}


def _join(s: SlackState, a: JSON) -> JSON:
    chan = s.channel(a.get("channel"))
    if s.bot_user_id in chan["members"]:
        return {"channel": _channel_info(s, chan), "warning": "already_in_channel"}
    chan["members"].append(s.bot_user_id)
    return {"channel": _channel_info(s, chan)}


def _open(s: SlackState, a: JSON) -> JSON:
    if a.get("channel"):
        return {"channel": _channel_info(s, s.channel(a["channel"]))}
    users = _ids(a.get("users"))
    if not users:
        raise SlackError("users_list_not_supplied")
    if s.strict:
        for uid in users:
            s.user(uid)
    if len(users) == 1:
        chan = s.dm(users[0])
    else:
        members = sorted({*users, s.bot_user_id})
        found = [c for c in s.channels.values() if c["name"] == "mpdm-" + "--".join(members)]
        chan = found[0] if found else s.add_channel("mpdm-" + "--".join(members),
                                                    is_private=True, members=members)
    full = flag(a.get("return_im"))
    return {"channel": _channel_info(s, chan) if full else {"id": chan["id"]}}


def _lookup_email(s: SlackState, a: JSON) -> JSON:
    email = str(a.get("email") or "").lower()
    for user in s.users.values():
        if str(user["profile"].get("email", "")).lower() == email:
            return {"user": user}
    raise SlackError("users_not_found")


def _group_users(s: SlackState, a: JSON) -> JSON:
    group = str(a.get("usergroup") or "")
    if group not in s.usergroups:
        raise SlackError("no_such_subteam")
    return {"users": list(s.usergroups[group])}


def _too_long(where: str, text: Any, limit: int) -> str | None:
    return f"{where} must be at most {limit} characters" if len(str(text)) > limit else None


def _view_problems(spec: JSON) -> list[str]:
    """Some of the limits Slack checks on a view (Block Kit reference)."""
    found = [_too_long(f"{k}.text", (spec.get(k) or {}).get("text", ""), 24)
             for k in ("title", "submit", "close")]
    found.append(_too_long("private_metadata", spec.get("private_metadata", ""), 3000))
    found.append(_too_long("callback_id", spec.get("callback_id", ""), 255))
    blocks = spec.get("blocks") or []
    if len(blocks) > 100:
        found.append("blocks must have at most 100 items")
    for i, block in enumerate(blocks):
        if block.get("type") != "input":
            continue
        found.append(_too_long(f"blocks[{i}].label.text",
                               (block.get("label") or {}).get("text", ""), 2000))
        element = block.get("element") or {}
        if element.get("type") == "plain_text_input":
            limit = int(element.get("max_length") or 3000)
            if limit > 3000:
                found.append(f"blocks[{i}].element.max_length must be at most 3000")
            found.append(_too_long(f"blocks[{i}].element.initial_value",
                                   element.get("initial_value", ""), limit))
    return [f"[ERROR] {p}" for p in found if p]


def _view(s: SlackState, a: JSON, view_type: str | None = None) -> JSON:
    spec = a.get("view")
    if not isinstance(spec, dict):
        raise SlackError("invalid_arguments")
    problems = _view_problems(spec)
    if problems:
        raise SlackError("invalid_arguments", response_metadata={"messages": problems})
    vid = s.new_id("V")
    view = {**spec, "id": vid, "team_id": s.team_id, "type": view_type or spec.get("type"),
            "hash": f"{vid}.{s.new_ts()}", "root_view_id": vid, "previous_view_id": None,
            "state": {"values": {}}, "bot_id": s.bot_id, "app_id": "A0000FAKE"}
    view.setdefault("private_metadata", "")
    view.setdefault("callback_id", "")
    view.setdefault("external_id", "")
    return view


def _views_open(s: SlackState, a: JSON) -> JSON:
    trigger = str(a.get("trigger_id") or a.get("interactivity_pointer") or "")
    if not trigger:
        raise SlackError("invalid_trigger_id")
    if trigger in s.triggers_used:  # a trigger opens one view
        raise SlackError("exchanged_trigger_id")
    view = _view(s, a)
    s.triggers_used.add(trigger)
    s.views[view["id"]] = view
    return {"view": view}


def _views_update(s: SlackState, a: JSON) -> JSON:
    old = s.views.get(str(a.get("view_id") or ""))
    if old is None and a.get("external_id"):
        old = next((v for v in s.views.values() if v["external_id"] == a["external_id"]), None)
    if old is None:
        raise SlackError("not_found")
    if a.get("hash") and a["hash"] != old["hash"]:
        raise SlackError("hash_conflict")
    view = {**_view(s, a, old["type"]), "id": old["id"], "root_view_id": old["root_view_id"]}
    s.views[old["id"]] = view
    return {"view": view}


def _views_publish(s: SlackState, a: JSON) -> JSON:
    uid = str(a.get("user_id") or "")
    old = s.home_views.get(uid)
    if old and a.get("hash") and a["hash"] != old["hash"]:
        raise SlackError("hash_conflict")
    view = _view(s, a, "home")
    s.home_views[uid] = view
    return {"view": view}


def _reaction(s: SlackState, a: JSON, add: bool) -> JSON:
    msg = s.message(str(a.get("channel")), a.get("timestamp"))
    users = msg.reactions.setdefault(str(a.get("name")), [])
    if add == (s.bot_user_id in users):
        raise SlackError("already_reacted" if add else "no_reaction")
    (users.append if add else users.remove)(s.bot_user_id)
    if not users:
        del msg.reactions[str(a.get("name"))]
    return {}


METHODS: dict[str, Callable[[SlackState, JSON], JSON]] = {
    "api.test": lambda s, a: {"args": a},
    "auth.test": lambda s, a: {"url": "https://fake.slack.com/", "team": "Fake Team",
                               "user": "chatops-bot", "team_id": s.team_id,
                               "user_id": s.bot_user_id, "bot_id": s.bot_id,
                               "is_enterprise_install": False},
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _ephemeral,
    "chat.delete": _delete,
    "chat.getPermalink": _permalink,
    "conversations.history": _history,
    "conversations.replies": _replies,
    "conversations.create": _create,
    "conversations.invite": _invite,
    "conversations.join": _join,
    "conversations.open": _open,
    "conversations.info": lambda s, a: {"channel": _channel_info(s, s.channel(a.get("channel")))},
    "conversations.members": lambda s, a: {"members": list(s.channel(a.get("channel"))["members"]),
                                           "response_metadata": {"next_cursor": ""}},
    "conversations.list": lambda s, a: {"channels": [_channel_info(s, c) for c in
                                                     s.channels.values() if not c["is_im"]],
                                        "response_metadata": {"next_cursor": ""}},
    "users.info": lambda s, a: {"user": s.user(a.get("user"))},
    "users.list": lambda s, a: {"members": list(s.users.values()),
                                "response_metadata": {"next_cursor": ""}},
    "users.lookupByEmail": _lookup_email,
    "usergroups.users.list": _group_users,
    "views.open": _views_open,
    "views.push": _views_open,
    "views.update": _views_update,
    "views.publish": _views_publish,
    "reactions.add": lambda s, a: _reaction(s, a, True),
    "reactions.remove": lambda s, a: _reaction(s, a, False),
}
