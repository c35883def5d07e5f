"""How fast to send: a rate limiter that never exceeds its rate in any one-second window,
and the jittered exponential backoff used between retries."""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from collections.abc import Callable

# Slots are planned as if a second lasted this long: a request leaves a little after its slot
# (a late wake-up, the GIL, the network) and late ones bunch up, so the provider would otherwise
# count more than ``rate`` in some second. Measured at the receiving end, a plain 1 s plan let
# 316 through in one second at rate 280; 10% of headroom absorbs ~100 ms of such jitter.
WINDOW = 1.1


class RateLimiter:
    """At most ``rate`` sends in any one-second window, as the provider counts them; thread-safe.

    Each caller reserves the next free slot under a lock and sleeps outside it, so any number of
    threads can wait at once. Two rules together: slots are at least ``WINDOW/rate`` apart (no
    bursts), and a slot is never less than ``WINDOW`` after the slot ``rate`` places earlier (so
    rounding can never squeeze ``rate + 1`` slots into a window). The sustained rate is thus
    ``rate / WINDOW``. ``rate=None`` means unlimited.
    """

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self._recent: collections.deque[float] = collections.deque()  # planned slots
        self._departed: collections.deque[float] = collections.deque()  # actual departures
        self._last = -math.inf
        self._slowed_at = -math.inf
        self.rate = self.target = rate

    @property
    def rate(self) -> float | None:
        return self._rate

    @rate.setter
    def rate(self, rate: float | None) -> None:
        with self._lock:
            self._rate = rate
            self._window = max(1, math.floor(rate)) if rate else 0

    def acquire(self) -> None:
        """Wait for this caller's slot, then for a free place among the real departures."""
        if not self._rate:
            return
        delay = self._reserve() - self.clock()
        if delay > 0:
            self.sleep(delay)
        while (delay := self._depart()) > 0:  # woke late and others bunched up: wait our turn
            self.sleep(delay)

    def _depart(self) -> float:
        """Record a departure now if fewer than ``rate`` left in the last ``WINDOW`` seconds,
        else how long to wait. Slots already keep this so; it matters only when threads wake
        late and bunch up: the same headroom as the slots then absorbs the jitter between
        leaving here and arriving at the provider (at 1.0 s, 377 arrived in one second at rate
        360 with 128 threads on a busy process)."""
        with self._lock:
            now = self.clock()
            # ``first + WINDOW <= now``, not ``first <= now - WINDOW``: after sleeping exactly
            # the wait returned below, ``now - WINDOW`` can round down onto ``first`` and let a
            # departure through one rounding error early (Hypothesis found it).
            while self._departed and self._departed[0] + WINDOW <= now:
                self._departed.popleft()
            if len(self._departed) >= self._window:
                return self._departed[0] + WINDOW - now
            self._departed.append(now)
            return 0.0

    def _reserve(self) -> float:
        with self._lock:
            assert self._rate
            now = self.clock()
            self._recover(now)
            slot = max(now, self._last + WINDOW / self._rate)
            while len(self._recent) >= self._window:
                slot = max(slot, self._recent.popleft() + WINDOW)
            self._recent.append(slot)
            self._last = slot
            return slot

    def slow_down(self, factor: float = 0.8, floor: float = 1.0) -> None:
        """The provider throttled us: lower the rate (never below ``floor``).

        Many threads see the same burst of throttling; one cut per second is enough."""
        now = self.clock()
        if self._rate and now - self._slowed_at >= 1.0:
            self._slowed_at = now
            self.rate = max(floor, self._rate * factor)

    def _recover(self, now: float) -> None:
        """Creep back towards the target rate, 10% a second, after 5 calm seconds."""
        if self.target and self._rate and self._rate < self.target and \
                now - self._slowed_at >= 5.0:
            self._rate = min(self.target, self._rate * 1.1)
            self._window = max(1, math.floor(self._rate))
            self._slowed_at = now - 4.0  # next step in a second


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0,
            rand: Callable[[], float] = random.random) -> float:
    """'Full jitter' exponential backoff: a random wait up to ``base * 2**attempt`` seconds.

    See https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
    """
    return rand() * min(cap, base * 2 ** attempt)
