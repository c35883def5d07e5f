"""The sign-up form's rate limits: per client address and per email address, in the database.

A token bucket per key: ``burst`` attempts at once, then ``per_hour`` spread over the hour. The
buckets live in the database (newsletter.store.limits), so a limit holds across every
``newsletter serve`` process sharing it, on one machine or several, and restarts do not reset
it. Each process also remembers, in memory, the keys the database refused and until when:
buckets only refill with time and other processes can only empty them further, so until then
the answer is the same, and a client hammering the form costs one database write per refusal
period, not one per request. That memory is bounded (``max_keys``, least recently refused
dropped first); a key dropped from it simply asks the database again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.store.limits import Buckets

MAX_KEYS = 10_000  # remembered refusals per limiter: ≈ 100 bytes each, about 1 MB at most


@dataclass(frozen=True)
class Limit:
    burst: int  # attempts allowed at once
    per_hour: float  # sustained attempts per hour once the burst is used


# A whole office behind one NAT address may sign up after a training session: be generous.
PER_CLIENT = Limit(burst=20, per_hour=60)
# Confirmation emails to one address: a few retries, never a mail bomb.
PER_ADDRESS = Limit(burst=3, per_hour=6)


class RateLimiter:
    """One limit (``scope`` names its buckets) over the shared buckets; thread-safe."""

    def __init__(self, buckets: Buckets, scope: str, limit: Limit, *, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic):
        self.buckets, self.scope, self.limit = buckets, scope, limit
        self.max_keys, self.clock = max_keys, clock
        self._refused: OrderedDict[str, float] = OrderedDict()  # key → refused until (clock)
        self._lock = threading.Lock()

    def take(self, key: str) -> int:
        """One attempt for ``key``: 0 if allowed (taken from its bucket), else the seconds until
        it may try again (nothing taken)."""
        now = self.clock()
        with self._lock:
            until = self._refused.get(key)
        if until is not None and until > now:
            return int(until - now) + 1
        wait = self.buckets.take(self.scope, key, burst=self.limit.burst,
                                 per_hour=self.limit.per_hour)
        with self._lock:
            if not wait:
                self._refused.pop(key, None)
                return 0
            self._refused[key] = now + wait
            self._refused.move_to_end(key)
            while len(self._refused) > self.max_keys:
                self._refused.popitem(last=False)
        return int(wait) + 1

    def __len__(self) -> int:
        return len(self._refused)
