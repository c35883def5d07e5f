"""``newsletter scheduler``: the ``schedule`` package wired to ``scheduling.Runner``.

Only wiring lives here: the interval, the signals, the loop. ``schedule`` keeps no state; the
database does (see ``store.schedules``), so a restart loses nothing.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable

import schedule

from newsletter.config import Settings
from newsletter.sending.scheduling import PassReport, Runner, log
from newsletter.sending.workers import stop_on_signals
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
    with Store.open(settings.database_url) as store, stop_on_signals(stop):
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
