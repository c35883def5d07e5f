"""The store: what the CLI, the send engine and the web app ask of the subscriber list.

One-row operations use ORM sessions; anything that walks the list (audiences, export) uses
keyset pagination in id order over short read transactions, so a million subscribers stream in
constant memory and never hold a lock. The SQL dialect stays inside this package.

One write has a Core fast path: ``unsubscribe``, the hot path of one-click unsubscribe.
``set_status`` loads the subscriber through the ORM, locks it and flushes: ~2 ms of Python per
call, which alone caps one-click unsubscribes at a few hundred a second. Mailbox providers send
these POSTs in bursts after a large send, so ``unsubscribe`` makes the same change to a batch
of subscribers with one prepared ``UPDATE … RETURNING`` (SQLite ≥ 3.35, PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import json
import json.scanner
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    Table,
    Text,
    bindparam,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.addresses import parse_address
from newsletter.errors import (
    AddressSuppressed,
    AlreadySubscribed,
    InvalidValue,
    SubscriberNotFound,
)
from newsletter.store import database
from newsletter.store.models import Consent, Subscriber, Suppression, first_name, utcnow
from newsletter.store.suppression import address_hash, load_pepper
from newsletter.values import Status, clean_attributes, clean_language, clean_name, clean_tags

ERASED = "erased"
MAX_ID = 2**63 - 1  # the largest id a BIGINT key holds; a larger one is no subscriber's

# The one-click write (``Store.unsubscribe``): whoever is active or pending leaves, with the
# columns ``change_status`` sets; a bounce or a complaint already on record is kept (it says
# more). Expanding parameters: one statement per batch, whatever its size.
_TABLE = cast(Table, Subscriber.__table__)
_STANDING_COLUMNS = (_TABLE.c.id, _TABLE.c.email, _TABLE.c.status, _TABLE.c.status_reason,
                     _TABLE.c.unsubscribed_at)
_LEAVE = (update(_TABLE)
          .where(_TABLE.c.id.in_(bindparam("b_ids", expanding=True)),
                 (_TABLE.c.status == Status.ACTIVE) | (_TABLE.c.status == Status.PENDING))
          .values(status=Status.UNSUBSCRIBED, status_reason=bindparam("b_reason"),
                  status_issue=bindparam("b_issue"), status_changed_at=bindparam("b_now"),
                  updated_at=bindparam("b_now"), unsubscribed_at=bindparam("b_now"))
          .returning(*_STANDING_COLUMNS))
_STANDING = select(*_STANDING_COLUMNS).where(
    _TABLE.c.id.in_(bindparam("b_ids", expanding=True)))


@dataclass(frozen=True, slots=True)
class Recipient:
    """What sending needs of a subscriber: light enough to stream a million of them."""

    id: int
    email: str
    name: str
    attributes: Mapping[str, str]

    @property
    def first_name(self) -> str:
        return first_name(self.name, self.attributes)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a subscriber stands after an unsubscribe: what the answer page needs."""

    id: int
    email: str
    status: Status
    status_reason: str
    unsubscribed_at: dt.datetime | None


@dataclass(frozen=True)
class Erasure:
    """What ``forget`` removed: the personal data it held, if any. The hash stays behind."""

    email: str
    removed: dict[str, Any] | None
    consents: int


