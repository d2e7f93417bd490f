"""Rolling-update budgets: how far a rollout may surge and how much may be down."""

from __future__ import annotations

import math
from typing import Any

Obj = dict[str, Any]


def resolve_percent(value: int | str | None, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)


def surge_and_unavailable(d: Obj) -> tuple[int, int]:
    spec = d["spec"]
    replicas = int(spec.get("replicas", 1))
    if spec["strategy"].get("type") != "RollingUpdate":
        return 0, 0
    rolling = spec["strategy"].get("rollingUpdate") or {}
    surge = resolve_percent(rolling.get("maxSurge", "25%"), replicas, True)
    unavailable = resolve_percent(rolling.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # Both zero would deadlock; upstream forces one.
    return surge, min(unavailable, replicas)
