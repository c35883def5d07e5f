"""Email events as we keep them: the vocabulary, one row per event, and what each one does.

Event types (our words: ``feedback.events`` translates SES's, and nothing here knows them):

    sent              the provider accepted the message for delivery
    delivered         the recipient's mail server accepted it
    delivery_delayed  the provider keeps trying; nothing to do yet
    soft_bounced      a transient bounce (mailbox full, server down): counted; after
                      ``soft_bounce_limit`` of them in a row the subscriber becomes ``bounced``
    bounced           a permanent bounce: the subscriber becomes ``bounced`` (never mailed again)
    complained        the recipient marked it as spam: the subscriber becomes ``complained``
    rejected          the provider refused to send it (e.g. a virus): recorded only
    opened, clicked   engagement, for ``newsletter status``
    unknown           anything else a provider sends: recorded, changes nothing

Every event is recorded against the delivery whose provider message id it names. An event whose
message id matches no delivery (a proof, a message sent by another tool, an erased subscriber's)
is recorded as ``unmatched`` and changes nothing.

Idempotent: ``event_key`` is unique, so a redelivered event is recognised and applied once;
recording it and changing the subscriber happen in one transaction, so a crash between the two
cannot lose the change. Rows hold no address, IP or user agent: when a subscriber is erased, the
database sets their rows' ``subscriber_id`` and ``delivery_id`` to NULL and what remains (type,
time, issue, provider message id) identifies nobody, yet still counts in the issue's summary.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Table,
    distinct,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from newsletter.addresses import address_key
from newsletter.errors import DatabaseError, InvalidAddress
from newsletter.store.ledger import Delivery, Id
from newsletter.store.models import Base, JSONDocument, Status, Subscriber, UTCDateTime, utcnow
from newsletter.store.store import Store, change_status

KEY_LENGTH = 64  # a SHA-256 in hex


class EventType(StrEnum):
    """What happened to a message (see the module docstring for what each one does)."""

    SENT = "sent"
    DELIVERED = "delivered"
    DELIVERY_DELAYED = "delivery_delayed"
    SOFT_BOUNCED = "soft_bounced"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    REJECTED = "rejected"
    OPENED = "opened"
    CLICKED = "clicked"
    UNKNOWN = "unknown"


class Applied(StrEnum):
    """What recording an event came to."""

    APPLIED = "applied"  # new, and recorded against its delivery
    UNMATCHED = "unmatched"  # new, but no delivery has its message id: recorded, harmless
    DUPLICATE = "duplicate"  # seen before: nothing changed


# The counts `newsletter status` shows, in its order (unsubscribed comes from the subscribers).
SUMMARY = ("delivered", "bounced", "soft_bounced", "complained", "rejected", "unsubscribed",
           "opened", "clicked")


@dataclass(frozen=True)
class Event:
    """One event in our words. ``key`` identifies it across redeliveries and routes (webhook,
    queue, file); ``message_id`` is the provider's id of the message, as in the ledger."""

    key: str
    type: EventType
    message_id: str | None
    occurred_at: dt.datetime
    detail: Mapping[str, Any] = field(default_factory=dict)
    # (issue, recipient address) of the message, where the provider says: it settles an
    # ``unknown`` delivery, whose message id never came back. Used for matching, never stored.
    sent_as: tuple[str, str] | None = None


