"""Token-bucket rate limits keyed by client address or account (in-process)."""

from __future__ import annotations

import threading
import time

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets per key (an IP address, an account): ``rate`` per minute, bursts of ``burst``.

    In-process: each API process limits on its own. Idle keys (full buckets) are forgotten
    once more than ``max_keys`` are tracked, so memory does not grow with history.
    """

    def __init__(self, rate_per_minute: float, burst: int, *, max_keys: int = 10_000) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token for ``key``: 0.0 if allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_keys:
                self._buckets = {
                    k: (t, at)
                    for k, (t, at) in self._buckets.items()
                    if min(self.burst, t + (now - at) * self.rate) < self.burst
                }
            return 0.0
