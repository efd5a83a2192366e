"""Small statistics the benchmarks share."""

from __future__ import annotations


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (nearest rank; ``values`` not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