class Store:
    """The subscriber list in one database. Open with ``Store.open(url)``; close when done."""

    def __init__(self, engine: Engine):
        self.engine = engine
        writer = engine.execution_options(**{database.WRITE: True})
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        self.writer = writer
        self._pepper: bytes | None = None

    @classmethod
    def open(cls, url: str, *, prepare: bool = True) -> Store:
        """Open a database; an empty one gets the schema, an outdated one is refused."""
        engine = database.make_engine(url)
        try:
            if prepare:
                database.prepare(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        """True when the database answers a query now (a health check's question)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ suppression

    @property
    def pepper(self) -> bytes:
        if self._pepper is None:
            with self.writer.begin() as connection:
                self._pepper = load_pepper(connection)
        return self._pepper

    def suppression_hash(self, email: str) -> str:
        """The keyed hash an erased address is remembered by (see store.suppression)."""
        return address_hash(self.pepper, parse_address(email).key)

    def erasure_of(self, email: str) -> Suppression | None:
        """The suppression record of an erased address, or None."""
        with self._read() as session:
            return session.get(Suppression, self.suppression_hash(email))

    def is_suppressed(self, email: str) -> bool:
        """True if the address must not be mailed or silently re-added: it left or was erased."""
        found = self.get_by_email(email)
        return found.status.suppressed if found else self.erasure_of(email) is not None

    # ------------------------------------------------------------ one subscriber

    def get(self, subscriber_id: int) -> Subscriber | None:
        with self._read() as session:
            return session.get(Subscriber, subscriber_id)

    def get_by_email(self, email: str) -> Subscriber | None:
        """Look an address up however it is capitalised; raise InvalidAddress if it is invalid."""
        key = parse_address(email).key
        with self._read() as session:
            return session.scalar(select(Subscriber).where(Subscriber.email_key == key))

    def require(self, email: str) -> Subscriber:
        found = self.get_by_email(email)
        if found is None:
            raise SubscriberNotFound(f"{email} is not on the list")
        return found

    def add(self, email: str, *, name: str = "", attributes: Mapping[str, str] | None = None,
            tags: Collection[str] = (), status: Status = Status.PENDING, source: str = "cli",
            resubscribe: bool = False, language: str | None = None) -> Subscriber:
        """Add one subscriber. An address that left or was erased needs ``resubscribe=True``.
        ``language``: a BCP 47 tag, normalised (InvalidValue if malformed); None or "" for
        not known, which gets them the original of each issue."""
        address = parse_address(email)
        language = clean_language(language or "")
        digest = address_hash(self.pepper, address.key)
        with self._write.begin() as session:
            existing = session.scalar(
                select(Subscriber).where(Subscriber.email_key == address.key))
            if existing is not None and not (existing.status.suppressed and resubscribe):
                raise _refusal(existing)
            erased = session.get(Suppression, digest)
            if erased is not None and not resubscribe:
                raise AddressSuppressed(
                    f"{email} was erased on {erased.created_at:%Y-%m-%d} at the person's "
                    "request; add it again only if they asked to rejoin (resubscribe)")
            if erased is not None:
                session.delete(erased)
            subscriber = existing or Subscriber(email=address.email, email_key=address.key,
                                                name="", attributes={}, tags=[])
            session.add(subscriber)
            # Coming back keeps what we knew, unless told otherwise.
            subscriber.email, subscriber.source = address.email, source
            subscriber.name = clean_name(name) or subscriber.name
            subscriber.language = language or subscriber.language
            subscriber.attributes = subscriber.attributes | clean_attributes(attributes or {})
            subscriber.tags = sorted(set(subscriber.tags) | set(clean_tags(tags)))
            change_status(subscriber, status, reason=f"added ({source})", issue=None)
        return subscriber

    def set_status(self, subscriber_id: int, status: Status, *, reason: str,
                   issue: str | None = None, resubscribe: bool = False) -> Subscriber:
        """Change a status, saying why (and which issue it came from). Leaving is always
        allowed; coming back from unsubscribed/bounced/complained needs ``resubscribe``."""
        with self._write.begin() as session:
            subscriber = _locked(session, subscriber_id)
            if subscriber.status.suppressed and not status.suppressed and not resubscribe:
                raise _refusal(subscriber)
            if subscriber.status != status:
                change_status(subscriber, status, reason=reason, issue=issue)
        return subscriber

    def set_language(self, subscriber_id: int, language: str | None) -> Subscriber:
        """Set the language a subscriber reads issues in: a BCP 47 tag, normalised
        (InvalidValue if malformed); None or "" forgets it, so they get the original."""
        cleaned = clean_language(language or "")
        with self._write.begin() as session:
            subscriber = _locked(session, subscriber_id)
            if subscriber.language != cleaned:
                subscriber.language, subscriber.updated_at = cleaned, utcnow()
        return subscriber

    def set_topics(self, subscriber_id: int, topics: Collection[str],
                   public: Collection[str]) -> Subscriber:
        """Make a subscriber's tags among ``public`` exactly ``topics`` (a subset of it, else
        InvalidValue); tags outside ``public`` (those the list's keepers gave) stay as they
        are. Read and written under the row's lock, in one transaction."""
        chosen, offered = set(clean_tags(topics)), set(clean_tags(public))
        if not chosen <= offered:
            raise InvalidValue(f"not a topic: {', '.join(sorted(chosen - offered))}")
        with self._write.begin() as session:
            subscriber = _locked(session, subscriber_id)
            tags = sorted((set(subscriber.tags) - offered) | chosen)
            if tags != subscriber.tags:
                subscriber.tags, subscriber.updated_at = tags, utcnow()
        return subscriber

    def unsubscribe(self, requests: Sequence[tuple[int, str, str | None]]
                    ) -> list[Standing | None]:
        """Unsubscribe each (subscriber id, reason, issue) of ``requests``, all in one
        transaction; returns how each of them stands now, in the same order (None for an id
        no row holds: erased, or never ours). Idempotent.

        Active and pending subscribers become ``unsubscribed`` with the reason and issue, as
        ``set_status`` would record them; anyone who already left, bounced or complained stays
        as they are. One ``UPDATE … RETURNING`` per distinct (reason, issue), usually one for
        the whole batch, and a ``SELECT`` of the ids it left unchanged, if any."""
        groups: dict[tuple[str, str | None], list[int]] = {}
        for subscriber_id, reason, issue in requests:
            if 0 < subscriber_id <= MAX_ID:  # a bigger one would fail the whole batch
                groups.setdefault((reason, issue), []).append(subscriber_id)
        found: dict[tuple[str, str | None], dict[int, Standing]] = {}
        if groups:
            with self.writer.begin() as connection:
                now = utcnow()
                found = {key: _leave(connection, key, ids, now) for key, ids in groups.items()}
        return [found.get((reason, issue), {}).get(subscriber_id)
                for subscriber_id, reason, issue in requests]

    def confirm(self, subscriber_id: int, *, ip: str | None = None,
                evidence: str = "") -> Subscriber:
        """Double opt-in: a pending subscriber clicked the link. Idempotent for active ones."""
        with self._write.begin() as session:
            subscriber = _locked(session, subscriber_id)
            if subscriber.status.suppressed:
                raise _refusal(subscriber)
            if subscriber.status is Status.PENDING:
                change_status(subscriber, Status.ACTIVE, reason="confirmed", issue=None)
                subscriber.confirmed_at = subscriber.status_changed_at
                session.add(Consent(subscriber=subscriber, method="confirmation link", ip=ip,
                                    evidence=evidence, given_at=subscriber.confirmed_at))
        return subscriber

    def welcome_imported(self, stamp: dt.datetime) -> int:
        """Welcome those an import (whose rows carry ``updated_at == stamp``) added as active
        or made active: welcome issues go to them. Returns how many. Their ``welcome_at`` is
        now, when the import is done, not when it began, so that a long import is not older
        than the scheduler's look back."""
        with self.writer.begin() as connection:
            return connection.execute(update(Subscriber).where(
                Subscriber.updated_at == stamp, Subscriber.status == Status.ACTIVE,
                (Subscriber.created_at == stamp) | (Subscriber.status_changed_at == stamp))
                .values(welcome_at=utcnow())).rowcount or 0

    def record_consent(self, subscriber_id: int, *, method: str, ip: str | None = None,
                       evidence: str = "", at: dt.datetime | None = None) -> Consent:
        """Keep evidence of consent: how (web form, import, ...), when, from which IP."""
        with self._write.begin() as session:
            consent = Consent(subscriber=_locked(session, subscriber_id), method=method, ip=ip,
                              evidence=evidence, given_at=at or utcnow())
            session.add(consent)
        return consent

    def forget(self, email: str) -> Erasure:
        """GDPR erasure: delete everything about the person, keep only the suppression hash."""
        address = parse_address(email)
        digest = address_hash(self.pepper, address.key)
        with self._write.begin() as session:
            subscriber = session.scalar(
                select(Subscriber).where(Subscriber.email_key == address.key))
            removed, consents = None, 0
            if subscriber is not None:
                removed, consents = subscriber_record(subscriber), len(subscriber.consents)
                session.delete(subscriber)
            if session.get(Suppression, digest) is None:
                session.add(Suppression(address_hash=digest, reason=ERASED))
        return Erasure(address.email, removed, consents)

    def personal_data(self, email: str) -> dict[str, Any]:
        """Everything held about one address (GDPR access request), JSON-ready."""
        with self._read() as session:
            subscriber = session.scalar(select(Subscriber).where(
                Subscriber.email_key == parse_address(email).key))
            if subscriber is not None:
                return {"subscriber": subscriber_record(subscriber),
                        "consents": [_consent_record(c) for c in subscriber.consents]}
        erased = self.erasure_of(email)
        if erased is None:
            raise SubscriberNotFound(f"nothing is held about {email}")
        return {"subscriber": None, "suppression": {
            "note": "only a keyed hash of the address is kept, so it is never mailed again",
            "address_hash": erased.address_hash, "reason": erased.reason,
            "since": erased.created_at.isoformat()}}

    # ------------------------------------------------------------ many subscribers

    def audience(self, tags: Collection[str] = (), *, batch_size: int = 1000,
                 after_id: int = 0) -> Iterator[list[Recipient]]:
        """Active subscribers with any of ``tags`` (all active if none), in id order, a batch at
        a time. Resume after a crash with ``after_id`` = the last id handled."""
        columns = select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.attributes)
        query = columns.where(Subscriber.status == Status.ACTIVE, self.tagged(tags))
        for rows in self._pages(query, batch_size, after_id):
            yield [Recipient(*row) for row in rows]

    def audience_ids(self, tags: Collection[str] = ()) -> Select[Any]:
        """The ids of an audience as a query, for planning a send with INSERT ... SELECT."""
        return select(Subscriber.id).where(Subscriber.status == Status.ACTIVE, self.tagged(tags))

    def subscribers(self, *, statuses: Collection[Status] = (), tags: Collection[str] = (),
                    batch_size: int = 1000, languages: Collection[str] = ()
                    ) -> Iterator[Subscriber]:
        """Every subscriber matching the filters, in id order, streamed."""
        query = select(Subscriber).where(self.filtered(statuses, tags), self.speaking(languages))
        for rows in self._pages(query, batch_size, 0, scalars=True):
            yield from rows

    def rows(self, columns: Sequence[str], *, statuses: Collection[Status] = (),
             tags: Collection[str] = (), batch_size: int = 5000) -> Iterator[list[list[Any]]]:
        """Chosen columns (the first must be "id") of matching subscribers, in id order, in
        batches: the fast path for exports, about twice as fast as ORM objects."""
        table = Subscriber.__table__
        documents = [i for i, name in enumerate(columns) if name in ("attributes", "tags")]
        query = select(*(sql_cast(table.c[name], Text) if i in documents else table.c[name]
                         for i, name in enumerate(columns))).where(self.filtered(statuses, tags))
        for page in self._pages(query, batch_size, 0):
            rows = [list(row) for row in page]
            for row in rows:
                for i in documents:
                    row[i] = _document(row[i])
            yield rows

    def attribute_names(self, *, statuses: Collection[Status] = (),
                        tags: Collection[str] = ()) -> list[str]:
        """Every attribute name in use among matching subscribers, sorted."""
        if self.engine.dialect.name == "postgresql":
            keys = func.jsonb_object_keys(Subscriber.attributes)
            query = select(keys).where(self.filtered(statuses, tags)).distinct()
        else:
            each = func.json_each(Subscriber.attributes).table_valued("key")
            query = select(each.c.key).select_from(Subscriber).join(each, true()).where(
                self.filtered(statuses, tags)).distinct()
        with self._read() as session:
            return sorted(session.scalars(query))

    def count(self, *, statuses: Collection[Status] = (), tags: Collection[str] = (),
              lacking: str | None = None, languages: Collection[str] = ()) -> int:
        """How many subscribers match; with ``lacking``, only those without that attribute."""
        query = select(func.count()).select_from(Subscriber).where(
            self.filtered(statuses, tags), self.speaking(languages))
        if lacking is not None:
            query = query.where(Subscriber.attributes[lacking].as_string().is_(None))
        with self._read() as session:
            return session.scalar(query) or 0

    def counts_by_status(self) -> dict[Status, int]:
        with self._read() as session:
            rows = session.execute(select(Subscriber.status, func.count()).group_by(
                Subscriber.status)).all()
        return {status: 0 for status in Status} | {Status(s): n for s, n in rows}

    def filtered(self, statuses: Collection[Status], tags: Collection[str]) -> ColumnElement[bool]:
        status_ok = Subscriber.status.in_(list(statuses)) if statuses else true()
        return status_ok & self.tagged(tags)

    def tagged(self, tags: Collection[str]) -> ColumnElement[bool]:
        """Subscribers carrying any of the tags; every subscriber when there are none."""
        wanted = clean_tags(tags)
        if not wanted:
            return true()
        if self.engine.dialect.name == "postgresql":
            return Subscriber.tags.op("?|")(postgresql.array(wanted))
        each = func.json_each(Subscriber.tags).table_valued("value")
        return exists(select(1).select_from(each).where(each.c.value.in_(wanted)))

    def speaking(self, languages: Collection[str]) -> ColumnElement[bool]:
        """Subscribers whose language is any of ``languages`` or more specific (RFC 4647
        basic filtering: "pt" matches "pt" and "pt-BR"); every subscriber when there are none.
        InvalidValue for a malformed tag."""
        wanted = {tag for language in languages if (tag := clean_language(language))}
        if not wanted:
            return true()
        return or_(*(or_(Subscriber.language == tag,
                         Subscriber.language.startswith(tag + "-", autoescape=True))
                     for tag in sorted(wanted)))

    def _pages(self, query: Any, size: int, after_id: int,
               scalars: bool = False) -> Iterator[list[Any]]:
        while True:
            page = query.where(Subscriber.id > after_id).order_by(Subscriber.id).limit(size)
            if scalars:
                with self._read() as session:
                    rows: list[Any] = list(session.scalars(page))
            else:
                with self.engine.connect() as connection:
                    rows = list(connection.execute(page))
            if not rows:
                return
            yield rows
            last = rows[-1]
            after_id = last.id if scalars else last[0]


