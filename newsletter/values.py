"""The subscriber vocabulary: statuses, and the canonical forms of a name, attributes and
tags, shared by every way in (import, web form, CLI) and by the store's models.

Canonical means idempotent: cleaning a cleaned value changes nothing, which is what makes an
export → import → export round trip exact. Nothing here needs the database, so the process that
reads a large import file in parallel (newsletter.subscribers.importfile) starts without SQLAlchemy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum

from newsletter.errors import InvalidValue

NAME_LENGTH, TAG_LENGTH, SOURCE_LENGTH = 200, 64, 200

# Per-recipient fields (built in, or an attribute by its name): left in the rendered email as
# {{name}} and filled in at send time.
PLACEHOLDERS = ("first_name", "name", "email", "unsubscribe_url", "web_url")  # built in
LINK_PLACEHOLDERS = ("unsubscribe_url", "web_url")  # no use in a subject
PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")  # anything in braces, to report
FIELD_RE = re.compile(r"\{\{\s*(\w+)\s*\}\}")  # what is filled in (checked beforehand)


class Status(StrEnum):
    """Where a subscriber stands. Only ``active`` subscribers are mailed.

    pending       signed up, not yet confirmed (double opt-in)
    active        receives the newsletter
    unsubscribed  left through a link, the one-click button, an import or the CLI
    bounced       the address hard-bounced
    complained    the recipient marked a message as spam
    """

    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"

    @property
    def suppressed(self) -> bool:
        """True for the statuses nobody may undo by accident (import, sign-up form, CLI add)."""
        return self in SUPPRESSED


SUPPRESSED = frozenset({Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED})

VALUE_LENGTH = 1000
MAX_ATTRIBUTES = 100
# Columns of an import file (and of an export) that are not attributes.
RESERVED = frozenset({"email", "name", "tags", "status"})
TAG_SEPARATORS = re.compile(r"[;,|]")
_NOT_WORD = re.compile(r"\W+")


def attribute_name(text: str) -> str:
    """"Organisation " → "organisation", "First Name" → "first_name": usable as {{placeholder}}."""
    return _NOT_WORD.sub("_", text.strip().lstrip("\ufeff").lower()).strip("_")


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if len(name) > NAME_LENGTH:
        raise InvalidValue(f"the name is longer than {NAME_LENGTH} characters")
    return name


def clean_value(key: str, value: str) -> str:
    value = value.strip()
    if len(value) > VALUE_LENGTH:
        raise InvalidValue(f"the value of {key!r} is longer than {VALUE_LENGTH:,} characters")
    return value


def clean_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    """Names normalised, values trimmed, empty values dropped (empty means "not set")."""
    cleaned: dict[str, str] = {}
    for raw_key, raw_value in attributes.items():
        key = attribute_name(raw_key)
        if not key or key in RESERVED:
            raise InvalidValue(f"{raw_key!r} cannot be an attribute name")
        if not isinstance(raw_value, str):
            raise InvalidValue(f"the value of {key!r} must be text")
        if value := clean_value(key, raw_value):
            cleaned[key] = value
    if len(cleaned) > MAX_ATTRIBUTES:
        raise InvalidValue(f"more than {MAX_ATTRIBUTES} attributes")
    return dict(sorted(cleaned.items()))


def clean_tags(tags: Iterable[str] | str) -> list[str]:
    """Lower case, single spaces, sorted, no duplicates; a string is split at ; , or |."""
    parts = TAG_SEPARATORS.split(tags) if isinstance(tags, str) else tags
    cleaned = set()
    for part in parts:
        tag = " ".join(TAG_SEPARATORS.sub(" ", part).lower().split())
        if len(tag) > TAG_LENGTH:
            raise InvalidValue(f"the tag {tag[:20]!r}… is longer than {TAG_LENGTH} characters")
        if tag:
            cleaned.add(tag)
    return sorted(cleaned)
