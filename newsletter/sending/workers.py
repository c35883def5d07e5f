"""Sender processes that join the sends in progress: ``newsletter worker`` and ``send --workers``.

A worker looks for sends with rows left (queued, or held by a sender that may have died),
renders each issue from its folder, and runs the engine on it exactly as ``newsletter send``
would: the same ledger (each row goes to one sender), the same shared rate (``store.rates``),
its own share of the rows. Any number of workers, on any machine that reaches the database and
has the newsletter folder, may run at once. A worker sends only the content that was planned
(its hash must match) and leaves alone a send the engine paused (too many failures, a refusal
from the provider): that one waits for an operator's ``newsletter send``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.authoring.content import find_issue
from newsletter.authoring.render import render_edition
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.sending.engine import SendOptions, SendReport, content_hash, send_issue
from newsletter.store import Store
from newsletter.store.ledger import Ledger
from newsletter.transports import make_transport

log = logging.getLogger("newsletter.worker")


@dataclass
class WorkReport:
    """What one pass did: the sends it worked on, and those it had to leave."""

    reports: list[SendReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "slug: why"


def work_once(settings: Settings, store: Store, options: SendOptions, *,
              transport: str | None = None, only: str | None = None,
              stop: threading.Event | None = None) -> WorkReport:
    """Join every send in progress (or just ``only``) until it has nothing left for us."""
    ledger, done = Ledger(store), WorkReport()
    for slug in ledger.pending():
        if (only and slug != only) or (stop and stop.is_set()):
            continue
        try:
            edition = render_edition(find_issue(settings, slug), settings)
        except NewsletterError as error:
            done.skipped.append(f"{slug}: {error}")
            continue
        planned = ledger.send(slug)
        if planned is None or planned.content_hash != content_hash(edition):
            done.skipped.append(f"{slug}: the issue changed since its send was planned")
            continue
        with make_transport(settings, transport) as chosen:
            report = send_issue(edition, settings, ledger, chosen, options, stop=stop)
        log.info("%s: %d sent by this worker%s", slug, report.progress.sent,
                 f"; stopped: {report.stopped}" if report.stopped else "")
        done.reports.append(report)
    return done


def run_worker(settings: Settings, options: SendOptions, *, once: bool, interval: float,
               transport: str | None = None, only: str | None = None,
               stop: threading.Event | None = None) -> WorkReport:
    """Work pass after pass, ``interval`` seconds apart, until ``stop`` is set (or one pass).
    Returns the last pass's report; what a pass leaves alone is logged when it changes."""
    stop = stop or threading.Event()
    report, left_alone = WorkReport(), [""]
    with Store.open(settings.database_url) as store, stop_on_signals(stop):
        while not stop.is_set():
            report = work_once(settings, store, options, transport=transport, only=only,
                               stop=stop)
            if report.skipped != left_alone:
                for reason in report.skipped:
                    log.warning("left alone: %s", reason)
                left_alone = report.skipped
            if once:
                break
            stop.wait(interval)
    return report


def start_helpers(count: int, config: Path | None, slug: str,
                  arguments: Sequence[str] = ()) -> list[subprocess.Popen[bytes]]:
    """``count`` more sender processes on this machine for ``send --workers``: each one a
    ``newsletter worker --once --issue SLUG``, sharing the rows and the rate of the send."""
    command = [sys.executable, "-m", "newsletter"]
    if config is not None:
        command += ["--config", str(config)]
    command += ["worker", "--once", "--issue", slug, *arguments]
    return [subprocess.Popen(command, stdout=subprocess.DEVNULL, env=os.environ.copy())
            for _ in range(count)]


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
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