# The C scanner json.loads uses, without its Python wrapper: half the cost per value.
_make_scanner: Any = json.scanner.make_scanner
_scan_json = _make_scanner(json.JSONDecoder())


def _document(value: Any) -> Any:
    """A JSON column's value: SQLite hands back text, psycopg already-decoded objects."""
    return _scan_json(value, 0)[0] if isinstance(value, str) else value


def subscriber_record(subscriber: Subscriber) -> dict[str, Any]:
    """A subscriber as JSON-ready data: every column but the internal key."""
    record: dict[str, Any] = {}
    for column in Subscriber.__table__.columns:
        if column.key == "email_key":
            continue
        value = getattr(subscriber, column.key)
        record[column.key] = value.isoformat() if isinstance(value, dt.datetime) else value
    record["status"] = str(subscriber.status)
    return record


def _consent_record(consent: Consent) -> dict[str, Any]:
    return {"given_at": consent.given_at.isoformat(), "method": consent.method,
            "ip": consent.ip, "evidence": consent.evidence}


def _leave(connection: Connection, key: tuple[str, str | None], ids: list[int],
           now: dt.datetime) -> dict[int, Standing]:
    """Unsubscribe ``ids`` with ``key``'s (reason, issue); how each of them stands now (erased
    ones are missing)."""
    values: dict[str, Any] = {"b_ids": ids, "b_reason": key[0], "b_issue": key[1], "b_now": now}
    rows = list(connection.execute(_LEAVE, values))
    left = {row[0] for row in rows}
    rest = [i for i in set(ids) if i not in left]  # already left, bounced, complained, erased
    if rest:
        rows += connection.execute(_STANDING, {"b_ids": rest})
    return {row[0]: Standing(row[0], row[1], Status(row[2]), row[3], row[4]) for row in rows}


