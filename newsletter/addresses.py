"""Email addresses: validation and the normalised key that identifies a subscriber.

``email-validator`` (syntax only, no DNS) is the authority, but at ~45 µs per call it alone would
cap an import near 20,000 rows/s. Plain ASCII addresses that a strict regular expression accepts
are, by construction, a subset of what email-validator accepts (a Hypothesis test holds us to
that), so they take a ~1 µs fast path; everything else, valid or not, goes to email-validator.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InvalidAddress

_ATEXT = r"A-Za-z0-9_!#$%&'*+/=?^`{|}~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # LDH, at most 63 characters
# dot-atom local part of at most 64 characters @ LDH labels, the last (the TLD) ending in a
# letter. The lengths, "--" (R-LDH and Punycode labels) and special-use TLDs: see quick_key.
_FAST = re.compile(rf"(?=[^@]{{1,64}}@)[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:{_LABEL}\.)+"
                   r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]")
_ADDRESS_LIMIT = 254
_SPECIAL_USE = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


@dataclass(frozen=True, slots=True)
class Address:
    """An address as entered (trimmed) and its key: the form two spellings of it share."""

    email: str
    key: str


def parse_address(text: str) -> Address:
    """Validate an address; raise InvalidAddress with email-validator's explanation if it isn't."""
    email = text.strip()
    key = quick_key(email)
    return Address(email, key) if key is not None else Address(email, checked_key(email))


def address_key(text: str) -> str:
    """The normalised key of an address (lower case, NFC, Unicode domain)."""
    return parse_address(text).key


def quick_key(email: str) -> str | None:
    """The key of a trimmed, plain ASCII address, or None when email-validator must decide."""
    if (len(email) > _ADDRESS_LIMIT or _FAST.fullmatch(email) is None
            or "--" in email.partition("@")[2]):  # R-LDH and Punycode: email-validator's call
        return None
    key = email.lower()
    return None if key.rpartition(".")[2] in _SPECIAL_USE else key


def checked_key(email: str) -> str:
    """The key of a trimmed address, validated by email-validator; InvalidAddress if invalid."""
    if not email:
        raise InvalidAddress(email, "the address is empty")
    try:
        valid = validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidAddress(email, str(error)) from None
    local = unicodedata.normalize("NFC", valid.local_part)
    return f"{local.lower()}@{valid.domain.lower()}"
