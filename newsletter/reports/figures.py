"""The figures of a report as plain dataclasses: one issue's, and every issue's with the list's.

Built from the aggregates of ``newsletter.store.reports`` (a few hundred rows at most, whatever
the size of the send); ``as_dict`` is what ``newsletter report --json`` prints and what the HTML
template draws.

Definitions (every rate is a fraction, None when its denominator is 0):

    sent        deliveries the provider accepted (ledger status ``sent``)
    delivered   messages with a delivery event; opened, clicked: with an open, a click
    bounce      hard-bounced messages / sent (what SES counts); soft bounces shown beside it
    complaint   messages complained about / sent
    delivery    delivered / sent;  open, click, unsubscribe: of delivered
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from newsletter.reports.series import Series, engagement, sending, unsubscribes, weekly
from newsletter.reports.thresholds import BOUNCE, COMPLAINT, Verdict, judge
from newsletter.store import Store
from newsletter.store.events import EventType
from newsletter.store.reports import DOMAIN_EVENTS, IssueTotals, ReportQueries

IN_PROGRESS = ("queued", "claimed", "sending")
PARALLEL_QUERIES = 3
TRACKING_ADVICE = (
    "No opens or clicks were recorded for this issue. SES reports them only through a "
    "configuration set whose event destination publishes OPEN and CLICK events, with open and "
    "click tracking on: run `newsletter ses setup --tracking` (or add Open and Click to the SNS "
    "event destination of `ses_configuration_set` in the SES console). Issues sent before then "
    "have none.")
NO_EVENTS_ADVICE = (
    "No SES events were recorded for this issue: deliveries, bounces and complaints reach the "
    "newsletter through the SNS webhook or `newsletter events poll` (README: \"Bounces, "
    "complaints and other SES events\").")
UNKNOWN_ADVICE = (
    "These messages may or may not have gone out: the provider did not answer, or the sender "
    "stopped while they were in flight. A delivery, bounce or other event from SES settles each "
    "one by itself once it arrives (event publishing tags messages with the issue). To send "
    "the rest anyway: `newsletter send {issue} --retry-unknown` (those who did get it will get "
    "it twice).")


@dataclass(frozen=True, slots=True)
class Counted:
    """A text and how often it happened (an error, a reason)."""

    text: str
    count: int


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    unique: int  # messages whose reader clicked it
    total: int  # clicks


@dataclass(frozen=True, slots=True)
class Domain:
    domain: str
    sent: int
    delivered: int
    bounced: int
    complained: int
    opened: int


@dataclass
class IssueReport:
    """What happened to one issue."""

    issue: str
    subject: str
    planned_at: dt.datetime
    first_sent: dt.datetime | None
    last_sent: dt.datetime | None
    funnel: dict[str, int | None]  # planned, sent, delivered, opened, clicked
    outcomes: dict[str, int]  # failed, skipped, unknown, in_progress, bounced, ...
    rates: dict[str, float | None]
    verdicts: list[Verdict]
    tracking: bool
    notes: list[str]
    sending: Series
    engagement: Series
    unsubscribes: Series
    links: list[Link]
    domains: list[Domain]
    errors: list[Counted]
    unknown: list[Counted]
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def unknown_advice(self) -> str:
        return UNKNOWN_ADVICE.format(issue=self.issue) if self.outcomes["unknown"] else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue": self.issue, "subject": self.subject, "planned_at": _iso(self.planned_at),
            "first_sent": _iso(self.first_sent), "last_sent": _iso(self.last_sent),
            "generated_at": _iso(self.generated_at), "funnel": self.funnel,
            "outcomes": self.outcomes, "rates": self.rates,
            "verdicts": [v.as_dict() for v in self.verdicts], "tracking": self.tracking,
            "notes": self.notes, "sending": self.sending.as_dict(),
            "engagement": self.engagement.as_dict(),
            "unsubscribes": self.unsubscribes.as_dict(),
            "links": [dataclasses.asdict(link) for link in self.links],
            "domains": [dataclasses.asdict(domain) for domain in self.domains],
            "errors": [{"error": e.text, "count": e.count} for e in self.errors],
            "unknown": {"count": self.outcomes["unknown"], "advice": self.unknown_advice,
                        "reasons": [{"reason": u.text, "count": u.count}
                                    for u in self.unknown]},
        }


@dataclass(frozen=True, slots=True)
class IssueLine:
    """One issue in the side-by-side table."""

    issue: str
    subject: str
    planned_at: dt.datetime
    planned: int
    sent: int
    rates: dict[str, float | None]
    verdicts: list[Verdict]

    def as_dict(self) -> dict[str, Any]:
        return {"issue": self.issue, "subject": self.subject,
                "planned_at": _iso(self.planned_at), "planned": self.planned,
                "sent": self.sent, "rates": self.rates,
                "verdicts": [v.as_dict() for v in self.verdicts]}


@dataclass
class ListReport:
    """Every issue side by side, and the list over time."""

    issues: list[IssueLine]
    now: dict[str, int]  # subscribers per status today
    weeks: Series  # subscribers, joins by source, leaves by reason
    notes: list[str]
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def as_dict(self) -> dict[str, Any]:
        return {"generated_at": _iso(self.generated_at),
                "issues": [line.as_dict() for line in self.issues], "subscribers": self.now,
                "weeks": self.weeks.as_dict(), "notes": self.notes}


# ---------------------------------------------------------------- building them


def issue_report(store: Store, issue: str, rate: float | None = None) -> IssueReport | None:
    """The report of ``issue`` (None if it has no send); ``rate``: the configured messages per
    second, drawn beside the measured one.

    The figure groups are independent queries, run PARALLEL_QUERIES at a time on connections
    of their own: each waits on its database, not on Python, so on a large send the report
    takes about as long as its two largest queries rather than all of them in a row."""
    queries = ReportQueries(store)
    window, send = queries.send_window(issue), queries.send(issue)
    if window is None or send is None:
        return None
    start = window.first or window.planned_at
    threads = PARALLEL_QUERIES if queries.shareable else 1
    with ThreadPoolExecutor(threads, thread_name_prefix="report") as pool:
        top = pool.submit(queries.domains_sent, issue)  # the longest chain first
        events = pool.submit(queries.event_counts, issue)
        hourly = pool.submit(engagement, queries, issue, start, True)
        statuses = pool.submit(queries.statuses, issue)
        sent = pool.submit(sending, queries, issue, window, rate)
        left = pool.submit(unsubscribes, queries, issue)
        links = pool.submit(queries.links, issue)
        errors = pool.submit(queries.errors, issue, "failed")
        unknown = pool.submit(queries.errors, issue, "unknown")
        names = [name for name, _n in top.result()]
        per_domain = {name: pool.submit(queries.domain_events, issue, names, kind)
                      for name, kind in DOMAIN_EVENTS.items()}
    domains = [Domain(name, sent, **{column: counts.result().get(name, 0)
                                      for column, counts in per_domain.items()})
               for name, sent in top.result()]
    messages = {kind: n for kind, (n, _total) in events.result().items()}
    unsubscribed = int(sum(left.result().datasets["unsubscribed"]))
    totals = IssueTotals(issue, send[0], window.planned_at, send[1],
                         statuses.result().get("sent", 0), messages, unsubscribed)
    tracking = bool(messages.get(EventType.OPENED) or messages.get(EventType.CLICKED))
    funnel: dict[str, int | None] = {
        "planned": totals.planned, "sent": totals.sent,
        "delivered": messages.get(EventType.DELIVERED, 0),
        "opened": messages.get(EventType.OPENED, 0) if tracking else None,
        "clicked": messages.get(EventType.CLICKED, 0) if tracking else None}
    return IssueReport(
        issue=issue, subject=totals.subject, planned_at=window.planned_at,
        first_sent=window.first, last_sent=window.last, funnel=funnel,
        outcomes=_outcomes(statuses.result(), messages, unsubscribed),
        rates=issue_rates(totals, tracking), verdicts=verdicts(totals), tracking=tracking,
        notes=_notes(totals, events.result(), tracking), sending=sent.result(),
        engagement=_tracked(hourly.result(), tracking), unsubscribes=left.result(),
        links=[Link(*row) for row in links.result()], domains=domains,
        errors=[Counted(*row) for row in errors.result()],
        unknown=[Counted(*row) for row in unknown.result()])


def _tracked(series: Series, tracking: bool) -> Series:
    """Without open and click tracking, deliveries alone (not two lines of zeros)."""
    if not tracking:
        series.datasets = {str(EventType.DELIVERED): series.datasets[EventType.DELIVERED]}
    return series


def list_report(store: Store) -> ListReport:
    queries = ReportQueries(store)
    lines = [IssueLine(t.issue, t.subject, t.planned_at, t.planned, t.sent,
                       issue_rates(t, True), verdicts(t)) for t in queries.issue_totals()]
    notes = [] if lines else ["Nothing has been sent yet."]
    if any(line.rates["open"] is None and line.sent for line in lines):
        notes.append("Issues without delivery events show no delivery, open, click or "
                     "unsubscribe rates (they are per delivered message).")
    return ListReport(lines, queries.list_now(), weekly(queries), notes)


def verdicts(totals: IssueTotals) -> list[Verdict]:
    """The bounce and complaint verdicts of an issue."""
    return [judge(BOUNCE, totals.messages.get(EventType.BOUNCED, 0), totals.sent),
            judge(COMPLAINT, totals.messages.get(EventType.COMPLAINED, 0), totals.sent)]


def issue_rates(totals: IssueTotals, tracking: bool) -> dict[str, float | None]:
    delivered = totals.messages.get(EventType.DELIVERED, 0)
    of_sent = _share(totals.sent)
    of_delivered = _share(delivered)
    opened, clicked = (totals.messages.get(kind, 0) for kind in (EventType.OPENED,
                                                                 EventType.CLICKED))
    return {"delivery": of_sent(delivered),
            "bounce": of_sent(totals.messages.get(EventType.BOUNCED, 0)),
            "soft_bounce": of_sent(totals.messages.get(EventType.SOFT_BOUNCED, 0)),
            "complaint": of_sent(totals.messages.get(EventType.COMPLAINED, 0)),
            "open": of_delivered(opened) if tracking or opened else None,
            "click": of_delivered(clicked) if tracking or clicked else None,
            "unsubscribe": of_delivered(totals.unsubscribed)}


def _share(denominator: int) -> Any:
    return lambda part: part / denominator if denominator else None


def _outcomes(statuses: dict[str, int], messages: dict[str, int],
              unsubscribed: int) -> dict[str, int]:
    return {"failed": statuses.get("failed", 0), "skipped": statuses.get("skipped", 0),
            "unknown": statuses.get("unknown", 0),
            "in_progress": sum(statuses.get(s, 0) for s in IN_PROGRESS),
            "bounced": messages.get(EventType.BOUNCED, 0),
            "soft_bounced": messages.get(EventType.SOFT_BOUNCED, 0),
            "complained": messages.get(EventType.COMPLAINED, 0),
            "rejected": messages.get(EventType.REJECTED, 0),
            "delayed": messages.get(EventType.DELIVERY_DELAYED, 0),
            "unsubscribed": unsubscribed}


def _notes(totals: IssueTotals, events: dict[str, tuple[int, int]], tracking: bool) -> list[str]:
    if totals.sent and not events:
        return [NO_EVENTS_ADVICE]
    return [] if tracking or not totals.sent else [TRACKING_ADVICE]


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None
