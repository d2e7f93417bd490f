"""Values a PromQL expression evaluates to."""

from __future__ import annotations

from dataclasses import dataclass

Labels = dict[str, str]
Signature = tuple[tuple[str, str], ...]


@dataclass
class Sample:
    labels: Labels
    value: float


@dataclass
class RangeSeries:
    labels: Labels
    points: list[tuple[float, float]]


Vector = list[Sample]
Matrix = list[RangeSeries]
Value = float | Vector | Matrix | str


def without_name(labels: Labels) -> Labels:
    return {k: v for k, v in labels.items() if k != "__name__"}


def signature(labels: Labels, names: list[str], on: bool) -> Signature:
    """The labels that decide which samples belong together."""
    if on:
        return tuple(sorted((k, v) for k, v in labels.items() if k in names))
    return tuple(sorted((k, v) for k, v in labels.items()
                        if k not in names and k != "__name__"))


def format_labels(labels: Labels) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"
