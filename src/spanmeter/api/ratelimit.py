"""Fixed-window rate limiting per client, with the X-RateLimit-* headers.

Kept in memory per process: behind a load balancer each instance limits on its own, so the
effective limit is at most N times the configured one (documented in docs/api.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

_PRUNE_EVERY: Final = 1024  # calls between sweeps of expired windows


@dataclass(slots=True, frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the window resets

    def headers(self) -> dict[str, str]:
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.reset_seconds)
        return out


class RateLimiter:
    def __init__(
        self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # client → (window start, calls)
        self._lock = threading.Lock()
        self._calls = 0

    def check(self, client: str) -> Decision:
        now = self._clock()
        with self._lock:
            self._calls += 1
            if self._calls % _PRUNE_EVERY == 0:
                self._windows = {c: w for c, w in self._windows.items() if now - w[0] < self.window}
            start, count = self._windows.get(client, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            allowed = count < self.limit
            if allowed:
                count += 1
            self._windows[client] = (start, count)
        # window - elapsed, not start + window - now: the sum rounds, and 60 s came out as 61.
        reset = max(1, math.ceil(self.window - (now - start)))
        return Decision(allowed, self.limit, self.limit - count, reset)
