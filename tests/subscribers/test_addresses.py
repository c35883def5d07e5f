"""Addresses: the fast path never accepts what email-validator refuses, and keys agree."""

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.addresses import address_key, checked_key, parse_address, quick_key
from newsletter.errors import InvalidAddress

ADDRESS_CHARS = st.sampled_from([*"abcxyzABZ0189.-_+@!#'`~", "é", "ü", "ß", "中"])


@settings(max_examples=1500, deadline=None)
@given(st.text(ADDRESS_CHARS, min_size=1, max_size=40) | st.emails())
@example("a@b.-com")
@example("a@b--c.com")
@example("a@xn--mnchen-3ya.de")
@example("x@example.test")
@example("a" * 65 + "@example.org")
@example("a@" + "b" * 64 + ".org")
def test_the_fast_path_accepts_only_what_email_validator_accepts(text):
    key = quick_key(text)
    if key is None:
        return
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:  # pragma: no cover - the property failing
        pytest.fail(f"fast path accepted {text!r}: {error}")
    assert checked_key(text) == key


@pytest.mark.parametrize(("a", "b"), [
    ("Anna.Nowak@Policja.GOV.pl", "anna.nowak@policja.gov.pl"),
    ("  anna@example.org ", "ANNA@EXAMPLE.ORG"),
    ("jürgen@münchen.de", "JÜRGEN@xn--mnchen-3ya.de"),
    ("jürgen@münchen.de", "ju\u0308rgen@münchen.de"),  # NFD spelling of ü
])
def test_spellings_of_one_address_share_a_key(a, b):
    assert address_key(a) == address_key(b)


def test_the_address_is_kept_as_entered():
    assert parse_address("  Anna.Nowak@Example.ORG ").email == "Anna.Nowak@Example.ORG"


@pytest.mark.parametrize("text", ["", "anna", "anna@", "@example.org", "a..b@example.org",
                                  "anna nowak@example.org", "anna@localhost",
                                  "anna@example.invalid", "Anna <anna@example.org>"])
def test_invalid_addresses_say_why(text):
    with pytest.raises(InvalidAddress) as caught:
        parse_address(text)
    assert caught.value.address == text.strip()
    assert "invalid email address" in str(caught.value) and caught.value.reason
