"""One-click unsubscribes, grouped into shared transactions under concurrency.

The write itself is ``Store.unsubscribe``: one ``UPDATE … RETURNING`` for a whole batch of
subscribers, the hot path of one-click unsubscribe (mailbox providers send these POSTs in
bursts after a large send). This module decides what goes into a batch.

Concurrent requests share transactions ("group commit"): the thread that gets the writer's
turn runs every unsubscribe queued so far in one transaction, and each request returns only
once the transaction holding its change has committed. Why: SQLite admits one writer at a
time, threads racing for its lock sleep in its busy handler (1, 2, 5 … 100 ms), and in a
threaded server every transaction costs several GIL hand-overs; one transaction per burst
instead of one per request more than halves the server's CPU per unsubscribe under load.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from newsletter.store import Standing, Store
from newsletter.store.store import MAX_ID


@dataclass(slots=True)
class _Request:
    subscriber_id: int
    reason: str
    issue: str | None
    done: bool = False
    standing: Standing | None = None
    error: BaseException | None = None


class Leaving:
    """Unsubscribes for one store, grouped into shared transactions under concurrency."""

    def __init__(self, store: Store):
        self.store = store
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()  # one writing thread at a time

    def unsubscribe(self, subscriber_id: int, *, reason: str,
                    issue: str | None) -> Standing | None:
        """Unsubscribe one subscriber; returns once committed. Idempotent. None if there is
        no such subscriber (erased, or an id no database holds)."""
        if not 0 < subscriber_id <= MAX_ID:  # no subscriber's: not worth a turn
            return None
        request = _Request(subscriber_id, reason, issue)
        with self._queue_lock:
            self._queue.append(request)
        with self._turn:
            if not request.done:  # nobody took it along: write everything queued so far
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._write(batch)
        if request.error is not None:
            raise request.error
        return request.standing

    def _write(self, batch: list[_Request]) -> None:
        """One transaction for the batch; every request in it learns its outcome."""
        try:
            found = self.store.unsubscribe([(r.subscriber_id, r.reason, r.issue) for r in batch])
        except BaseException as error:
            for request in batch:
                request.error, request.done = error, True
            return
        for request, standing in zip(batch, found, strict=True):
            request.standing, request.done = standing, True
