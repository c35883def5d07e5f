"""The delivery ledger: one row per (issue, subscriber), the memory that makes sends resumable.

Statuses of a delivery (our vocabulary; provider words never reach this table):

    queued    planned, never handed to a transport: safe to send
    claimed   reserved by a running sender, not handed over yet: back to ``queued`` if it stops
    sending   handed to the transport (committed before the request goes out): at most the
              sender's concurrency at any instant
    sent      the transport accepted it (``message_id`` is the provider's id)
    failed    refused for good, or retries ran out (``error`` says why)
    skipped   the subscriber left before their turn came
    unknown   it may or may not have gone out: the provider gave no answer, or its sender died
              while it was ``sending`` (``error`` says which)

A ``sends`` row per issue records the plan; a ``senders`` row per running sender process
carries a heartbeat, so a new sender can tell a dead sender's rows from a live one's: the dead
one's ``claimed`` rows go back to the queue, its ``sending`` rows become ``unknown``. Claims use
``FOR UPDATE SKIP LOCKED`` on PostgreSQL and ``BEGIN IMMEDIATE`` on SQLite, so several senders
can share one issue on either; planning is an insert that tolerates a concurrent twin.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.store.models import Base, JSONDocument, Status, Subscriber, UTCDateTime, utcnow
from newsletter.store.models import first_name as first_name_of
from newsletter.store.store import Store

DELIVERY_STATUSES = ("queued", "claimed", "sending", "sent", "failed", "skipped", "unknown")
IN_HAND = ("claimed", "sending")  # a sender's own rows: only these does it record
STALE_AFTER = dt.timedelta(seconds=60)  # a sender silent this long is taken for dead
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only
_OWN: set[str] = set()  # the senders this process runs (a pid alone can't tell them apart)


class Send(Base):
    """An issue's send: what was planned, from which rendered content, and how it stands."""

    __tablename__ = "sends"

    issue: Mapped[str] = mapped_column(String(200), primary_key=True)
    subject: Mapped[str] = mapped_column(String(998))
    content_hash: Mapped[str] = mapped_column(String(64))
    audience: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    planned: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(String(500), default="")  # why it is paused, or ""


class Delivery(Base):
    """One issue for one subscriber."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue", "subscriber_id"),
        Index("ix_deliveries_claim", "issue", "status", "id"),
        # Messages sent per minute, counted from the index alone (reports; migration 0009).
        Index("ix_deliveries_report", "issue", "status", "finished_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    issue: Mapped[str] = mapped_column(ForeignKey("sends.issue", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"),
                                               index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(String(200), index=True)
    error: Mapped[str | None] = mapped_column(String(500))
    sender: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(35))  # the version planned for them
    # Of a triggered issue, edited while live: the content hash (its first 16 characters) of
    # the version this row got, or will get if still queued.
    version: Mapped[str | None] = mapped_column(String(16))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


DELIVERIES = cast(Table, Delivery.__table__)


class Sender(Base):
    """A running sender process and its last sign of life."""

    __tablename__ = "senders"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery handed to this sender, with what personalising it needs."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    first_name: str
    attributes: dict[str, Any]
    language: str | None = None  # of the version to send; None: the original


@dataclass(frozen=True, slots=True)
class SentIssue:
    """An issue that has a send (sent, or being sent): what the web archive lists."""

    issue: str
    subject: str
    sent_at: dt.datetime  # when its send was planned


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a claimed delivery: sent, failed, unknown, or back to queued (never
    handed over)."""

    delivery_id: int
    status: str
    message_id: str | None = None
    error: str | None = None
    attempts: int = 0


