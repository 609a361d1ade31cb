"""Per-client rate limiting: a token bucket per client, refilled at a steady rate."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """``rate`` requests per second per client, with bursts up to ``burst``.

    ``allow(client)`` returns 0 when the request may go ahead, else the seconds
    until it may (the ``Retry-After``). Idle clients are forgotten, so memory
    stays bounded by the clients active in the last ``burst / rate`` seconds.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._swept = clock()

    def allow(self, client: str) -> float:
        """0.0 to go ahead; else the seconds to wait before the next request is allowed."""
        now = self.clock()
        tokens, at = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self.buckets[client] = (tokens - 1.0, now)
            self._sweep(now)
            return 0.0
        self.buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        if now - self._swept < max(full_after, 1.0):
            return
        self._swept = now
        self.buckets = {c: (t, at) for c, (t, at) in self.buckets.items() if now - at < full_after}


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
