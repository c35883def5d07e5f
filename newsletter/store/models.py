"""The subscriber tables as typed SQLAlchemy 2 mappings, and the status vocabulary.

The same database later holds the deliveries ledger (issue × subscriber), SES events and
scheduled issues; they reference ``subscribers.id``, an integer that is never reused (SQLite
AUTOINCREMENT), so a ledger row can never end up pointing at a different person.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from newsletter.values import LANGUAGE_LENGTH, NAME_LENGTH, SOURCE_LENGTH, Status

# Deterministic constraint names, so migrations can refer to them on every dialect.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# An OR chain, not IN (...): SQLite re-evaluates an IN list per inserted row, which cost a
# third of bulk-import throughput when measured.
STATUS_CHECK = " OR ".join(f"status = '{status}'" for status in Status)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every dialect (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Subscriber(Base):
    """One person on the list. ``email`` is kept as entered; ``email_key`` makes it unique."""

    __tablename__ = "subscribers"
    __table_args__ = (
        CheckConstraint(STATUS_CHECK, name="status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # Lower case, NFC, Unicode domain: see newsletter.addresses.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    # Free-form personalisation fields, str → str (first_name, organisation, country, ...).
    attributes: Mapped[dict[str, str]] = mapped_column(JSONDocument, default=dict)
    # Sorted, lower-case labels; an audience is "subscribers with any of these tags".
    tags: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    # BCP 47 ("bg", "pt-BR"): the version of each issue they get. None: not known, the original.
    language: Mapped[str | None] = mapped_column(String(LANGUAGE_LENGTH))
    status: Mapped[Status] = mapped_column(
        Enum(Status, native_enum=False, create_constraint=False, length=16,
             values_callable=lambda statuses: [s.value for s in statuses]),
        default=Status.PENDING)
    # Why the status last changed ("unsubscribe link", "hard bounce", ...) and the issue it
    # came from, if any.
    status_reason: Mapped[str] = mapped_column(String(SOURCE_LENGTH), default="")
    status_issue: Mapped[str | None] = mapped_column(String(SOURCE_LENGTH))
    # How the address arrived: "cli", "web", "import:members.csv".
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When mail stopped: set on unsubscribe, bounce and complaint alike.
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When they joined in a way that welcomes them (confirmed, added, rejoined, imported with
    # --welcome): welcome issues go to those who joined after the trigger went live. None: on
    # the list without a welcome (a plain import).
    welcome_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)

    consents: Mapped[list[Consent]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Consent.id")

    @property
    def first_name(self) -> str:
        """For "Dear {{first_name}}": the attribute if set, else the name's first word, else ""."""
        return first_name(self.name, self.attributes)

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.email} {self.status}>"


class Consent(Base):
    """Evidence that someone agreed to receive the newsletter: when, how, from where."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    given_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # "web form", "confirmation link", "import", "cli" ...
    method: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    # What they agreed to and anything else worth keeping: form wording, page URL, user agent.
    evidence: Mapped[str] = mapped_column(Text, default="")

    subscriber: Mapped[Subscriber] = relationship(back_populates="consents")


class Suppression(Base):
    """An address that must never be mailed again, held only as a keyed hash (see suppression)."""

    __tablename__ = "suppressions"

    address_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StoreMeta(Base):
    """Small facts about this database, e.g. the random pepper of the suppression hashes."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# Words in front of a name that are not a first name.
_TITLES = frozenset({"dr", "prof", "mr", "mrs", "ms", "mx", "mag", "ing", "dipl", "sir", "dame"})


def first_name(name: str, attributes: Mapping[str, str]) -> str:
    """The first name to greet someone by: ``first_name`` attribute, else from the name."""
    if attributes.get("first_name", "").strip():
        return attributes["first_name"].strip()
    if "," in name:  # "Nowak, Anna"
        name = name.partition(",")[2]
    words = [w for w in name.split() if w.rstrip(".").lower() not in _TITLES]
    return words[0] if words else ""
