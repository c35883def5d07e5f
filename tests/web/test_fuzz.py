"""Hypothesis against the token verifier and the unsubscribe endpoint: no crash, no change."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from newsletter.errors import InvalidToken
from newsletter.store import Status
from newsletter.tokens import Purpose, make_token, read_token
from tests.web.test_get_is_safe import snapshot

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
ANY_CHARACTER = st.characters(exclude_categories=("Cs",))  # what a URL can carry
URL_SAFE = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=")


@st.composite
def mutated(draw, token: str) -> str:
    """A real token, changed a little: characters replaced, inserted, deleted, or cut short."""
    chars = list(token)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        if action == "truncate":
            chars = chars[:where]
        elif action == "insert":
            chars.insert(where, draw(URL_SAFE | ANY_CHARACTER))
        elif chars and where < len(chars):
            if action == "replace":
                chars[where] = draw(URL_SAFE | ANY_CHARACTER)
            else:
                del chars[where]
    return "".join(chars)


def real_token(settings_, purpose=Purpose.UNSUBSCRIBE) -> str:
    return make_token(settings_, purpose, 1, "2025-04-asit-highlights")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("purpose", list(Purpose))
@FUZZ
@given(data=st.data())
def test_the_verifier_refuses_anything_but_the_real_token(web_settings, purpose, data):
    token = real_token(web_settings, purpose)
    candidate = data.draw(st.text() | mutated(token))
    assume(candidate != token)
    try:
        claims = read_token(web_settings, candidate, purpose)
    except InvalidToken:
        return
    # Only another spelling of the same signature gets through, never other claims:
    # itsdangerous decodes base64 leniently (characters outside the alphabet are skipped, the
    # last character of a signature carries two bits nobody reads).
    assert claims == read_token(web_settings, token, purpose)


def _unsubscribe_paths(settings_, token: str) -> st.SearchStrategy[str]:
    """Paths that must be refused: not the token nor another spelling of it (see above), nor
    what a URL cannot carry as one path segment."""
    return (st.text(min_size=1) | mutated(token)).filter(
        lambda t: "/" not in t and t not in ("", ".", "..") and not _verifies(settings_, t))


def _verifies(settings_, token: str) -> bool:
    try:
        read_token(settings_, token, Purpose.UNSUBSCRIBE)
    except InvalidToken:
        return False
    return True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@FUZZ
@given(data=st.data())
def test_the_endpoint_answers_200_or_400_and_changes_nothing(client, store, subscriber,
                                                             web_settings, data):
    assert subscriber.id == 1 and subscriber.status is Status.ACTIVE
    before = snapshot(store)
    token = data.draw(_unsubscribe_paths(web_settings, real_token(web_settings)))
    method = data.draw(st.sampled_from(["GET", "POST"]))
    body = data.draw(st.binary(max_size=300) | st.just(b"List-Unsubscribe=One-Click"))
    kind = data.draw(st.sampled_from(["application/x-www-form-urlencoded",
                                      "multipart/form-data; boundary=x", "text/plain"]))
    with client.open(f"/unsubscribe/{quote(token, safe='')}", method=method, data=body,
                     content_type=kind) as response:
        assert response.status_code in (200, 400), (token, response.status_code)
    assert snapshot(store) == before
