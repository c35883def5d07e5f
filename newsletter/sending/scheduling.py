"""Scheduled sends: put an issue on the calendar, and, on each pass, send what is due.

Everything a scheduler decides lives here (``scheduler.py`` only wires the ``schedule`` package
and signals to ``run_pass``). Exactly-once rests on two locks: the scheduler lease (one runner
acts at a time) and, underneath, the delivery ledger (one row per issue and subscriber), so
even two runners acting at once could not mail anyone twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.authoring.checks import check_issue, has_errors
from newsletter.authoring.content import find_issue, load_issue, parse_send_at
from newsletter.authoring.render import render_edition
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.message import Edition
from newsletter.reports.alarms import hold_reason, last_issue_alarm
from newsletter.sending.engine import (
    Progress,
    SendOptions,
    check_ready,
    content_hash,
    missing_attributes,
    plan_send,
    send_issue,
)
from newsletter.sending.triggered import run_triggers
from newsletter.store import Store
from newsletter.store.ledger import Ledger
from newsletter.store.schedules import ScheduleRow, Schedules
from newsletter.transports import Transport

log = logging.getLogger("newsletter.sending.scheduler")
LEASE_TTL = dt.timedelta(seconds=90)
RENEW_EVERY = 15.0  # seconds between lease renewals during a long send


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_when(text: str) -> dt.datetime:
    """A time for ``--at``: the front-matter forms, with the DST checks of ``check_local_time``."""
    try:
        return check_local_time(parse_send_at(text))
    except ValueError as error:
        raise NewsletterError(f"--at {text!r}: {error}") from None


def check_local_time(moment: dt.datetime) -> dt.datetime:
    """Refuse a wall-clock time that does not exist in its zone (the hour skipped in spring)."""
    if isinstance(moment.tzinfo, ZoneInfo):
        round_trip = moment.astimezone(dt.UTC).astimezone(moment.tzinfo)
        if round_trip.replace(tzinfo=None) != moment.replace(tzinfo=None):
            raise ValueError(f"{moment:%Y-%m-%d %H:%M} does not exist in {moment.tzinfo} "
                             "(the clocks skip that hour); choose another time")
    return moment


def zone_label(moment: dt.datetime) -> str:
    return str(moment.tzinfo) if isinstance(moment.tzinfo, ZoneInfo) else moment.strftime("%z")


def local(row: ScheduleRow) -> dt.datetime:
    """A schedule's time in the zone it was given in."""
    if "/" in row.zone or row.zone == "UTC":
        return row.send_at.astimezone(ZoneInfo(row.zone))
    return row.send_at.astimezone(dt.datetime.strptime(row.zone, "%z").tzinfo)


# ---------------------------------------------------------------- scheduling


def schedule_issue(settings: Settings, store: Store, folder: Path, when: str | None = None,
                   now: dt.datetime | None = None, *,
                   confirm_risk: bool = False) -> ScheduleRow:
    """Pin an issue to a time (``when`` or its ``send_at``), with the hash of what it renders.
    ``confirm_risk``: send it even if the last issue's complaint rate would hold it."""
    issue = load_issue(folder, settings)
    if issue.meta.trigger is not None:
        raise NewsletterError(f"{issue.slug} is a triggered issue "
                              f"({issue.meta.trigger.describe()}): the scheduler sends it to "
                              "each subscriber at their own time, without a schedule")
    if has_errors(check_issue(folder, settings)):
        raise NewsletterError(f"{issue.slug} does not pass `newsletter check`: fix it first")
    edition = render_edition(folder, settings)
    if missing := missing_attributes(edition.original, store, issue.meta.audience):
        raise NewsletterError(f"{issue.slug}: {missing}")
    if when:
        send_at = parse_when(when)
    elif issue.meta.send_at:
        send_at = check_local_time(issue.meta.send_at)
    else:
        raise NewsletterError(f"{issue.slug} has no send_at: give --at WHEN, e.g. "
                              "--at '2025-10-06 09:00 Europe/Sofia'")
    if send_at <= (now or utc_now()):
        raise NewsletterError(f"{send_at:%Y-%m-%d %H:%M %Z} has passed: use `newsletter send` "
                              "to send now")
    if Ledger(store).send(issue.slug) is not None:
        raise NewsletterError(f"{issue.slug} has already been sent (or is being sent)")
    schedules = Schedules(store)
    schedules.put(issue.slug, send_at.astimezone(dt.UTC), zone_label(send_at),
                  content_hash(edition), risk_confirmed=confirm_risk)
    row = schedules.get(issue.slug)
    assert row is not None
    return row


# ---------------------------------------------------------------- a pass


@dataclass
class PassReport:
    """What one pass did, in words for the log and counts for tests."""

    lines: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # started, not finished (resumes next pass)
    lease_held_by: str | None = None

    def say(self, line: str) -> None:
        self.lines.append(line)
        log.info(line)


