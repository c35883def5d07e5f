"""Unsubscribe through the test client: the page, one-click POSTs, undo, and every refusal."""

from __future__ import annotations

import re

import pytest

from newsletter.store import Status
from newsletter.tokens import Purpose, make_token, unsubscribe_url
from newsletter.web.signing import sign
from tests.web.conftest import OLD_SECRET, path_of
from tests.web.test_subscribe import flip

ISSUE = "2025-04-asit-highlights"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def link(web_settings, subscriber):
    return path_of(unsubscribe_url(web_settings, subscriber.id, ISSUE), web_settings)


def undo_field(html: str) -> tuple[str, str]:
    """(form action, undo token) of the undo form on the unsubscribed page."""
    action = re.search(r'<form method="post" action="([^"]+)">', html)
    token = re.search(r'name="undo" value="([^"]+)"', html)
    assert action and token, html
    return action.group(1), token.group(1)


def test_page_shows_the_masked_address_and_a_button_and_changes_nothing(client, link, store,
                                                                          subscriber):
    response = client.get(link)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "a•••a@k•••e.org" in html and "anna.kowalska" not in html
    assert '<button class="button" type="submit">Unsubscribe</button>' in html
    assert 'name="List-Unsubscribe" value="One-Click"' in html
    assert store.get(subscriber.id).status is Status.ACTIVE
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_one_click_post_unsubscribes_at_once_with_the_issue(client, link, store, subscriber):
    response = client.post(link, data=ONE_CLICK)
    assert response.status_code == 200 and not response.location
    assert "Set-Cookie" not in response.headers
    left = store.get(subscriber.id)
    assert left.status is Status.UNSUBSCRIBED
    assert (left.status_reason, left.status_issue) == ("one-click", ISSUE)
    assert "You are unsubscribed" in response.get_data(as_text=True)


def test_multipart_and_empty_bodies_unsubscribe_too(client, web_settings, add, store):
    first, second = add("one@example.org"), add("two@example.org")
    multipart = client.post(path_of(unsubscribe_url(web_settings, first.id, ISSUE), web_settings),
                            data=ONE_CLICK, content_type="multipart/form-data")
    empty = client.post(path_of(unsubscribe_url(web_settings, second.id), web_settings))
    assert multipart.status_code == empty.status_code == 200
    assert store.get(first.id).status is store.get(second.id).status is Status.UNSUBSCRIBED
    assert store.get(second.id).status_issue is None


def test_the_page_button_records_its_own_reason(client, link, store, subscriber):
    client.post(link, data={**ONE_CLICK, "via": "page"})
    assert store.get(subscriber.id).status_reason == "unsubscribe page"


def test_posting_twice_is_idempotent(client, link, store, subscriber):
    first = client.post(link, data=ONE_CLICK)
    when = store.get(subscriber.id).unsubscribed_at
    second = client.post(link, data=ONE_CLICK)
    assert first.status_code == second.status_code == 200
    assert store.get(subscriber.id).unsubscribed_at == when


def test_a_bounce_on_record_is_kept(client, link, store, subscriber):
    store.set_status(subscriber.id, Status.BOUNCED, reason="hard bounce")
    response = client.post(link, data=ONE_CLICK)
    assert response.status_code == 200
    assert store.get(subscriber.id).status is Status.BOUNCED
    assert 'name="undo"' not in response.get_data(as_text=True)


def test_an_erased_subscriber_gets_the_neutral_answer(client, link, store, subscriber):
    store.forget(subscriber.email)
    for response in (client.get(link), client.post(link, data=ONE_CLICK)):
        assert response.status_code == 200
        assert "will not receive ASIT Newsletter" in response.get_data(as_text=True)
    assert store.get(subscriber.id) is None


