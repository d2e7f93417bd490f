"""Outgoing pages to an SMS/voice gateway (a generic JSON webhook) or to
PagerDuty's Events API v2. The caller (a scheduler job) retries on
PagerError(retry=True); other failures are final and reported."""

from __future__ import annotations

from typing import Any, Literal

import aiohttp

_PD_SEVERITY = {"SEV1": "critical", "SEV2": "error", "SEV3": "warning", "SEV4": "info"}


class PagerError(Exception):
    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def body_for(fmt: Literal["generic", "pagerduty"], *, incident: str, severity: str,
             summary: str, ack_url: str | None, token: str | None) -> dict[str, Any]:
    if fmt == "pagerduty":
        return {"routing_key": token or "", "event_action": "trigger", "dedup_key": incident,
                "payload": {"summary": summary[:1024], "source": "chatops-bot",
                            "severity": _PD_SEVERITY.get(severity, "error")},
                "links": [{"href": ack_url, "text": "Acknowledge"}] if ack_url else []}
    return {"incident": incident, "severity": severity, "summary": summary, "ack_url": ack_url}


async def send(url: str, body: dict[str, Any], *, token: str | None,
               fmt: Literal["generic", "pagerduty"], timeout: float = 10.0) -> None:
    headers = {"Content-Type": "application/json"}
    if token and fmt == "generic":
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, \
                http.post(url, json=body, headers=headers) as resp:
            if resp.status < 300:
                return
            text = (await resp.text())[:300]
            retry = resp.status == 429 or resp.status >= 500
            raise PagerError(f"HTTP {resp.status}: {text}", retry=retry)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PagerError(f"{type(exc).__name__}: {exc}", retry=True) from None