def _locked(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        raise SubscriberNotFound(f"no subscriber with id {subscriber_id}")
    return subscriber


def change_status(subscriber: Subscriber, status: Status, *, reason: str,
                  issue: str | None) -> None:
    """Set a status with its reason and issue, inside the caller's session (events use it to
    change a subscriber in the same transaction that records the event)."""
    now = utcnow()
    subscriber.status, subscriber.status_reason, subscriber.status_issue = status, reason, issue
    subscriber.status_changed_at = subscriber.updated_at = now
    if status.suppressed:
        subscriber.unsubscribed_at = now
    elif status is Status.ACTIVE:
        subscriber.unsubscribed_at = None
        subscriber.confirmed_at = subscriber.confirmed_at or now
        subscriber.welcome_at = now  # welcome issues go to them (each at most once)


def _refusal(subscriber: Subscriber) -> Exception:
    if not subscriber.status.suppressed:
        return AlreadySubscribed(f"{subscriber.email} is already on the list ({subscriber.status})")
    when = subscriber.status_changed_at
    return AddressSuppressed(
        f"{subscriber.email} is {subscriber.status} since {when:%Y-%m-%d}"
        f"{f' ({subscriber.status_reason})' if subscriber.status_reason else ''}: it is re-added "
        "only when the person asked to rejoin (resubscribe)")
