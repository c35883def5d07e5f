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
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, Text, bindparam, delete, insert, select, update
from sqlalchemy import cast as sql_cast

from newsletter.store.database import SQLITE_PRAGMAS
from newsletter.store.models import Subscriber, Suppression
from newsletter.store.store import Store
from newsletter.store.suppression import address_hash
from newsletter.values import Status

TABLE = cast(Table, Subscriber.__table__)
_FIELDS: dict[str, Any] = {
    "name": bindparam("b_name"), "attributes": bindparam("b_attributes"),
    "tags": bindparam("b_tags"), "language": bindparam("b_language"),
    "updated_at": bindparam("b_updated_at")}
_STATUS: dict[str, Any] = {
    "status": bindparam("b_status"), "status_reason": bindparam("b_status_reason"),
    "status_changed_at": bindparam("b_status_changed_at"),
    "unsubscribed_at": bindparam("b_unsubscribed_at")}
# Rows whose status an import changed, and rows whose fields only it changed.
_UPDATE = update(TABLE).where(TABLE.c.id == bindparam("b_id")).values(_FIELDS | _STATUS)
_UPDATE_FIELDS = update(TABLE).where(TABLE.c.id == bindparam("b_id")).values(_FIELDS)
# While an import batch holds the write lock (restored to the defaults afterwards): a page cache
# that holds the unique index, and checkpoints every 200 MB of log instead of every 40 MB.
# A batch of random addresses dirties most of the index; checkpointing after nearly every
# batch copied it back each time (1.8 s of a 1M-row import, when measured).
IMPORT_PRAGMAS = {"cache_size": -64 * 1024, "wal_autocheckpoint": 50_000}
# Keys per IN (...) lookup: under every driver's parameter limit.
_CHUNK = 2000


