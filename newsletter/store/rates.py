"""Sending rates shared by every sender process, on one machine or many, through the database.

One row per rate (``ses``: the SES account's). It holds the rate and ``next_at``: when the
next free send slot is, in seconds since 1970. A sender takes slots in small grants with one
``UPDATE … RETURNING``: ``count`` slots ``1/rate`` apart from ``max(next_at, now)`` on, moving
``next_at`` past them. However many processes draw from it, slots are never closer than
``1/rate``; idle time earns no burst. A process that dies holds nothing back: the slots of its
last grant (a few tens of milliseconds' worth) simply pass.

``now`` is the sender's own clock (``time.time()``), not the database's: senders on one machine
then share one clock exactly, where the database's would reach each of them shifted by a round
trip that varies (at 400/s over SQLite, 426 arrived in one second that way). Senders on several
machines need their clocks synchronised (NTP, chrony): an offset of d seconds can let rate × d
more messages into a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Float, String, func, literal, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.store.models import Base
from newsletter.store.store import Store


class Rate(Base):
    """A rate shared by senders, and the next slot free under it."""

    __tablename__ = "rates"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    per_second: Mapped[float] = mapped_column(Float)
    next_at: Mapped[float] = mapped_column(Float)  # the database clock, seconds since 1970


@dataclass(frozen=True, slots=True)
class Grant:
    """``count`` send slots, the first at ``start`` (seconds since 1970), ``spacing`` apart."""

    start: float
    spacing: float
    count: int


class Rates:
    """Grants of send slots from the shared rates, over a ``Store``'s database."""

    def __init__(self, store: Store):
        self.writer = store.writer
        postgres = store.engine.dialect.name == "postgresql"
        self._later = func.greatest if postgres else func.max
        self._insert = postgresql.insert if postgres else sqlite.insert

    def grant(self, name: str, per_second: float, count: int, now: float) -> Grant:
        """Reserve the next ``count`` slots of rate ``name`` from ``now`` on, ``1/per_second``
        apart (the row keeps the latest caller's ``per_second``, for information)."""
        spacing = 1.0 / per_second
        start = self._later(Rate.next_at, literal(now, Float()))
        statement = (update(Rate).where(Rate.name == name)
                     .values(next_at=start + count * spacing, per_second=per_second)
                     .returning(Rate.next_at))
        with self.writer.begin() as connection:
            row = connection.execute(statement).first()
            if row is None:  # the first grant ever: a sender racing us may create it first
                connection.execute(self._insert(Rate).values(
                    name=name, per_second=per_second, next_at=0.0).on_conflict_do_nothing())
                row = connection.execute(statement).one()
        return Grant(float(row[0]) - count * spacing, spacing, count)