class Ledger:
    """The ledger queries, over a ``Store``'s database."""

    def __init__(self, store: Store):
        self.store = store
        self.writer = store.writer
        self.postgres = store.engine.dialect.name == "postgresql"

    # ------------------------------------------------------------ planning

    def send(self, issue: str) -> Send | None:
        with self.store.engine.connect() as connection:
            row = connection.execute(select(Send).where(Send.issue == issue)).first()
        return Send(**row._mapping) if row else None

    def is_sent(self, issue: str) -> bool:
        """True once ``issue`` has a send (sent, or being sent)."""
        with self.store.engine.connect() as connection:
            return connection.scalar(select(Send.issue).where(Send.issue == issue)) is not None

    def sent_issues(self) -> list[SentIssue]:
        """Every issue that has a send, newest first."""
        query = select(Send.issue, Send.subject, Send.created_at).order_by(
            Send.created_at.desc(), Send.issue.desc())
        with self.store.engine.connect() as connection:
            return [SentIssue(*row) for row in connection.execute(query)]

    def plan(self, issue: str, subject: str, content_hash: str,
             audience: Collection[str] = (),
             version_for: Callable[[str | None], str] | None = None) -> tuple[int, bool]:
        """One queued row per active subscriber of the audience, once. Returns (rows, new).

        ``version_for`` maps a subscriber's language (None: not known) to the language of the
        version they get; it is asked once per language on the list, and each row records its
        answer, so that a resumed send (or another worker) sends the same version. Without it
        every row reads the original.

        Safe to race: of several senders planning at once, one inserts the ``sends`` row and
        its deliveries; the others' inserts wait for it (PostgreSQL's unique index, SQLite's
        write lock), do nothing and read what it planned."""
        upsert = postgresql.insert if self.postgres else sqlite.insert
        with self.writer.begin() as connection:
            created = connection.execute(upsert(Send).values(
                issue=issue, subject=subject, content_hash=content_hash, audience=list(audience),
                planned=0, created_at=utcnow(), note="").on_conflict_do_nothing()
                .returning(Send.issue)).first()
            if created is None:
                planned = connection.scalar(select(Send.planned).where(Send.issue == issue))
                return planned or 0, False
            source = self.store.audience_ids(audience).with_only_columns(
                Subscriber.id, literal(issue, String(200)), literal("queued", String(16)),
                literal(0, Integer()), version_column(connection, version_for))
            connection.execute(upsert(DELIVERIES).from_select(
                ["subscriber_id", "issue", "status", "attempts", "language"], source)
                .on_conflict_do_nothing())
            planned = connection.scalar(select(func.count()).where(Delivery.issue == issue)) or 0
            connection.execute(update(Send).where(Send.issue == issue).values(planned=planned))
        return planned, True

    # ------------------------------------------------------------ senders

    def register_sender(self) -> str:
        sender = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        _OWN.add(sender)
        with self.writer.begin() as connection:
            connection.execute(insert(Sender).values(
                id=sender, host=socket.gethostname(), pid=os.getpid(), heartbeat_at=utcnow()))
        return sender

    def heartbeat(self, sender: str) -> None:
        with self.writer.begin() as connection:
            connection.execute(update(Sender).where(Sender.id == sender)
                               .values(heartbeat_at=utcnow()))

    def unregister_sender(self, sender: str) -> None:
        _OWN.discard(sender)
        with self.writer.begin() as connection:
            connection.execute(delete(Sender).where(Sender.id == sender))

    def waiting(self, issue: str) -> bool:
        """Whether the send has rows not sent yet (queued, or held by some sender): one
        index probe, for the scheduler's passes over triggered issues."""
        with self.store.engine.connect() as connection:
            return connection.scalar(select(Delivery.id).where(
                Delivery.issue == issue, Delivery.status.in_(("queued", *IN_HAND)))
                .limit(1)) is not None

    def pending(self) -> list[str]:
        """The issues whose sends have rows left (queued, or held by some sender) and are not
        paused: what a worker joins."""
        with self.store.engine.connect() as connection:
            return list(connection.execute(
                select(Delivery.issue).distinct().join(Send, Send.issue == Delivery.issue)
                .where(Send.note == "", Delivery.status.in_(("queued", *IN_HAND)))
                .order_by(Delivery.issue)).scalars())

    def pause(self, issue: str, reason: str) -> None:
        """Keep workers off a send that stopped for a reason someone must look at."""
        with self.writer.begin() as connection:
            connection.execute(update(Send).where(Send.issue == issue)
                               .values(note=f"paused: {reason}"[:500]))

    def resume(self, issue: str) -> None:
        with self.writer.begin() as connection:
            connection.execute(update(Send).where(Send.issue == issue).values(note=""))

    def recover(self, issue: str) -> tuple[int, int]:
        """Settle the rows of dead senders: ``claimed`` ones go back to the queue, ``sending``
        ones (perhaps handed over) become ``unknown``. Returns (unknown, requeued)."""
        with self.writer.begin() as connection:
            claimants = connection.execute(select(Delivery.sender).distinct().where(
                Delivery.issue == issue, Delivery.status.in_(IN_HAND))).scalars().all()
            known = {row.id: row for row in connection.execute(select(
                Sender.id, Sender.host, Sender.pid, Sender.heartbeat_at).where(
                Sender.id.in_(claimants)))}
            dead = [c for c in claimants if c not in known or not _alive(*known[c])]
            if not dead:
                return 0, 0
            connection.execute(delete(Sender).where(Sender.id.in_(dead)))
            theirs = (Delivery.issue == issue, Delivery.sender.in_(dead))
            requeued = connection.execute(update(Delivery).where(
                *theirs, Delivery.status == "claimed").values(
                status="queued", sender=None, claimed_at=None)).rowcount
            unknown = connection.execute(update(Delivery).where(
                *theirs, Delivery.status == "sending").values(
                status="unknown", error="in flight when its sender stopped", finished_at=utcnow()))
            return unknown.rowcount, requeued

    # ------------------------------------------------------------ dispatching

    def advance(self, issue: str, sender: str, outcomes: Collection[Outcome] = (),
                hand_over: Collection[int] = (),
                claim: int = 0) -> tuple[list[int], list[Claim], int]:
        """A sender's one transaction per turn: record ``outcomes``, mark the ``hand_over``
        rows ``sending`` (a row goes to the transport only after this commits) and claim up to
        ``claim`` more. Returns (the rows handed over, the new claims, how many were skipped)."""
        with self.writer.begin() as connection:
            self._record(connection, outcomes)
            handed = self._hand_over(connection, sender, hand_over)
            claims, skipped = self._claim(connection, issue, sender, claim)
        return handed, claims, skipped

    def claim(self, issue: str, sender: str, limit: int) -> tuple[list[Claim], int]:
        """Take up to ``limit`` queued rows in id order and mark them ``claimed``.

        Rows whose subscriber is no longer active become ``skipped`` in the same transaction.
        Returns (claims, skipped)."""
        with self.writer.begin() as connection:
            return self._claim(connection, issue, sender, limit)

    def record(self, outcomes: Collection[Outcome]) -> None:
        """Store results; only rows a sender holds change (a guard against double records)."""
        with self.writer.begin() as connection:
            self._record(connection, outcomes)

    def _claim(self, connection: Connection, issue: str, sender: str,
               limit: int) -> tuple[list[Claim], int]:
        if limit <= 0:
            return [], 0
        query = (select(Delivery.id, Delivery.subscriber_id, Subscriber.email, Subscriber.name,
                        Subscriber.attributes, Subscriber.status, Delivery.language)
                 .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                 .where(Delivery.issue == issue, Delivery.status == "queued")
                 .order_by(Delivery.id).limit(limit))
        if self.postgres:
            query = query.with_for_update(skip_locked=True, of=Delivery)
        now = utcnow()
        rows = connection.execute(query).all()
        active = [r for r in rows if r.status == Status.ACTIVE]
        gone = [r.id for r in rows if r.status != Status.ACTIVE]
        if active:
            connection.execute(update(Delivery).where(Delivery.id.in_([r.id for r in active]))
                               .values(status="claimed", sender=sender, claimed_at=now))
        if gone:
            connection.execute(update(Delivery).where(Delivery.id.in_(gone)).values(
                status="skipped", error="the subscriber left before sending", finished_at=now))
        claims = [Claim(r.id, r.subscriber_id, r.email, r.name,
                        first_name_of(r.name, r.attributes or {}), r.attributes or {},
                        r.language)
                  for r in active]
        return claims, len(gone)

    @staticmethod
    def _hand_over(connection: Connection, sender: str, ids: Collection[int]) -> list[int]:
        """Mark this sender's claimed rows ``sending``; returns those it still held (another
        sender that took this one for dead may have put them back in the queue)."""
        if not ids:
            return []
        return list(connection.execute(
            update(Delivery).where(Delivery.id.in_(list(ids)), Delivery.status == "claimed",
                                   Delivery.sender == sender)
            .values(status="sending").returning(Delivery.id)).scalars())

    @staticmethod
    def _record(connection: Connection, outcomes: Collection[Outcome]) -> None:
        params = [{"b_id": o.delivery_id, "b_status": o.status, "b_message_id": o.message_id,
                   "b_error": o.error and o.error[:500], "b_attempts": o.attempts}
                  for o in outcomes]
        if not params:
            return
        statement = (update(DELIVERIES)
                     .where(DELIVERIES.c.id == bindparam("b_id"),
                            or_(*(DELIVERIES.c.status == held for held in IN_HAND)))
                     .values(status=bindparam("b_status"), message_id=bindparam("b_message_id"),
                             error=bindparam("b_error"),
                             attempts=DELIVERIES.c.attempts + bindparam("b_attempts"),
                             finished_at=utcnow()))
        connection.execute(statement, params)

    def requeue(self, issue: str, statuses: Collection[str]) -> int:
        """Put ``unknown`` and/or ``failed`` rows back in the queue (explicit retries)."""
        with self.writer.begin() as connection:
            result = connection.execute(update(Delivery).where(
                Delivery.issue == issue, Delivery.status.in_(list(statuses))).values(
                status="queued", error=None, sender=None, finished_at=None))
        return result.rowcount

    # ------------------------------------------------------------ reporting

    def counts(self, issue: str) -> dict[str, int]:
        with self.store.engine.connect() as connection:
            rows = connection.execute(select(Delivery.status, func.count()).where(
                Delivery.issue == issue).group_by(Delivery.status)).all()
        return {status: 0 for status in DELIVERY_STATUSES} | {s: n for s, n in rows}

    def languages(self, issue: str) -> dict[str, dict[str, int]]:
        """Counts per status of each version sent ("" for rows planned without a language)."""
        return self._counts_by(Delivery.language, issue)

    def versions(self, issue: str) -> dict[str, dict[str, int]]:
        """Counts per status of each version (content hash) of a triggered issue ("" for
        rows of an issue sent once)."""
        return self._counts_by(Delivery.version, issue)

    def _counts_by(self, column: Any, issue: str) -> dict[str, dict[str, int]]:
        with self.store.engine.connect() as connection:
            rows = connection.execute(select(column, Delivery.status, func.count())
                                      .where(Delivery.issue == issue)
                                      .group_by(column, Delivery.status)).all()
        found: dict[str, dict[str, int]] = {}
        for value, status, count in rows:
            found.setdefault(value or "", {})[status] = count
        return dict(sorted(found.items()))

    def errors(self, issue: str, status: str | None = None,
               limit: int = 5) -> list[tuple[str, int]]:
        """The most frequent errors of a send (of its rows in ``status``), with their counts."""
        query = select(Delivery.error, func.count().label("n")).where(
            Delivery.issue == issue, Delivery.error.is_not(None))
        if status is not None:
            query = query.where(Delivery.status == status)
        with self.store.engine.connect() as connection:
            rows = connection.execute(query.group_by(Delivery.error)
                                      .order_by(func.count().desc()).limit(limit)).all()
        return [(error or "", n) for error, n in rows]

    def timing(self, issue: str) -> dict[str, Any]:
        with self.store.engine.connect() as connection:
            first, last = connection.execute(select(
                func.min(Delivery.claimed_at), func.max(Delivery.finished_at)).where(
                Delivery.issue == issue)).one()
        return {"first_claimed": first, "last_finished": last}


def version_column(connection: Connection,
                   version_for: Callable[[str | None], str] | None,
                   among: Select[Any] | None = None) -> Any:
    """The language of the version each subscriber gets, as a column of a SELECT over
    subscribers: ``version_for`` asked once per language spoken on the list (or by the
    subscribers ``among`` selects, a query with a ``language`` column), one CASE. NULL
    without it (every row reads the original)."""
    if version_for is None:
        return literal(None, String(35))
    spoken_by = (select(Subscriber.language) if among is None else
                 select(among.subquery().c.language))
    spoken = connection.execute(spoken_by.distinct()).scalars()
    versions = {language: version_for(language) for language in spoken if language}
    version = literal(version_for(None), String(35))
    return case(versions, value=Subscriber.language, else_=version) if versions else version


def _alive(sender: str, host: str, pid: int, heartbeat: dt.datetime) -> bool:
    """A sender is alive while it beats; on this host, only while its process exists too
    (which tells a death at once, not a minute later)."""
    if heartbeat.tzinfo is None:
        heartbeat = heartbeat.replace(tzinfo=dt.UTC)
    if utcnow() - heartbeat >= STALE_AFTER:
        return False
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return sender in _OWN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