class EventRecord(Base):
    """An event as stored."""

    __tablename__ = "events"
    __table_args__ = (
        # An issue's figures, counted from the indexes alone (reports; see migration 0009).
        Index("ix_events_report", "issue", "type", "message_id", "subscriber_id"),
        Index("ix_events_timeline", "issue", "occurred_at", "type"),
        Index("ix_events_subscriber_id_type", "subscriber_id", "type"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    type: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    message_id: Mapped[str | None] = mapped_column(String(200), index=True)
    # Copied from the delivery, so the issue's counts survive the subscriber's erasure.
    issue: Mapped[str | None] = mapped_column(String(200))
    delivery_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("deliveries.id", ondelete="SET NULL"), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


EVENTS = cast(Table, EventRecord.__table__)


@dataclass(frozen=True, slots=True)
class _Target:
    delivery_id: int
    subscriber_id: int
    issue: str


class EventLog:
    """Records events and applies their consequences, over a ``Store``'s database."""

    def __init__(self, store: Store, *, soft_bounce_limit: int = 3):
        self.store = store
        self.soft_bounce_limit = soft_bounce_limit
        self.postgres = store.engine.dialect.name == "postgresql"

    def apply(self, event: Event) -> Applied:
        """Record ``event`` once and change its subscriber's status if it calls for that.
        DatabaseError if the database fails: nothing is recorded, so it can come again."""
        try:
            return self._apply(event)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise DatabaseError(f"could not record a {event.type} event: {reason}") from error

    def _apply(self, event: Event) -> Applied:
        with Session(self.store.writer) as session, session.begin():
            target = self._target(session, event.message_id) or self._settle(session, event)
            # Locked first, so that two events of one subscriber are counted one after the other.
            subscriber = None
            if target is not None:
                subscriber = session.get(Subscriber, target.subscriber_id, with_for_update=True)
                target = target if subscriber is not None else None
            if not self._insert(session, event, target):
                return Applied.DUPLICATE
            if subscriber is not None and target is not None:
                self._consequence(session, event, subscriber, target.issue)
        return Applied.APPLIED if target else Applied.UNMATCHED

    def summary(self, issue: str) -> dict[str, int]:
        """Counts for ``newsletter status``: messages per event type (an open or click counts
        once per message, however often it happened) and subscribers who left from this issue."""
        count = func.count(distinct(EventRecord.message_id))
        with self.store.engine.connect() as connection:
            rows = connection.execute(select(EventRecord.type, count).where(
                EventRecord.issue == issue).group_by(EventRecord.type)).all()
            unsubscribed = connection.scalar(select(func.count()).select_from(Subscriber).where(
                Subscriber.status_issue == issue, Subscriber.status == Status.UNSUBSCRIBED))
        counts = {str(kind): n for kind, n in rows} | {"unsubscribed": unsubscribed or 0}
        return {name: counts.get(name, 0) for name in SUMMARY}

    def history(self, message_id: str) -> list[tuple[EventType, dt.datetime]]:
        """The events recorded for one message, oldest first."""
        with self.store.engine.connect() as connection:
            rows = connection.execute(select(EventRecord.type, EventRecord.occurred_at).where(
                EventRecord.message_id == message_id).order_by(EventRecord.occurred_at)).all()
        return [(EventType(kind), at) for kind, at in rows]

    # ------------------------------------------------------------ steps

    def _target(self, session: Session, message_id: str | None) -> _Target | None:
        if not message_id:
            return None
        row = session.execute(select(Delivery.id, Delivery.subscriber_id, Delivery.issue).where(
            Delivery.message_id == message_id).limit(1)).first()
        return _Target(*row) if row else None

    def _settle(self, session: Session, event: Event) -> _Target | None:
        """The ``unknown`` delivery this event proves went out (or, for a rejection, was
        refused): it takes the event's message id and status, so the message counts as sent."""
        if event.sent_as is None or not event.message_id:
            return None
        issue, recipient = event.sent_as
        try:
            key = address_key(recipient)
        except InvalidAddress:
            return None
        row = session.execute(
            select(Delivery.id, Delivery.subscriber_id, Delivery.issue)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue == issue, Delivery.status == "unknown",
                   Subscriber.email_key == key).limit(1)).first()
        if row is None:
            return None
        rejected = event.type is EventType.REJECTED
        session.execute(update(Delivery).where(Delivery.id == row.id).values(
            status="failed" if rejected else "sent", message_id=event.message_id,
            error="rejected by the provider after an unanswered request" if rejected else None))
        return _Target(*row)

    def _insert(self, session: Session, event: Event, target: _Target | None) -> bool:
        """Insert the row unless its key is known; True if it was new."""
        statement = (postgresql.insert if self.postgres else sqlite.insert)(EVENTS).values(
            event_key=event.key, type=str(event.type), occurred_at=event.occurred_at,
            received_at=utcnow(), message_id=event.message_id, detail=dict(event.detail),
            issue=target and target.issue, delivery_id=target and target.delivery_id,
            subscriber_id=target and target.subscriber_id,
        ).on_conflict_do_nothing(index_elements=["event_key"]).returning(EVENTS.c.id)
        return session.execute(statement).first() is not None

    def _consequence(self, session: Session, event: Event, subscriber: Subscriber,
                     issue: str) -> None:
        """Suppress the subscriber for a hard bounce, a complaint or too many soft bounces.
        Someone who already left stays as they are (their reason and issue are kept)."""
        if subscriber.status.suppressed:
            return
        if event.type is EventType.BOUNCED:
            change_status(subscriber, Status.BOUNCED, reason="hard bounce", issue=issue)
        elif event.type is EventType.COMPLAINED:
            change_status(subscriber, Status.COMPLAINED, reason="spam complaint", issue=issue)
        elif event.type is EventType.SOFT_BOUNCED:
            bounces = self._soft_bounces(session, subscriber)
            if bounces >= self.soft_bounce_limit:
                change_status(subscriber, Status.BOUNCED,
                               reason=f"{bounces} soft bounces in a row", issue=issue)

    def _soft_bounces(self, session: Session, subscriber: Subscriber) -> int:
        """Messages that soft-bounced since the subscriber's last delivery (or since they joined
        or came back): a mailbox full for one issue is forgiven once mail gets through again."""
        mine = EventRecord.subscriber_id == subscriber.id
        last_delivery = session.scalar(select(func.max(EventRecord.occurred_at)).where(
            mine, EventRecord.type == EventType.DELIVERED))
        since = max(filter(None, (last_delivery, subscriber.status_changed_at)))
        return session.scalar(select(func.count(distinct(EventRecord.delivery_id))).where(
            mine, EventRecord.type == EventType.SOFT_BOUNCED,
            EventRecord.occurred_at > since)) or 0
