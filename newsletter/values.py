"""The subscriber vocabulary: statuses, and the canonical forms of a name, attributes, tags
and a language, shared by every way in (import, web form, CLI) and by the store's models.

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
LANGUAGE_LENGTH = 35  # a BCP 47 tag as people use them (RFC 5646 §4.4.1 suggests 35)

# Per-recipient fields (built in, or an attribute by its name): left in the rendered email as
# {{name}} and filled in at send time.
PLACEHOLDERS = ("first_name", "name", "email", "unsubscribe_url", "preferences_url",
                "web_url")  # built in
LINK_PLACEHOLDERS = ("unsubscribe_url", "preferences_url", "web_url")  # no use in a subject
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
RESERVED = frozenset({"email", "name", "tags", "status", "language"})
TAG_SEPARATORS = re.compile(r"[;,|]")
# A well-formed BCP 47 tag (RFC 5646 §2.1), any case, "_" read as "-": language (2-3 letters,
# up to three extended subtags), script, region, variants, extensions, private use. Only
# the form is checked, never a registry: a newsletter may offer any language at any time.
# Language subtags of 4-8 letters are reserved or unused, and refusing them is what turns
# away "english" or "deutsch" typed into a language column.
_LANGUAGE_TAG = re.compile(
    r"[a-z]{2,3}(?:-[a-z]{3}){0,3}"
    r"(?:-[a-z]{4})?"
    r"(?:-(?:[a-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*"
    r"(?:-[a-wyz0-9](?:-[a-z0-9]{2,8})+)*"
    r"(?:-x(?:-[a-z0-9]{1,8})+)?", re.ASCII)
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


def clean_language(text: str) -> str | None:
    """A BCP 47 language tag in its canonical case, or None for an empty value (not known).

    "pt_br", "PT-br" → "pt-BR", "EN" → "en", "sr-latn-rs" → "sr-Latn-RS" (RFC 5646 §2.1.1:
    region upper case, script title case, the rest lower case); InvalidValue for anything
    that is not a well-formed tag ("english", "e1") or longer than LANGUAGE_LENGTH.
    """
    tag = text.strip()
    if not tag:
        return None
    if len(tag) > LANGUAGE_LENGTH:
        raise InvalidValue(f"the language {tag[:20]!r}… is longer than {LANGUAGE_LENGTH} "
                           "characters")
    lowered = tag.replace("_", "-").lower()
    if not _LANGUAGE_TAG.fullmatch(lowered):
        raise InvalidValue(f"{tag!r} is not a language tag (expected a BCP 47 tag like 'en', "
                           "'bg' or 'pt-BR')")
    subtags = lowered.split("-")
    for index in range(1, len(subtags)):
        subtag = subtags[index]
        if len(subtag) == 1:  # an extension or private use: lower case from here on
            break
        if len(subtag) == 2:
            subtags[index] = subtag.upper()
        elif len(subtag) == 4 and subtag[0].isalpha():
            subtags[index] = subtag.title()
    return "-".join(subtags)
