"""Batch reads and writes for imports: a few thousand rows per statement, no ORM objects.

Rows to insert arrive with their JSON already encoded and are written with the driver's fastest
path: ``executemany`` on SQLite, ``COPY`` on PostgreSQL. Everything here runs inside one
transaction per batch (``Store.batch()``), so a crash never leaves half a batch behind.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from newsletter.store.models import Status, Subscriber, Suppression
from newsletter.store.store import Store
from newsletter.store.suppression import address_hash

TABLE = cast(Table, Subscriber.__table__)
# The columns of a new row, in the order of the tuples given to Batch.insert.
INSERT_COLUMNS = ("email", "email_key", "name", "attributes", "tags", "status", "status_reason",
                  "source", "created_at", "updated_at", "status_changed_at", "unsubscribed_at")
_FULL = select(
    Subscriber.email_key, Subscriber.name, Subscriber.attributes, Subscriber.tags,
    Subscriber.status_reason, Subscriber.status_changed_at, Subscriber.unsubscribed_at)
_UPDATE = (update(TABLE).where(TABLE.c.id == bindparam("b_id")).values(
    name=bindparam("b_name"), attributes=bindparam("b_attributes"), tags=bindparam("b_tags"),
    status=bindparam("b_status"), status_reason=bindparam("b_status_reason"),
    status_changed_at=bindparam("b_status_changed_at"), updated_at=bindparam("b_updated_at"),
    unsubscribed_at=bindparam("b_unsubscribed_at")))
IMPORT_CACHE_MB = 64
# Keys per IN (...) lookup: under every driver's parameter limit.
_CHUNK = 2000


@dataclass(slots=True)
class Existing:
    """A subscriber already in the database, as an import sees it."""

    id: int
    status: Status
    touched: bool  # already written by this import: a later row is a duplicate
    # Loaded only when the import may change the row (Batch.existing(..., full=True)):
    name: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    status_reason: str = ""
    status_changed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None


class Batch:
    """The reads and writes of one import batch, in one write transaction."""

    def __init__(self, connection: Connection, pepper: bytes):
        self.connection = connection
        self.pepper = pepper
        self.dialect = connection.dialect.name
        self._to_db = TABLE.c.created_at.type.dialect_impl(connection.dialect).bind_processor(
            connection.dialect)

    def existing(self, keys: Sequence[str], stamp: dt.datetime, *,
                 full: bool) -> dict[str, Existing]:
        """The subscribers with these keys; ``touched`` if their updated_at is ``stamp``.
        Only id and status are read unless ``full``: the common case stays one cheap query."""
        found: dict[str, Existing] = {}
        for start in range(0, len(keys), _CHUNK):
            for key, id_, status, touched in self._lookup(keys[start:start + _CHUNK], stamp):
                found[key] = Existing(id_, Status(status), bool(touched))
        if full and found:
            found_keys = list(found)
            for start in range(0, len(found_keys), _CHUNK):
                chunk = found_keys[start:start + _CHUNK]
                for row in self.connection.execute(_FULL.where(Subscriber.email_key.in_(chunk))):
                    entry = found[row.email_key]
                    entry.name, entry.attributes, entry.tags = row.name, row.attributes, row.tags
                    entry.status_reason, entry.status_changed_at = (row.status_reason,
                                                                    row.status_changed_at)
                    entry.unsubscribed_at = row.unsubscribed_at
        return found

    def _lookup(self, keys: Sequence[str], stamp: dt.datetime) -> Any:
        # Driver-level SQL: with thousands of keys SQLAlchemy's expanding IN costs more than
        # the query itself.
        when = self.timestamp(stamp)
        columns = "SELECT email_key, id, status, updated_at = {} FROM subscribers WHERE "
        if self.dialect == "postgresql":
            return self.connection.exec_driver_sql(
                columns.format("%(stamp)s") + "email_key = ANY(%(keys)s)",
                {"stamp": when, "keys": list(keys)})
        if self.dialect == "sqlite":
            return self.connection.exec_driver_sql(
                columns.format("?") + f"email_key IN ({', '.join('?' * len(keys))})",
                (when, *keys))
        return self.connection.execute(select(
            Subscriber.email_key, Subscriber.id, Subscriber.status,
            Subscriber.updated_at == stamp).where(Subscriber.email_key.in_(keys)))

    def erased(self, keys: Collection[str]) -> set[str]:
        """The keys among ``keys`` whose address was erased (held only as a hash)."""
        if not keys or self.connection.scalar(select(Suppression.address_hash).limit(1)) is None:
            return set()
        by_hash = {address_hash(self.pepper, key): key for key in keys}
        hashes = list(by_hash)
        erased: set[str] = set()
        for start in range(0, len(hashes), _CHUNK):
            query = select(Suppression.address_hash).where(
                Suppression.address_hash.in_(hashes[start:start + _CHUNK]))
            erased.update(by_hash[h] for h in self.connection.scalars(query))
        return erased

    def lift(self, keys: Collection[str]) -> None:
        """Forget the erasure of addresses that are explicitly being resubscribed."""
        hashes = [address_hash(self.pepper, key) for key in keys]
        if hashes:
            self.connection.execute(delete(Suppression).where(
                Suppression.address_hash.in_(hashes)))

    def timestamp(self, when: dt.datetime) -> Any:
        """A datetime as the driver stores it (bypassing the ORM for speed)."""
        return self._to_db(when) if self._to_db else when

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert new subscribers: tuples in INSERT_COLUMNS order, JSON already encoded."""
        if not rows:
            return
        names = ", ".join(INSERT_COLUMNS)
        if self.dialect == "postgresql":
            self._copy(f"COPY subscribers ({names}) FROM STDIN", rows)
        elif self.dialect == "sqlite":
            marks = ", ".join("?" * len(INSERT_COLUMNS))
            self.connection.exec_driver_sql(
                f"INSERT INTO subscribers ({names}) VALUES ({marks})", rows)
        else:  # any other dialect: portable, slower
            self.connection.execute(insert(TABLE), [
                dict(zip(INSERT_COLUMNS, row, strict=True))
                | {"attributes": json.loads(row[3]), "tags": json.loads(row[4])}
                for row in rows])

    def update(self, changes: list[dict[str, Any]]) -> None:
        """Update subscribers: dicts with the ``b_*`` keys of the UPDATE statement."""
        if changes:
            self.connection.execute(_UPDATE, changes)

    def _copy(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        # COPY text written a chunk at a time, so the server parses while we format;
        # psycopg's write_row() costs ~8 µs a row.
        raw: Any = self.connection.connection.dbapi_connection  # a psycopg Connection
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for start in range(0, len(rows), 1000):
                copy.write("".join([_copy_line(row) for row in rows[start:start + 1000]]))


def _copy_line(row: tuple[Any, ...]) -> str:
    return "\t".join([_COPY_NULL if value is None else _copy_text(value) for value in row]) + "\n"


def _copy_text(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


@contextmanager
def batch(store: Store) -> Iterator[Batch]:
    """A write transaction for one batch of an import."""
    pepper = store.pepper
    with store.writer.begin() as connection:
        if connection.dialect.name == "sqlite":
            # Random keys land all over the unique index: when the index does not fit in the
            # page cache, every insert reads a page and dirty pages spill before the commit.
            connection.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_CACHE_MB * 1024}")
        yield Batch(connection, pepper)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during bulk work: rows form no cycles, and its
    repeated scans of each batch's objects cost 40% of import and export time when measured."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
