"""Time formatting shared by the Kubernetes and Prometheus halves.

Kubernetes timestamps are RFC 3339 with second precision; Prometheus accepts
RFC 3339 or Unix seconds and durations such as ``1h30m``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {
    "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
    "y": 31536000.0,
}


def now() -> float:
    """Wall-clock seconds: objects and samples carry real timestamps so clients agree."""
    return time.time()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_duration(text: str) -> float:
    """A Prometheus duration (``5m``, ``1h30m``, ``250ms``) in seconds."""
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f'not a valid duration string: "{text}"')
    return total


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration, for error messages and labels."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("y", 31536000000), ("w", 604800000), ("d", 86400000), ("h", 3600000),
                       ("m", 60000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts)


def human_age(seconds: float) -> str:
    """kubectl's AGE column: two significant units, like ``5m10s`` or ``3h``."""
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"
