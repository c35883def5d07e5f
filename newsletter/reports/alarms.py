"""Alarms: the last issue's bounce or complaint rate crossed a threshold of ``thresholds``.

``send`` and ``status`` print them; the scheduler holds the next scheduled issue while the last
issue's complaint rate is at or over SES's pause threshold, until someone confirms it with
``newsletter schedule ISSUE --confirm-risk`` (see ``sending.scheduling``).
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.reports.figures import verdicts
from newsletter.reports.thresholds import COMPLAINT, Verdict
from newsletter.store import Store
from newsletter.store.events import EventType
from newsletter.store.reports import ReportQueries

RISKS = (EventType.BOUNCED, EventType.COMPLAINED)


@dataclass(frozen=True, slots=True)
class Alarm:
    """The verdicts of an issue that crossed a threshold (none are ``ok``)."""

    issue: str
    verdicts: tuple[Verdict, ...]

    @property
    def holds(self) -> bool:
        """True when the next issue must wait for a person: complaints at SES's pause rate."""
        return any(v.metric is COMPLAINT and v.pauses for v in self.verdicts)

    def lines(self) -> list[str]:
        return [f"warning: the last issue, {self.issue}: {v.message}. See `newsletter report "
                f"{self.issue}`." for v in self.verdicts]

    def as_dicts(self) -> list[dict[str, object]]:
        return [{"issue": self.issue, **v.as_dict()} for v in self.verdicts]


def last_issue_alarm(store: Store, exclude: str | None = None) -> Alarm | None:
    """The alarm of the issue sent last (other than ``exclude``), if its bounce or complaint
    rate crossed a threshold; None if it did not, or nothing was sent."""
    queries = ReportQueries(store)
    latest = queries.latest_issues(exclude)
    if not latest:
        return None
    [totals] = queries.issue_totals(latest, kinds=RISKS)
    crossed = tuple(v for v in verdicts(totals) if v.crossed is not None)
    return Alarm(totals.issue, crossed) if crossed else None


def hold_reason(alarm: Alarm | None, issue: str) -> str:
    """Why the scheduler holds ``issue`` because of ``alarm`` ("" if it does not)."""
    if alarm is None or not alarm.holds:
        return ""
    complaint = next(v for v in alarm.verdicts if v.metric is COMPLAINT)
    return (f"the last issue, {alarm.issue}, has a {complaint.message}. Find out why "
            f"(`newsletter report {alarm.issue}`); to send this issue anyway: "
            f"`newsletter schedule {issue} --confirm-risk`")