@dataclass(slots=True)
class Existing:
    """A subscriber already in the database, as an import sees it."""

    id: int
    status: Status
    touched: bool  # already written by this import: a later row is a duplicate
    # Read only when the import may change the row (Batch.existing(..., full=True)), as the
    # JSON text stored; merging decodes it only for a row that differs.
    name: str = ""
    stored_attributes: str = "{}"
    stored_tags: str = "[]"
    language: str | None = None
    attributes: dict[str, str] | None = None  # decoded, or as this import changed them
    tags: list[str] | None = None
    # Set only when this import changes the status (the stored ones are never needed).
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
        Only id and status are read unless ``full`` (name, attributes, tags and language too)."""
        found: dict[str, Existing] = {}
        keys = sorted(keys)  # in index order: each lookup starts near where the last one ended
        for start in range(0, len(keys), _CHUNK):
            for key, id_, status, touched, *fields in self._lookup(
                    keys[start:start + _CHUNK], stamp, full):
                found[key] = Existing(id_, Status(status), bool(touched), *fields)
        return found

    def _lookup(self, keys: Sequence[str], stamp: dt.datetime, full: bool) -> Any:
        # Driver-level SQL: with thousands of keys SQLAlchemy's expanding IN costs more than
        # the query itself, and its JSON columns decode every document.
        when = self.timestamp(stamp)
        columns = "SELECT email_key, id, status, updated_at = {}"
        if self.dialect == "postgresql":
            columns += ", name, attributes::text, tags::text, language" if full else ""
            return self.connection.exec_driver_sql(
                columns.format("%(stamp)s") + " FROM subscribers WHERE email_key = ANY(%(keys)s)",
                {"stamp": when, "keys": list(keys)})
        if self.dialect == "sqlite":
            columns += ", name, attributes, tags, language" if full else ""
            return self.connection.exec_driver_sql(
                columns.format("?") + f" FROM subscribers WHERE email_key IN "
                f"({', '.join('?' * len(keys))})", (when, *keys))
        documents = (Subscriber.name, sql_cast(Subscriber.attributes, Text),
                     sql_cast(Subscriber.tags, Text), Subscriber.language) if full else ()
        return self.connection.execute(select(
            Subscriber.email_key, Subscriber.id, Subscriber.status,
            Subscriber.updated_at == stamp, *documents).where(Subscriber.email_key.in_(keys)))

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

    def shared(self, stamp: dt.datetime, *, status: Status, reason: str,
               source: str) -> dict[str, Any]:
        """Values every new row of an insert_new() gets, beyond email, key, name, attributes,
        tags and language (newsletter.subscribers.importfile.INSERTED); ``stamp`` is their
        creation time."""
        when = self.timestamp(stamp)
        return {"status": status.value, "unsubscribed_at": when if status.suppressed else None,
                "status_reason": reason, "source": source, "created_at": when,
                "updated_at": when, "status_changed_at": when}

    def insert_new(self, rows: list[tuple[Any, ...]], columns: Sequence[str],
                   shared: Mapping[str, Any]) -> set[str]:
        """Insert the subscribers whose address is not on the list yet; return the keys of
        those that are (and were left alone).

        ``rows`` hold the values of ``columns`` (email_key among them), JSON already encoded;
        ``shared`` the values of the other columns, the same for every row, datetimes as
        ``timestamp()`` gives them. On SQLite the unique index decides (ON CONFLICT DO
        NOTHING), so an address new to the list costs no lookup of its own.
        """
        if not rows:
            return set()
        key_at = list(columns).index("email_key")
        names = ", ".join([*columns, *shared])
        if self.dialect == "sqlite":
            last_id = self.connection.exec_driver_sql("SELECT max(id) FROM subscribers").scalar()
            # The shared values as SQL literals: binding them for every row was a sixth of
            # the insert's time.
            values = ", ".join(["?"] * len(columns) + [_sqlite_literal(v) for v in shared.values()])
            added = self.connection.exec_driver_sql(
                f"INSERT INTO subscribers ({names}) VALUES ({values}) "
                "ON CONFLICT (email_key) DO NOTHING", rows).rowcount
            if added == len(rows):
                return set()
            # AUTOINCREMENT: every new id is above the largest before the insert. The keys
            # come back as one string (a key holds no newline: see newsletter.addresses), a
            # tenth of the cost of a row each.
            inserted = self.connection.exec_driver_sql(
                "SELECT group_concat(email_key, char(10)) FROM subscribers WHERE id > ?",
                (last_id or 0,)).scalar()
            return {row[key_at] for row in rows}.difference((inserted or "").split("\n"))
        keys = [row[key_at] for row in rows]
        present = {key for start in range(0, len(keys), _CHUNK)
                   for key in self._present(keys[start:start + _CHUNK])}
        rows = [row for row in rows if row[key_at] not in present]
        if self.dialect == "postgresql":
            self._copy(f"COPY subscribers ({names}) FROM STDIN", rows, tuple(shared.values()))
        elif rows:  # any other dialect: portable, slower
            records = [dict(zip(columns, row, strict=True)) | dict(shared) for row in rows]
            for record in records:
                record["attributes"] = json.loads(record["attributes"])
                record["tags"] = json.loads(record["tags"])
            self.connection.execute(insert(TABLE), records)
        return present

    def _present(self, keys: list[str]) -> Any:
        if self.dialect == "postgresql":
            return self.connection.exec_driver_sql(
                "SELECT email_key FROM subscribers WHERE email_key = ANY(%(keys)s)",
                {"keys": keys}).scalars()
        return self.connection.scalars(select(Subscriber.email_key).where(
            Subscriber.email_key.in_(keys)))

    def update(self, changes: list[dict[str, Any]]) -> None:
        """Update subscribers: dicts with the ``b_*`` keys of name, attributes, tags, language
        and updated_at, and of the status columns where the status changes."""
        for statement, rows in ((_UPDATE, [c for c in changes if "b_status" in c]),
                                (_UPDATE_FIELDS, [c for c in changes if "b_status" not in c])):
            if rows:
                self.connection.execute(statement, rows)

    def _copy(self, statement: str, rows: list[tuple[Any, ...]], shared: tuple[Any, ...]) -> None:
        # COPY text written a chunk at a time, so the server parses while we format;
        # psycopg's write_row() costs ~8 µs a row.
        raw: Any = self.connection.connection.dbapi_connection  # a psycopg Connection
        end = "\t" + _copy_fields(shared) + "\n"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for start in range(0, len(rows), 1000):
                copy.write("".join([_copy_fields(row) + end for row in rows[start:start + 1000]]))


def _copy_fields(row: tuple[Any, ...]) -> str:
    return "\t".join([_COPY_NULL if value is None else _copy_text(value) for value in row])


def _sqlite_literal(value: str | None) -> str:
    # A string literal in SQLite: single quotes doubled; there are no backslash escapes.
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def _copy_text(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


@contextmanager
def batch(store: Store) -> Iterator[Batch]:
    """A write transaction for one batch of an import."""
    pepper = store.pepper  # read (or made, once) in a transaction of its own
    with store.writer.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _set_pragmas(connection, IMPORT_PRAGMAS)
        try:
            with connection.begin():
                yield Batch(connection, pepper)
        finally:
            if sqlite:
                _set_pragmas(connection, {name: SQLITE_PRAGMAS[name] for name in IMPORT_PRAGMAS})


def _set_pragmas(connection: Connection, pragmas: dict[str, Any]) -> None:
    raw: Any = connection.connection.driver_connection  # sqlite3: no transaction begins
    for name, value in pragmas.items():
        raw.execute(f"PRAGMA {name} = {value}")


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
