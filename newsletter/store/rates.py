"""Sending rates shared by every sender process, on one machine or many, through the database.

One row per rate (``ses``: the SES account's). It holds the rate and ``next_at``: when, by the
database's clock, the next free send slot is. A sender takes slots in small grants with one
``UPDATE … RETURNING``: ``count`` slots ``1/rate`` apart from ``max(next_at, now)`` on, moving
``next_at`` past them. However many processes draw from it, slots are never closer than
``1/rate``; idle time earns no burst. A process that dies holds nothing back: the slots of its
last grant (a few tens of milliseconds' worth) simply pass.

A grant says "your first slot is ``delay`` seconds from now", in the database's own clock, so
the senders' machines never need to agree on the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, String, func, literal_column, update
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
    """``count`` send slots, the first ``delay`` seconds after the grant, ``spacing`` apart."""

    delay: float
    spacing: float
    count: int


class Rates:
    """Grants of send slots from the shared rates, over a ``Store``'s database."""

    def __init__(self, store: Store):
        self.writer = store.writer
        postgres = store.engine.dialect.name == "postgresql"
        # The database's clock, in seconds since 1970; fixed for the statement on both.
        self._now: Any = (func.extract("epoch", func.statement_timestamp()) if postgres else
                          literal_column("((julianday('now') - 2440587.5) * 86400.0)"))
        self._later = func.greatest if postgres else func.max
        self._insert = postgresql.insert if postgres else sqlite.insert

    def grant(self, name: str, per_second: float, count: int) -> Grant:
        """Reserve the next ``count`` slots of rate ``name``, ``1/per_second`` apart (the row
        keeps the latest caller's ``per_second``, for information)."""
        spacing = 1.0 / per_second
        start = self._later(Rate.next_at, self._now)
        statement = (update(Rate).where(Rate.name == name)
                     .values(next_at=start + count * spacing, per_second=per_second)
                     .returning(Rate.next_at, self._now))
        with self.writer.begin() as connection:
            row = connection.execute(statement).first()
            if row is None:  # the first grant ever: a sender racing us may create it first
                connection.execute(self._insert(Rate).values(
                    name=name, per_second=per_second, next_at=0.0).on_conflict_do_nothing())
                row = connection.execute(statement).one()
        next_at, now = float(row[0]), float(row[1])
        return Grant(max(0.0, next_at - count * spacing - now), spacing, count)

