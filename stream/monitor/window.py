"""A sliding window of counts as time buckets ``[start, counts]`` (pure Python).

The drift counts and the outcome counts both live in a progress file this way:
each batch adds to the bucket of its time, buckets older than the window are
dropped, and a reader sums the buckets that overlap the window ending now.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Empty = Callable[[], dict[str, Any]]
Add = Callable[[dict[str, Any], Mapping[str, Any]], None]


def add_to_window(
    buckets: list[list[Any]], counts: Mapping[str, Any], now: float, bucket_s: float, window_s: float,
    empty: Empty, add: Add,
) -> list[list[Any]]:
    """Add a batch's counts to its time bucket; drop buckets older than the window."""
    start = math.floor(now / bucket_s) * bucket_s
    kept = [b for b in buckets if b[0] > now - window_s - bucket_s]
    if not kept or kept[-1][0] != start:
        kept.append([start, empty()])
    add(kept[-1][1], counts)
    return kept


def window_total(
    buckets: Sequence[Sequence[Any]], now: float, window_s: float, bucket_s: float, empty: Empty, add: Add
) -> dict[str, Any]:
    """The sum of the buckets that overlap the window ending now."""
    total = empty()
    for start, counts in buckets:
        if start > now - window_s - bucket_s:
            add(total, counts)
    return total
