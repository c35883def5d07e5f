"""Triggered issues as the database keeps them: each trigger's state, and who is due now.

A triggered issue (front matter ``trigger``) goes to each subscriber at their own time: when
they join (a welcome), or a delay after they received another issue (a step of a sequence).
Its deliveries are ordinary ledger rows, planned pass by pass as subscribers become due, so
the engine sends them, resumes them after a crash, and never sends one twice: the ledger's
unique (issue, subscriber) holds whatever the passes, processes or machines.

Who is due is one indexed range query per trigger: active subscribers of the audience whose
due time (``welcome_at``; or the ``finished_at`` of their delivery of the issue followed, plus
the delay; ``ix_subscribers_welcome_at`` and ``ix_deliveries_report`` hold them in order)
falls in ``(cursor - LOOKBACK, now]``, where ``cursor`` is the previous pass. The
window reaches ``LOOKBACK`` back so that a row committed a little after the time it carries
(a long import, a slow transaction) is still found; the unique index makes the overlap
harmless. A pass where no one is due reads two short index ranges, however long the list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, String, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.store.ledger import DELIVERIES, Delivery, Send, version_column
from newsletter.store.models import Base, Status, Subscriber, UTCDateTime, utcnow
from newsletter.store.store import Store

LOOKBACK = dt.timedelta(minutes=15)
VERSION_LENGTH = 16  # of the content hash, as deliveries record it
LIVE, PAUSED = "live", "paused"


class TriggerRecord(Base):
    __tablename__ = "triggers"

    issue: Mapped[str] = mapped_column(String(200), primary_key=True)
    # "welcome", or "after <slug> <seconds>": the welcome issue resolved to its slug, so that
    # a change of rule (or of the issue followed) starts afresh instead of catching up.
    rule: Mapped[str] = mapped_column(String(300))
    # When it went live: who joined before is not due (unless backfilled).
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    cursor: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # due times planned up to here
    state: Mapped[str] = mapped_column(String(16), default=LIVE)  # live | paused
    version: Mapped[str] = mapped_column(String(64))  # content hash of what goes out now
    note: Mapped[str] = mapped_column(String(500), default="")  # why it is held, if it is
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True)
class Rule:
    """Whom a trigger is for: subscribers as they join (``follows`` None), or ``delay`` after
    they were sent the issue ``follows``."""

    follows: str | None = None
    delay: dt.timedelta = dt.timedelta(0)

    @property
    def key(self) -> str:
        if self.follows is None:
            return "welcome"
        return f"after {self.follows} {int(self.delay.total_seconds())}"


@dataclass(frozen=True)
class TriggerState:
    issue: str
    rule: str
    started_at: dt.datetime
    cursor: dt.datetime
    state: str
    version: str
    note: str


class Triggers:
    """The trigger queries, over a ``Store``'s database."""

    def __init__(self, store: Store):
        self.store = store
        self.writer = store.writer
        self.upsert = postgresql.insert if store.engine.dialect.name == "postgresql" else \
            sqlite.insert

    def get(self, issue: str) -> TriggerState | None:
        with self.store.engine.connect() as connection:
            row = connection.execute(select(*_COLUMNS).where(
                TriggerRecord.issue == issue)).first()
        return TriggerState(*row) if row else None

    def all(self) -> dict[str, TriggerState]:
        with self.store.engine.connect() as connection:
            return {row.issue: TriggerState(*row)
                    for row in connection.execute(select(*_COLUMNS))}

    def go_live(self, issue: str, rule: Rule, version: str, subject: str,
                now: dt.datetime, audience: Collection[str] = ()) -> TriggerState:
        """Start a trigger (and its send, which collects its deliveries) as of ``now``; a
        trigger already live is left as it is."""
        with self.writer.begin() as connection:
            connection.execute(self.upsert(Send).values(
                issue=issue, subject=subject, content_hash=version, audience=list(audience),
                planned=0,
                created_at=now, note="").on_conflict_do_nothing())
            connection.execute(self.upsert(TriggerRecord).values(
                issue=issue, rule=rule.key, started_at=now, cursor=now, state=LIVE,
                version=version, note="", updated_at=now).on_conflict_do_nothing())
        state = self.get(issue)
        assert state is not None
        return state

    def restart(self, issue: str, rule: Rule, now: dt.datetime) -> None:
        """The rule changed: from now on it applies; nobody is due for the time before."""
        self._set(issue, rule=rule.key, cursor=now)

    def set_state(self, issue: str, state: str) -> None:
        self._set(issue, state=state)

    def hold(self, issue: str, note: str) -> None:
        self._set(issue, note=note[:500])

    def adopt(self, issue: str, version: str, subject: str) -> None:
        """A new version goes out from now on: to everyone not sent the issue yet, queued
        rows included."""
        with self.writer.begin() as connection:
            connection.execute(update(TriggerRecord).where(TriggerRecord.issue == issue)
                               .values(version=version, note="", updated_at=utcnow()))
            connection.execute(update(Send).where(Send.issue == issue)
                               .values(content_hash=version, subject=subject))
            connection.execute(update(Delivery).where(
                Delivery.issue == issue, Delivery.status.in_(("queued", "claimed")))
                .values(version=version[:VERSION_LENGTH]))

    def plan_due(self, state: TriggerState, rule: Rule, now: dt.datetime, *,
                 audience: Collection[str] = (),
                 version_for: Callable[[str | None], str] | None = None) -> int:
        """Queue the subscribers due since the last pass; returns how many were new. A pass
        where no one is due reads one short index range and writes nothing."""
        # Never before it went live: who was due then is not (unless backfilled).
        since = max(state.cursor - LOOKBACK, state.started_at)
        due = self.due(rule, now, audience, since=since)
        with self.store.engine.connect() as connection:
            if not connection.scalar(select(unplanned(state.issue, due).exists())):
                return 0
        with self.writer.begin() as connection:
            added = self._insert(connection, state.issue, due, state.version, version_for)
            connection.execute(update(TriggerRecord).where(TriggerRecord.issue == state.issue)
                               .values(cursor=max(state.cursor, now)))
        return added

    def backfill(self, issue: str, rule: Rule, now: dt.datetime, *,
                 audience: Collection[str] = (),
                 version_for: Callable[[str | None], str] | None = None) -> int:
        """Queue everyone the rule ever applied to (who joined before the trigger went live,
        too) and has not had the issue; returns how many."""
        with self.writer.begin() as connection:
            version = connection.scalar(select(TriggerRecord.version)
                                        .where(TriggerRecord.issue == issue))
            return self._insert(connection, issue, self.due(rule, now, audience), version or "",
                                version_for)

    def count_due(self, issue: str, rule: Rule, now: dt.datetime,
                  audience: Collection[str] = ()) -> int:
        """Subscribers due and not planned yet, plus planned rows not sent yet."""
        state = self.get(issue)
        since = max(state.cursor - LOOKBACK, state.started_at) if state else None
        due = unplanned(issue, self.due(rule, now, audience, since=since))
        with self.store.engine.connect() as connection:
            waiting = connection.scalar(select(func.count()).where(
                Delivery.issue == issue, Delivery.status.in_(("queued", "claimed", "sending"))))
            return (connection.scalar(select(func.count()).select_from(due.subquery())) or 0) \
                + (waiting or 0)

    def due(self, rule: Rule, now: dt.datetime, audience: Collection[str] = (), *,
            since: dt.datetime | None = None) -> Select[Any]:
        """The ids of active subscribers of the audience due by ``now`` (and after ``since``,
        if given: without it, everyone ever due)."""
        query: Any = select(Subscriber.id, Subscriber.language).where(
            Subscriber.status == Status.ACTIVE, self.store.tagged(audience))
        if rule.follows is None:
            if since is not None:
                query = query.where(Subscriber.welcome_at > since, Subscriber.welcome_at <= now)
            return query
        earlier = DELIVERIES.alias("earlier")
        query = query.join(earlier, earlier.c.subscriber_id == Subscriber.id).where(
            earlier.c.issue == rule.follows, earlier.c.status == "sent",
            earlier.c.finished_at <= now - rule.delay)
        if since is not None:
            query = query.where(earlier.c.finished_at > since - rule.delay)
        return query

    def _insert(self, connection: Any, issue: str, due: Select[Any], version: str,
                version_for: Callable[[str | None], str] | None) -> int:
        source = due.with_only_columns(
            Subscriber.id, literal(issue, String(200)), literal("queued", String(16)),
            literal(0, Integer()), version_column(connection, version_for, among=due),
            literal(version[:VERSION_LENGTH], String(VERSION_LENGTH)))
        # SQLAlchemy 2.1 reports an INSERT's row count only when asked to keep it.
        added = connection.execute(self.upsert(DELIVERIES).from_select(
            ["subscriber_id", "issue", "status", "attempts", "language", "version"], source)
            .on_conflict_do_nothing(), execution_options={"preserve_rowcount": True}).rowcount
        added = max(added or 0, 0)
        if added:
            connection.execute(update(Send).where(Send.issue == issue)
                               .values(planned=Send.planned + added))
        return added

    def _set(self, issue: str, **values: Any) -> None:
        with self.writer.begin() as connection:
            connection.execute(update(TriggerRecord).where(TriggerRecord.issue == issue)
                               .values(**values, updated_at=utcnow()))


def unplanned(issue: str, due: Select[Any]) -> Select[Any]:
    """``due`` without the subscribers the issue is planned for already."""
    return due.where(~select(Delivery.id).where(
        Delivery.issue == issue, Delivery.subscriber_id == Subscriber.id).exists())


_COLUMNS = (TriggerRecord.issue, TriggerRecord.rule, TriggerRecord.started_at,
            TriggerRecord.cursor, TriggerRecord.state, TriggerRecord.version,
            TriggerRecord.note)
