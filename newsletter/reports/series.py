"""Figures over time: the database's bucket counts, with the empty buckets between them filled in.

A chart of messages per minute must show the minute nobody was sent anything as a 0, not skip
it; the database only returns buckets that have rows, so the gaps are filled here (from a few
hundred aggregated rows, never from the rows themselves). A long send is drawn per hour, a very
long one per day, so a chart never holds more than a few thousand points.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from newsletter.store.events import EventType
from newsletter.store.reports import ReportQueries, SendWindow, Unit, since_label

FORMATS = {"minute": "%Y-%m-%dT%H:%M", "hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d",
           "week": "%Y-%m-%d"}
STEPS = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1),
         "day": dt.timedelta(days=1), "week": dt.timedelta(weeks=1)}
SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
MOST_POINTS = 3000  # per chart: past it, a coarser unit
ENGAGEMENT_DAYS = 7  # deliveries, opens and clicks are drawn per hour over the first week
ENGAGED = (EventType.DELIVERED, EventType.OPENED, EventType.CLICKED)
JOINS = ("import", "sign-up", "added")
LEAVES = ("unsubscribed", "bounced", "complained", "erased")


@dataclass
class Series:
    """Counts per time bucket: ``labels`` (UTC, see ``store.reports``) and one list of values
    per dataset, as long as ``labels``."""

    unit: str
    labels: list[str] = field(default_factory=list)
    datasets: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(any(values) for values in self.datasets.values())

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "labels": self.labels, "datasets": self.datasets}


def span(first: str, last: str, unit: Unit) -> list[str]:
    """Every bucket label from ``first`` to ``last``, both included."""
    moment = dt.datetime.strptime(first, FORMATS[unit])
    end = dt.datetime.strptime(last, FORMATS[unit])
    labels = []
    while moment <= end:
        labels.append(moment.strftime(FORMATS[unit]))
        moment += STEPS[unit]
    return labels


def filled(unit: Unit, rows: Iterable[tuple[str, str, float]], names: Iterable[str],
           first: str | None = None, last: str | None = None) -> Series:
    """A series of (label, dataset, value) rows, every bucket from the first to the last."""
    values: dict[str, dict[str, float]] = {}
    for label, name, value in rows:
        values.setdefault(name, {})[label] = value
    present = sorted({label for by_label in values.values() for label in by_label})
    first = first or (present[0] if present else None)
    last = max(filter(None, (last, present[-1] if present else None)), default=None)
    labels = span(first, last, unit) if first and last and first <= last else []
    return Series(unit, labels, {name: [values.get(name, {}).get(label, 0) for label in labels]
                                 for name in names})


def unit_for(start: dt.datetime, end: dt.datetime) -> Unit:
    """The finest of minute, hour and day that draws ``start``–``end`` in MOST_POINTS."""
    seconds = (end - start).total_seconds()
    if seconds / SECONDS["minute"] <= MOST_POINTS:
        return "minute"
    return "hour" if seconds / SECONDS["hour"] <= MOST_POINTS else "day"


def edges(start: dt.datetime, end: dt.datetime, unit: Unit) -> list[dt.datetime]:
    """Bucket boundaries from ``start``'s bucket to the one after ``end``'s."""
    moment = floor(start, unit)
    found = [moment]
    while moment <= end:
        moment += STEPS[unit]
        found.append(moment)
    return found


def floor(moment: dt.datetime, unit: Unit) -> dt.datetime:
    moment = moment.astimezone(dt.UTC).replace(second=0, microsecond=0)
    if unit != "minute":
        moment = moment.replace(minute=0)
    return moment.replace(hour=0) if unit in ("day", "week") else moment


def sending(queries: ReportQueries, issue: str, window: SendWindow,
            rate: float | None) -> Series:
    """Messages sent per minute (or hour, day) during the send, and the configured rate."""
    if window.first is None or window.last is None:
        return Series("minute")
    unit = unit_for(window.first, window.last)
    bounds = edges(window.first, window.last, unit)
    labels = [since_label(edge, unit) for edge in bounds[:-1]]
    series = Series(unit, labels, {"sent": list(queries.sent_per(issue, bounds))})
    if rate:
        series.datasets["configured rate"] = [round(rate * SECONDS[unit], 2)] * len(labels)
    return series


def engagement(queries: ReportQueries, issue: str, start: dt.datetime,
               tracking: bool) -> Series:
    """Deliveries, opens and clicks per hour over the first ``ENGAGEMENT_DAYS`` of a send,
    up to the last hour that saw one."""
    bounds = edges(start, start + dt.timedelta(days=ENGAGEMENT_DAYS, hours=-1), "hour")
    kinds = ENGAGED if tracking else ENGAGED[:1]
    counts = {str(kind): queries.events_per(issue, kind, bounds) for kind in kinds}
    seen = [index for index in range(len(bounds) - 1)
            if any(values[index] for values in counts.values())]
    shown = seen[-1] + 1 if seen else 0
    return Series("hour", [since_label(edge, "hour") for edge in bounds[:shown]],
                  {kind: values[:shown] for kind, values in counts.items()})


def unsubscribes(queries: ReportQueries, issue: str) -> Series:
    """Readers who left through this issue, per day."""
    rows = queries.unsubscribes_per(issue, "day")
    return filled("day", ((at, "unsubscribed", n) for at, n in rows), ["unsubscribed"])


def weekly(queries: ReportQueries, today: dt.datetime | None = None) -> Series:
    """The list per week: joins by how they came, leaves by why, and the subscribers on the
    list at the end of each week (joins less leaves so far; erased people are counted in
    neither, since nothing of when they joined is kept)."""
    joins = [(week, f"joined: {how}", n) for week, how, n in queries.joins_per_week()]
    leaves = [(week, f"left: {why}", n) for week, why, n in queries.leaves_per_week()]
    if not joins and not leaves:
        return Series("week")
    this_week = since_label(today or dt.datetime.now(dt.UTC), "week")
    names = [f"joined: {how}" for how in JOINS] + [f"left: {why}" for why in LEAVES]
    series = filled("week", joins + leaves, names, last=this_week)
    on_list, total = [], 0.0
    for index in range(len(series.labels)):
        total += sum(series.datasets[f"joined: {how}"][index] for how in JOINS)
        total -= sum(series.datasets[f"left: {why}"][index] for why in LEAVES[:-1])
        on_list.append(total)
    series.datasets = {"subscribers": on_list, **series.datasets}
    return series
