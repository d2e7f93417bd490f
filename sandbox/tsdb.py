"""A tiny in-memory time-series store with Prometheus' staleness rules."""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

Labels = dict[str, str]
LabelKey = tuple[tuple[str, str], ...]


def label_key(labels: Labels) -> LabelKey:
    return tuple(sorted(labels.items()))


def _floats() -> array[float]:
    return array("d")


@dataclass
class Series:
    labels: Labels
    # Packed doubles: an hour of one-second samples for hundreds of series stays small.
    times: array[float] = field(default_factory=_floats)
    # NaN is a staleness marker: the series vanished (its pod went away) at that time.
    values: array[float] = field(default_factory=_floats)

    def latest(self, at: float, lookback: float) -> tuple[float, float] | None:
        """The newest sample in (at - lookback, at], unless it is a stale marker."""
        i = bisect.bisect_right(self.times, at) - 1
        if i < 0 or self.times[i] <= at - lookback or math.isnan(self.values[i]):
            return None
        return self.times[i], self.values[i]

    def window(self, start: float, end: float) -> list[tuple[float, float]]:
        """Samples in (start, end], stale markers dropped."""
        lo = bisect.bisect_right(self.times, start)
        hi = bisect.bisect_right(self.times, end)
        return [(t, v) for t, v in zip(self.times[lo:hi], self.values[lo:hi], strict=True)
                if not math.isnan(v)]


class TSDB:
    def __init__(self) -> None:
        self._series: dict[LabelKey, Series] = {}
        self._by_name: dict[str, list[Series]] = {}

    def append(self, labels: Labels, t: float, value: float) -> None:
        key = label_key(labels)
        series = self._series.get(key)
        if series is None:
            series = Series(dict(labels))
            self._series[key] = series
            self._by_name.setdefault(labels["__name__"], []).append(series)
        if series.times and t <= series.times[-1]:
            return  # Out-of-order samples are dropped, as Prometheus does.
        series.times.append(t)
        series.values.append(value)

    def mark_stale(self, labels: Labels, t: float) -> None:
        self.append(labels, t, math.nan)

    def candidates(self, name: str | None) -> Iterable[Series]:
        if name is not None:
            return list(self._by_name.get(name, []))
        return list(self._series.values())

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def trim(self, before: float) -> None:
        for key, series in list(self._series.items()):
            cut = bisect.bisect_left(series.times, before)
            if cut:
                del series.times[:cut]
                del series.values[:cut]
            if not series.times:
                del self._series[key]
                siblings = self._by_name[series.labels["__name__"]]
                siblings.remove(series)
                if not siblings:
                    del self._by_name[series.labels["__name__"]]
