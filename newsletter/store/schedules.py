"""Scheduled issues and the scheduler lease: the state the ``schedule`` package does not keep.

A schedule row pins an issue to an instant (stored in UTC, with the zone it was given in for
display) and to the hash of its rendered content, so an issue edited after scheduling is held
back instead of sent. States:

    scheduled   waiting for its time
    sending     its time came; the send engine is (or was, before a crash) working on it
    sent        the send completed
    missed      its time passed longer ago than the grace period while no scheduler ran
    held        not sent: edited after scheduling, failing ``newsletter check``, or the last
                issue's complaint rate crossed SES's pause threshold and nobody confirmed
                the risk (``risk_confirmed_at``)

The lease is one row that at most one scheduler holds at a time; a holder renews it on every
pass, and a dead holder's lease expires, so another scheduler takes over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import String, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.store.models import Base, UTCDateTime, utcnow
from newsletter.store.store import Store

ACTIVE_STATES = ("scheduled", "sending")
LEASE = "scheduler"


class Schedule(Base):
    __tablename__ = "schedules"

    issue: Mapped[str] = mapped_column(String(200), primary_key=True)
    send_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    zone: Mapped[str] = mapped_column(String(64))  # IANA name or "+03:00", for display
    content_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="scheduled")
    note: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Someone confirmed sending it although the last issue's complaint rate crossed SES's
    # pause threshold (``schedule ISSUE --confirm-risk``); None: held if it did.
    risk_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Lease(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class ScheduleRow:
    issue: str
    send_at: dt.datetime
    zone: str
    content_hash: str
    state: str
    note: str
    risk_confirmed_at: dt.datetime | None = None


class Schedules:
    """Queries on the schedules and the lease."""

    def __init__(self, store: Store):
        self.store = store
        self.postgres = store.engine.dialect.name == "postgresql"

    def put(self, issue: str, send_at: dt.datetime, zone: str, content_hash: str,
            risk_confirmed: bool = False) -> None:
        """Schedule (or re-schedule) an issue; a re-schedule also releases a held issue, and
        forgets a confirmed risk unless ``risk_confirmed``."""
        now = utcnow()
        values = {"issue": issue, "send_at": send_at, "zone": zone,
                  "content_hash": content_hash, "state": "scheduled", "note": "",
                  "updated_at": now, "risk_confirmed_at": now if risk_confirmed else None}
        upsert = (postgresql.insert if self.postgres else sqlite.insert)(Schedule).values(values)
        with self.store.writer.begin() as connection:
            connection.execute(upsert.on_conflict_do_update(
                index_elements=["issue"], set_={k: v for k, v in values.items() if k != "issue"}))

    def confirm_risk(self, issue: str) -> bool:
        """Let a scheduled or held issue go out despite the last issue's rates: a held one is
        scheduled again, at its time. False if the issue is not scheduled or held."""
        with self.store.writer.begin() as connection:
            changed = connection.execute(update(Schedule).where(
                Schedule.issue == issue, Schedule.state.in_(("scheduled", "held"))).values(
                state="scheduled", note="", risk_confirmed_at=utcnow(), updated_at=utcnow()))
        return bool(changed.rowcount)

    def remove(self, issue: str) -> bool:
        with self.store.writer.begin() as connection:
            return bool(connection.execute(delete(Schedule).where(
                Schedule.issue == issue, Schedule.state != "sending")).rowcount)

    def get(self, issue: str) -> ScheduleRow | None:
        with self.store.engine.connect() as connection:
            row = connection.execute(select(*_COLUMNS).where(Schedule.issue == issue)).first()
        return ScheduleRow(*row) if row else None

    def all(self) -> list[ScheduleRow]:
        with self.store.engine.connect() as connection:
            rows = connection.execute(select(*_COLUMNS).order_by(Schedule.send_at)).all()
        return [ScheduleRow(*row) for row in rows]

    def due(self, now: dt.datetime) -> list[ScheduleRow]:
        """Issues whose time has come and that are waiting or were interrupted mid-send."""
        with self.store.engine.connect() as connection:
            rows = connection.execute(select(*_COLUMNS).where(
                Schedule.state.in_(ACTIVE_STATES), Schedule.send_at <= now)
                .order_by(Schedule.send_at)).all()
        return [ScheduleRow(*row) for row in rows]

    def mark(self, issue: str, state: str, note: str = "") -> None:
        with self.store.writer.begin() as connection:
            connection.execute(update(Schedule).where(Schedule.issue == issue).values(
                state=state, note=note[:500], updated_at=utcnow()))

    # ------------------------------------------------------------ the lease

    def acquire(self, holder: str, ttl: dt.timedelta, now: dt.datetime) -> bool:
        """Take or renew the lease; False while another holder's lease is unexpired."""
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
        claim = (postgresql.insert if self.postgres else sqlite.insert)(Lease).values(
            name=LEASE, holder=holder, expires_at=now + ttl).on_conflict_do_nothing()
        take = (update(Lease).where(Lease.name == LEASE,
                                    (Lease.holder == holder) | (Lease.expires_at < now))
                .values(holder=holder, expires_at=now + ttl))
        with self.store.writer.begin() as connection:
            if connection.execute(claim.returning(Lease.name)).first():
                return True
            return connection.execute(take.returning(Lease.name)).first() is not None

    def release(self, holder: str) -> None:
        with self.store.writer.begin() as connection:
            connection.execute(delete(Lease).where(Lease.name == LEASE, Lease.holder == holder))

    def lease(self) -> tuple[str, dt.datetime] | None:
        with self.store.engine.connect() as connection:
            row = connection.execute(select(Lease.holder, Lease.expires_at).where(
                Lease.name == LEASE)).first()
        return (row[0], row[1]) if row else None


_COLUMNS = (Schedule.issue, Schedule.send_at, Schedule.zone, Schedule.content_hash,
            Schedule.state, Schedule.note, Schedule.risk_confirmed_at)