@pytest.mark.parametrize("mangle", [
    lambda t: flip(t, -5),  # signature changed
    lambda t: t.replace(t.split(".")[0], t.split(".")[0][:-2] + "Mw"),  # payload changed
    lambda t: t + "=",  # padded
    lambda t: t.split(".")[0],  # no signature
    lambda t: "SAMPLE",
])
def test_a_tampered_token_gets_a_400_page_and_changes_nothing(client, web_settings, subscriber,
                                                              store, mangle):
    token = make_token(web_settings, Purpose.UNSUBSCRIBE, subscriber.id, ISSUE)
    for method in (client.get, client.post):
        response = method(f"/unsubscribe/{mangle(token)}", data=ONE_CLICK)
        assert response.status_code == 400
        assert "This link does not work" in response.get_data(as_text=True)
    assert store.get(subscriber.id).status is Status.ACTIVE


def test_a_confirmation_token_cannot_unsubscribe(client, web_settings, subscriber, store):
    token = make_token(web_settings, Purpose.CONFIRM, subscriber.id)
    assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 400
    assert store.get(subscriber.id).status is Status.ACTIVE


def test_links_signed_with_a_previous_key_still_work(client, web_settings, subscriber, store):
    old = web_settings.model_copy(update={"secret_key": OLD_SECRET, "previous_secret_keys": ()})
    link = path_of(unsubscribe_url(old, subscriber.id, ISSUE), web_settings)
    assert client.post(link, data=ONE_CLICK).status_code == 200
    assert store.get(subscriber.id).status is Status.UNSUBSCRIBED


def test_undo_resubscribes_only_that_subscriber(client, link, store, subscriber, add,
                                                web_settings):
    other = add("other@example.org")
    client.post(path_of(unsubscribe_url(web_settings, other.id), web_settings), data=ONE_CLICK)
    action, token = undo_field(client.post(link, data=ONE_CLICK).get_data(as_text=True))
    response = client.post(action, data={"undo": token})
    assert response.status_code == 200 and "Welcome back" in response.get_data(as_text=True)
    back = store.get(subscriber.id)
    assert back.status is Status.ACTIVE
    assert (back.status_reason, back.status_issue) == ("undo on the unsubscribe page", ISSUE)
    assert store.get(other.id).status is Status.UNSUBSCRIBED
    assert client.post(action, data={"undo": token}).status_code == 200  # pressed twice


def test_undo_is_refused_without_a_valid_token(client, link, store, subscriber, web_settings):
    action, token = undo_field(client.post(link, data=ONE_CLICK).get_data(as_text=True))
    forged = sign(web_settings, "undo", f"{subscriber.id}:0")
    for data in ({}, {"undo": token[:-2]}, {"undo": forged}, {"undo": "x" * 5000}):
        response = client.post(action, data=data)
        assert response.status_code == 400
        assert "This button has expired" in response.get_data(as_text=True)
    assert store.get(subscriber.id).status is Status.UNSUBSCRIBED


def test_undo_cannot_reverse_a_later_bounce(client, link, store, subscriber):
    action, token = undo_field(client.post(link, data=ONE_CLICK).get_data(as_text=True))
    store.set_status(subscriber.id, Status.BOUNCED, reason="hard bounce")
    assert client.post(action, data={"undo": token}).status_code == 400
    assert store.get(subscriber.id).status is Status.BOUNCED


def test_undo_of_another_subscribers_unsubscribe_is_refused(client, link, web_settings, add,
                                                            store):
    other = add("other@example.org")
    other_link = path_of(unsubscribe_url(web_settings, other.id), web_settings)
    _, token = undo_field(client.post(other_link, data=ONE_CLICK).get_data(as_text=True))
    client.post(link, data=ONE_CLICK)
    assert client.post(f"{link}/undo", data={"undo": token}).status_code == 400
    assert store.get(other.id).status is Status.UNSUBSCRIBED


def test_undo_expires(client, link, store, subscriber, monkeypatch):
    action, token = undo_field(client.post(link, data=ONE_CLICK).get_data(as_text=True))
    monkeypatch.setattr("newsletter.web.unsubscribe.UNDO_MAX_AGE", -1)
    assert client.post(action, data={"undo": token}).status_code == 400
    assert store.get(subscriber.id).status is Status.UNSUBSCRIBED


def test_the_help_page_explains_how_to_leave(client):
    response = client.get("/unsubscribe/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "mailto:info@asit-project.eu" in html and 'href="/subscribe"' in html
