"""``newsletter scheduler``: the ``schedule`` package wired to ``scheduling.Runner``.

Only wiring lives here: the interval, the signals, the loop. ``schedule`` keeps no state; the
database does (see ``store.schedules``), so a restart loses nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import schedule

from newsletter.config import Settings
from newsletter.sending.scheduling import PassReport, Runner, log
from newsletter.store import Store
from newsletter.transports import Transport, make_transport


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def run_scheduler(settings: Settings, *, once: bool = False, interval: float | None = None,
                  transport: Callable[[], Transport] | None = None,
                  stop: threading.Event | None = None) -> PassReport:
    """Run passes every ``interval`` seconds until SIGTERM/SIGINT (or one with ``once``).

    Returns the first pass's report (the only one with ``once``)."""
    stop = stop or threading.Event()
    with Store.open(settings.database_url) as store, _signals(stop):
        runner = Runner(settings, store, transport or (lambda: make_transport(settings)),
                        holder_name(), stop)
        try:
            first = runner.run_pass()
            if once:
                return first
            every = interval or settings.schedule_interval
            jobs = schedule.Scheduler()
            # Annotated as int, but schedule takes fractions of a second (a timedelta inside).
            jobs.every(every).seconds.do(runner.run_pass)  # type: ignore[arg-type]
            log.info("scheduler %s: a pass every %ss", runner.holder, every)
            while not stop.is_set():
                jobs.run_pending()
                stop.wait(max(0.1, min(1.0, jobs.idle_seconds or 1.0)))
            log.info("stopping: the in-flight batch was recorded")
        finally:
            runner.release()
    return first


@contextlib.contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop``: the send in progress finishes its batch and records."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(number: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(number).name)
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
