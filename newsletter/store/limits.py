"""Token buckets shared by every ``newsletter serve`` process, on one machine or many.

The web app's rate limits (sign-ups per client address, confirmation emails per address) must
hold however many processes answer: one row per bucket, in the database all of them share.

A bucket is one number, ``full_at``: when, by the database's clock, it will be full again
("generic cell rate algorithm": the same token bucket, kept as a time). With ``interval`` =
1/rate and room for ``burst`` attempts, an attempt at ``now`` is allowed when
``max(full_at, now) + interval <= now + burst × interval`` and then moves ``full_at`` to the
left-hand side; a refused attempt takes nothing. A missing row is a full bucket, so
the first attempt inserts one. All of it is one statement, ``INSERT … ON CONFLICT DO UPDATE …
RETURNING`` (PostgreSQL; SQLite ≥ 3.35), atomic under any number of writers. ``refused``
counts the attempts refused in a row (0: the last one was allowed): RETURNING shows only the
new row, and that is how it tells a refusal from an allowed attempt that filled the bucket.
The database's clock decides, so the servers' machines never need to agree on the time.

Keys are never addresses in clear: ``<scope>:`` and 128 bits of HMAC-SHA256 under the store's
pepper (see store.suppression), with a label of their own so that no key ever equals the
suppression hash of the same address.

Bounded: a row whose ``full_at`` has passed is the same as no row, so deleting it changes no
decision; any process may delete such rows at any moment without coordination. Each
``Buckets`` does so after every ``cleanup_every`` attempts it makes (one indexed
``DELETE … WHERE full_at <= now``, in its own short transaction). The table thus holds the
buckets used within their last ``burst × interval`` (20 minutes per client, 30 per address
with the web app's limits), plus at most ``cleanup_every`` rows per process since its last
clean-up. Opportunistic rather than a timer thread: the table grows only through attempts, so
attempts are what trigger the clean-up, and an idle server has nothing to do.
"""

from __future__ import annotations

import hmac
import itertools
import threading
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    bindparam,
    case,
    delete,
    func,
    literal,
    literal_column,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.store.models import Base
from newsletter.store.store import Store

CLEANUP_EVERY = 100  # attempts per process between two clean-ups
SLACK = 1e-3  # seconds: sums of intervals in floating point may miss the limit by a hair
_LABEL = b"newsletter.web.limits\x00"  # keeps these hashes apart from the suppression hashes


class Bucket(Base):
    """One rate-limit bucket: when it is full again, and the attempts refused in a row."""

    __tablename__ = "web_limits"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # scope:keyed hash
    full_at: Mapped[float] = mapped_column(Float, index=True)  # database clock, s since 1970
    refused: Mapped[int] = mapped_column(Integer)


class Buckets:
    """Attempts against shared token buckets, over a ``Store``'s database. Thread-safe."""

    def __init__(self, store: Store, *, cleanup_every: int = CLEANUP_EVERY):
        self.store, self.cleanup_every = store, cleanup_every
        postgres = store.engine.dialect.name == "postgresql"
        # The database's clock, in seconds since 1970; fixed for the statement on both.
        self._clock: Any = (func.extract("epoch", func.statement_timestamp()) if postgres else
                            literal_column("((julianday('now') - 2440587.5) * 86400.0)"))
        self._later = func.greatest if postgres else func.max
        self._insert = postgresql.insert if postgres else sqlite.insert
        self._statements: dict[bool, tuple[Any, Any]] = {}
        self._attempts = itertools.count(1)
        self._lock = threading.Lock()

    def key(self, scope: str, value: str) -> str:
        """The row key of ``value``'s bucket in ``scope``: no address in clear."""
        message = _LABEL + scope.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return f"{scope}:{hmac.digest(self.store.pepper, message, 'sha256')[:16].hex()}"

    def take(self, scope: str, value: str, *, burst: int, per_hour: float,
             now: float | None = None) -> float:
        """One attempt from ``value``'s bucket in ``scope`` (``burst`` at once, ``per_hour``
        sustained): 0.0 if it was allowed, else the seconds until one will be (and nothing
        taken). ``now`` replaces the database's clock (tests)."""
        if burst < 1 or per_hour <= 0:
            raise ValueError(f"a bucket needs burst >= 1 and per_hour > 0, not {burst}, "
                             f"{per_hour}")
        interval = 3600.0 / per_hour
        upsert, _ = self._prepared(now is not None)
        values = {"b_key": self.key(scope, value), "b_interval": interval,
                  "b_window": burst * interval + SLACK, **_given(now)}
        with self.store.writer.begin() as connection:
            full_at, refused, clock = connection.execute(upsert, values).one()
        if next(self._attempts) % self.cleanup_every == 0:
            self.cleanup(now)
        if not refused:
            return 0.0
        # Allowed again once full_at - clock <= (burst - 1) × interval.
        return max(float(full_at) - float(clock) - (burst - 1) * interval, SLACK)

    def cleanup(self, now: float | None = None) -> int:
        """Delete the buckets that are full again (as good as absent); returns how many."""
        _, remove = self._prepared(now is not None)
        with self.store.writer.begin() as connection:
            return int(connection.execute(remove, _given(now)).rowcount or 0)

    def _prepared(self, given_now: bool) -> tuple[Any, Any]:
        """The upsert and the clean-up, on the database's clock or on a given ``b_now``."""
        with self._lock:
            if given_now not in self._statements:
                now = bindparam("b_now", type_=Float) if given_now else self._clock
                self._statements[given_now] = (self._upsert(now), delete(Bucket).where(
                    Bucket.full_at <= now))
            return self._statements[given_now]

    def _upsert(self, now: Any) -> Any:
        interval = bindparam("b_interval", type_=Float)
        window = bindparam("b_window", type_=Float)
        after = self._later(Bucket.full_at, now) + interval
        fits = after <= now + window
        return (self._insert(Bucket)
                .values(key=bindparam("b_key"), full_at=now + interval, refused=literal(0))
                .on_conflict_do_update(index_elements=[Bucket.key], set_={
                    "full_at": case((fits, after), else_=Bucket.full_at),
                    "refused": case((fits, 0), else_=Bucket.refused + 1)})
                .returning(Bucket.full_at, Bucket.refused, now))


def _given(now: float | None) -> dict[str, float]:
    return {} if now is None else {"b_now": now}