@dataclass
class Runner:
    """One scheduler: who it is, where it sends, and the event that tells it to stop."""

    settings: Settings
    store: Store
    transport: Callable[[], Transport]
    holder: str
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], dt.datetime] = utc_now

    @property
    def schedules(self) -> Schedules:
        return Schedules(self.store)

    def run_pass(self) -> PassReport:
        """Send what is due, if this runner holds the lease."""
        report = PassReport()
        if not self.schedules.acquire(self.holder, LEASE_TTL, self.clock()):
            lease = self.schedules.lease()
            report.lease_held_by = lease[0] if lease else "?"
            report.say(f"another scheduler ({report.lease_held_by}) holds the lease; "
                       "doing nothing this pass")
            return report
        due = self.schedules.due(self.clock())
        if not due:
            report.say("nothing due")
        for row in due:
            if self.stop.is_set():
                break
            self.handle(row, report)
        if not self.stop.is_set():
            run_triggers(self, report)  # welcome issues and sequences: whoever is due now
        return report

    def handle(self, row: ScheduleRow, report: PassReport) -> None:
        grace = dt.timedelta(hours=self.settings.schedule_grace_hours)
        late = self.clock() - row.send_at
        if row.state == "scheduled" and late > grace:
            self.schedules.mark(row.issue, "missed", f"due {row.send_at:%Y-%m-%d %H:%M} UTC, "
                                f"{_hours(late)} late, beyond the {_hours(grace)} grace period")
            report.missed.append(row.issue)
            report.say(f"{row.issue}: missed (due {_hours(late)} ago, grace {_hours(grace)}); "
                       "not sent — re-schedule or send it by hand")
            return
        try:
            folder = find_issue(self.settings, row.issue)
            issue = load_issue(folder, self.settings)
            edition = render_edition(folder, self.settings)
            reason = self.reason_to_hold(row, folder, edition, issue.meta.audience)
        except NewsletterError as error:
            reason = f"it does not load: {error}"
        if reason:
            self.schedules.mark(row.issue, "held", reason)
            report.held.append(row.issue)
            report.say(f"{row.issue}: held, not sent: {reason}")
            return
        self.send(row, edition, issue.meta.audience, report)

    def reason_to_hold(self, row: ScheduleRow, folder: Path, edition: Edition,
                       audience: tuple[str, ...]) -> str:
        """Why the issue may not go out as scheduled ("" if it may)."""
        if content_hash(edition) != row.content_hash:
            return "edited after it was scheduled; check it and schedule it again"
        if has_errors(check_issue(folder, self.settings)):
            return "it fails `newsletter check`"
        if missing := missing_attributes(edition.original, self.store, audience):
            return missing
        return self.risk(row)

    def risk(self, row: ScheduleRow) -> str:
        """Why the last issue's complaint rate holds this one ("" if it does not): only before
        its send starts, and only until someone confirms the risk."""
        if row.state != "scheduled" or row.risk_confirmed_at is not None:
            return ""
        return hold_reason(last_issue_alarm(self.store, exclude=row.issue), row.issue)

    def send(self, row: ScheduleRow, edition: Edition, audience: tuple[str, ...],
             report: PassReport) -> None:
        check_ready(self.settings, row.issue)
        ledger = Ledger(self.store)
        begun = ledger.send(row.issue)
        if begun is not None and begun.note:  # the engine paused it: a person looks first
            report.waiting.append(row.issue)
            report.say(f"{row.issue}: {begun.note}; `newsletter send {row.issue}` resumes it")
            return
        planned, new = plan_send(edition, self.settings, ledger, audience)
        self.schedules.mark(row.issue, "sending")
        report.say(f"{row.issue}: {'sending to' if new else 'resuming'} {planned} recipients")
        with self.transport() as transport:
            result = send_issue(edition, self.settings, ledger, transport,
                                SendOptions.from_settings(self.settings),
                                on_progress=self.renew_lease(), stop=self.stop)
        counts = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n)
        if result.complete:
            self.schedules.mark(row.issue, "sent", counts)
            report.sent.append(row.issue)
            report.say(f"{row.issue}: sent ({counts})")
        else:
            self.schedules.mark(row.issue, "sending", result.stopped or "")
            report.waiting.append(row.issue)
            report.say(f"{row.issue}: not finished ({counts}): {result.stopped}")

    def renew_lease(self) -> Callable[[Progress], None]:
        """A progress hook that keeps the lease during a long send, or stops the send."""
        next_renewal = [time.monotonic() + RENEW_EVERY]

        def renew(_progress: Progress) -> None:
            if time.monotonic() < next_renewal[0]:
                return
            next_renewal[0] = time.monotonic() + RENEW_EVERY
            if not self.schedules.acquire(self.holder, LEASE_TTL, self.clock()):
                log.warning("lost the scheduler lease: stopping this send")
                self.stop.set()
        return renew

    def release(self) -> None:
        self.schedules.release(self.holder)


def _hours(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
