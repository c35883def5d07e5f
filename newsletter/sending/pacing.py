"""How fast to send: a rate limiter that paces every sender to slots of one shared schedule,
and the jittered exponential backoff used between retries."""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from collections.abc import Callable

from newsletter.store.rates import Grant

# Slots are planned at 97.5% of the rate (in whole messages per second): a second then holds
# no more than ``rate`` sends, whatever the number of senders, as long as each send reaches the
# provider within 25 ms of its slot (1/0.975 - 1). A thread that wakes more than LATE after its
# slot gives it up and takes the next one, leaving the rest of that margin to the way there
# (boto3, other threads, the network). At rate 400 with three processes on a loaded 2-core
# machine, 98% let 402 through in one second at the receiver.
HEADROOM = 0.975
LATE = 0.01
MAX_GIVEN_UP = 2
GRANT_SECONDS = 0.05  # each grant covers this much of the rate: ~20 grants a second in all
MAX_GRANT = 1024  # slots: 50 ms' worth up to 20,480/s
# Beyond what any sender reaches, metering costs a grant every few messages (most slots pass
# unused) and holds nothing back: such a rate (an SES quota of 1,000,000/s) is not metered.
UNMETERED = 20_000.0

Draw = Callable[[float, int, float], Grant]  # (messages/s, slots, now) -> the next slots


class LocalSchedule:
    """The shared schedule's rule (see ``store.rates``) kept in this process: no database."""

    def __init__(self) -> None:
        self._next = -math.inf
        self._lock = threading.Lock()

    def __call__(self, per_second: float, count: int, now: float) -> Grant:
        with self._lock:
            start = max(self._next, now)
            self._next = start + count / per_second
        return Grant(start, 1 / per_second, count)


class RateLimiter:
    """At most ``rate`` sends in any one-second window, summed over every sender that draws
    from the same schedule; thread-safe. ``rate=None`` means unlimited.

    Slots come from ``draw`` in grants of about ``GRANT_SECONDS`` each, the next one fetched
    when half of the current one is spent, so that a sender alone never waits for the database.
    """

    def __init__(self, rate: float | None, draw: Draw | None = None, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.clock, self.sleep = clock, sleep  # the clock of the schedule: time.time
        self.draw = draw or LocalSchedule()
        self._lock = threading.Lock()
        self._slots: collections.deque[float] = collections.deque()
        self._slowed_at = -math.inf
        self.rate = self.target = rate

    def acquire(self) -> None:
        """Wait for this caller's slot. A slot missed by more than ``LATE`` is given up for
        the next one, twice at most: on a machine too busy to wake anyone on time, sending
        goes on (late) rather than stalls."""
        if not self.rate or self.rate > UNMETERED:
            return
        for _ in range(MAX_GIVEN_UP + 1):
            slot = self._take()
            wait = slot - self.clock()
            if wait > 0:
                self.sleep(wait)
            if self.clock() - slot <= LATE:
                return

    def _take(self) -> float:
        """The next slot not yet missed, drawing more from the schedule when few are left."""
        with self._lock:
            assert self.rate
            now = self.clock()
            self._recover(now)
            while self._slots and self._slots[0] < now - LATE:  # passed while we were busy
                self._slots.popleft()
            if len(self._slots) <= self._chunk() // 2:
                # A window holds whole messages: at 12.6/s, 12 of them.
                whole = math.floor(self.rate) if self.rate >= 1 else self.rate
                grant = self.draw(whole * HEADROOM, self._chunk(), self.clock())
                self._slots.extend(grant.start + i * grant.spacing for i in range(grant.count))
            return self._slots.popleft()

    def _chunk(self) -> int:
        assert self.rate
        return max(1, min(MAX_GRANT, round(self.rate * GRANT_SECONDS)))

    def slow_down(self, factor: float = 0.8, floor: float = 1.0) -> None:
        """The provider throttled us: lower the rate (never below ``floor``). Each sender
        slows down on its own: when together they go too fast, the provider throttles them all.

        Many threads see the same burst of throttling; one cut per second is enough."""
        now = self.clock()
        if self.rate and now - self._slowed_at >= 1.0:
            self._slowed_at = now
            self.rate = max(floor, self.rate * factor)

    def _recover(self, now: float) -> None:
        """Creep back towards the target rate, 10% a second, after 5 calm seconds."""
        if self.target and self.rate and self.rate < self.target and \
                now - self._slowed_at >= 5.0:
            self.rate = min(self.target, self.rate * 1.1)
            self._slowed_at = now - 4.0  # next step in a second


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0,
            rand: Callable[[], float] = random.random) -> float:
    """'Full jitter' exponential backoff: a random wait up to ``base * 2**attempt`` seconds.

    See https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
    """
    return rand() * min(cap, base * 2 ** attempt)
