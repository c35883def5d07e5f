"""In-memory rate limits for the sign-up form: per client address and per email address.

A token bucket per key: ``burst`` attempts at once, then ``per_hour`` spread over the hour.
Memory is bounded: at most ``max_keys`` buckets live, the least recently used one is dropped
when a new key arrives (a key that is dropped starts full again, so an attacker who cycles
through more than ``max_keys`` client addresses gets a few extra attempts each, nothing more).
The limits are per process: run one ``newsletter serve`` process (it is multi-threaded), or
add a limit at the reverse proxy when running several.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 50_000  # ≈ 100 bytes each: about 5 MB per limiter at most


@dataclass(frozen=True)
class Limit:
    burst: int  # attempts allowed at once
    per_hour: float  # sustained attempts per hour once the burst is used


# A whole office behind one NAT address may sign up after a training session: be generous.
PER_CLIENT = Limit(burst=20, per_hour=60)
# Confirmation emails to one address: a few retries, never a mail bomb.
PER_ADDRESS = Limit(burst=3, per_hour=6)


class RateLimiter:
    """Token buckets keyed by a string; thread-safe; bounded in memory."""

    def __init__(self, limit: Limit, *, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.max_keys, self.clock = limit, max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one attempt from ``key``'s bucket; False (and nothing taken) if it is empty."""
        now = self.clock()
        with self._lock:
            tokens = self._refill(key, now)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again (0 if it may now)."""
        with self._lock:
            tokens = self._refill(key, self.clock())
        return 0 if tokens >= 1 else int((1 - tokens) * 3600 / self.limit.per_hour) + 1

    def __len__(self) -> int:
        return len(self._buckets)

    def _refill(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (float(self.limit.burst), now))
        return min(float(self.limit.burst), tokens + (now - then) * self.limit.per_hour / 3600)
