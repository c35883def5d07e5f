"""A bounded background queue: sign-ups are handled off the request thread.

Why: the answer to a sign-up must not depend on whether the address is already on the list, in
content or in time. Looking the address up, writing the pending subscriber and sending the
confirmation email (an SES call takes tens of milliseconds) happen here, after the response;
the page always says the same thing, as fast. At most ``capacity`` sign-ups wait; beyond that
the form answers 503 (try again later) instead of holding unbounded memory. Work still queued
when the process exits is finished first (``close``); a killed process loses it, and the person
simply does not get the email and can sign up again.

Several ``serve`` processes: each has its own queue, and that is enough; nothing is shared
through the database. The queue only moves work off the request thread, and each process
finishes what it accepted. What must hold across processes is decided before a sign-up is
queued: the per-client and per-address limits (newsletter.web.limits) are buckets in the
database, so an address gets at most the per-address burst of confirmation emails however
many processes its sign-ups reach. The rest is already safe with several writers: two
processes adding the same new address race on its unique key and the loser does nothing
("raced", see newsletter.web.signup), and a pending address signing up through two processes
gets two confirmation emails, as it would from two sign-ups in one. A shared queue would add a
table, polling and a dead worker's leftovers to take over, for no guarantee more.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

logger = logging.getLogger("newsletter.web.signup")
CAPACITY = 1000


class Background:
    """One worker thread and a bounded queue of calls."""

    def __init__(self, capacity: int = CAPACITY):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="newsletter-signup")
        self._slots = threading.BoundedSemaphore(capacity)
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], None]) -> bool:
        """Queue ``work``; False if the queue is full (nothing queued)."""
        if not self._slots.acquire(blocking=False):
            return False
        future = self._pool.submit(self._run, work)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return True

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is done (tests, shutdown)."""
        with self._lock:
            pending = list(self._pending)
        wait(pending, timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # a worker must survive one bad sign-up; the log says what broke
            logger.exception("sign-up failed")

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
        self._slots.release()
