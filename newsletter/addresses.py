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
# dot-atom local part @ LDH labels, the last one (the TLD) ending in a letter. Lengths, R-LDH
# labels ("ab--c"), Punycode and special-use names are checked in _fast_key.
_FAST = re.compile(
    rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z])?)"
)
_LABEL_LIMIT, _LOCAL_LIMIT, _ADDRESS_LIMIT = 63, 64, 254
# RFC 6761 and friends: email-validator refuses these; so must the fast path.
_SPECIAL_USE = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


@dataclass(frozen=True, slots=True)
class Address:
    """An address as entered (trimmed) and its key: the form two spellings of it share."""

    email: str
    key: str


def parse_address(text: str) -> Address:
    """Validate an address; raise InvalidAddress with email-validator's explanation if it isn't."""
    email = text.strip()
    key = _fast_key(email)
    return Address(email, key) if key is not None else Address(email, _checked_key(email))


def address_key(text: str) -> str:
    """The normalised key of an address (lower case, NFC, Unicode domain)."""
    return parse_address(text).key


def _fast_key(email: str) -> str | None:
    """The key of a plain ASCII address, or None when email-validator must decide."""
    match = _FAST.fullmatch(email)
    if match is None or len(email) > _ADDRESS_LIMIT:
        return None
    local, domain = match.groups()
    labels = domain.lower().split(".")
    if (len(local) > _LOCAL_LIMIT or labels[-1] in _SPECIAL_USE
            or any(len(label) > _LABEL_LIMIT or label[2:4] == "--" for label in labels)):
        return None  # includes every "xn--" label: Punycode is email-validator's business
    return email.lower()


def _checked_key(email: str) -> str:
    if not email:
        raise InvalidAddress(email, "the address is empty")
    try:
        valid = validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidAddress(email, str(error)) from None
    local = unicodedata.normalize("NFC", valid.local_part)
    return f"{local.lower()}@{valid.domain.lower()}"
