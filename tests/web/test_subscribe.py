"""Sign-up and double opt-in through the test client, with the real outbox transport."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time

import pytest

from newsletter.store import Status
from newsletter.tokens import Purpose, make_token
from newsletter.web.background import Background
from newsletter.web.limits import Limit, RateLimiter
from newsletter.web.signup import CONFIRMATIONS
from tests.web.conftest import path_of


def csrf(client, remote: str = "127.0.0.1") -> str:
    html = client.get("/subscribe", environ_base={"REMOTE_ADDR": remote}).get_data(as_text=True)
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_up(client, address: str, name: str = "", **extra: str):
    data = {"email": address, "name": name, "csrf": csrf(client), "website": "", **extra}
    return client.post("/subscribe", data=data)


def confirmations(settings) -> list[email.message.EmailMessage]:
    folder = settings.outbox_dir / CONFIRMATIONS
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) \
        if folder.exists() else []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in files]


def flip(token: str, index: int) -> str:
    """``token`` with one character changed. (Not the last: the last base64 character of a
    signature carries 2 unused bits, so some changes there spell the same signature.)"""
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1:]


def confirm_link(message, settings) -> str:
    text = message.get_body(("plain",)).get_content()
    url = re.search(re.escape(settings.base_url) + r"/confirm/\S+", text)
    assert url, text
    return path_of(url.group(0), settings)


def test_the_form_has_labels_a_csrf_token_and_a_hidden_honeypot(client):
    response = client.get("/subscribe?email=anna%40example.org&name=Anna")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<label for="email">' in html and '<label for="name">' in html
    assert 'value="anna@example.org"' in html and 'value="Anna"' in html
    assert re.search(r'<div class="trap" aria-hidden="true">', html)
    assert 'name="website" value="" tabindex="-1"' in html
    assert '<html lang="en">' in html and "I would like to receive ASIT Newsletter" in html


def test_a_sign_up_makes_a_pending_subscriber_with_evidence_and_sends_the_link(
        client, ctx, store, web_settings):
    response = sign_up(client, "Anna.Kowalska@example.org", "Anna Kowalska",)
    assert response.status_code == 200 and "Check your inbox" in response.get_data(as_text=True)
    ctx.signups.drain()
    pending = store.get_by_email("anna.kowalska@example.org")
    assert pending.status is Status.PENDING and pending.name == "Anna Kowalska"
    assert pending.source == "web"
    consent = store.personal_data("anna.kowalska@example.org")["consents"]
    assert [c["method"] for c in consent] == ["web form"] and consent[0]["ip"] == "127.0.0.1"
    assert "I would like to receive ASIT Newsletter" in json.loads(consent[0]["evidence"])[
        "wording"]
    [message] = confirmations(web_settings)
    assert message["To"] == "Anna.Kowalska@example.org"
    assert message["Subject"] and message["Message-ID"].endswith("@asit-project.eu>")

    link = confirm_link(message, web_settings)
    page = client.get(link)
    assert page.status_code == 200 and "Confirm my subscription" in page.get_data(as_text=True)
    assert store.get(pending.id).status is Status.PENDING
    confirmed = client.post(link)
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.get_data(
        as_text=True)
    assert store.get(pending.id).status is Status.ACTIVE
    methods = [c["method"] for c in store.personal_data(pending.email)["consents"]]
    assert methods == ["web form", "confirmation link"]
    again = client.post(link)
    assert again.status_code == 200 and "already subscribed" in again.get_data(as_text=True)


def test_the_answer_is_the_same_whoever_signs_up(client, ctx, store, add, web_settings):
    add("active@example.org")
    add("bounced@example.org", status=Status.BOUNCED)
    add("erased@example.org")
    store.forget("erased@example.org")
    answers = {address: sign_up(client, address).get_data()
               for address in ("new@example.org", "active@example.org", "bounced@example.org",
                               "erased@example.org")}
    ctx.signups.drain()
    assert len(set(answers.values())) == 1
    assert [m["To"] for m in confirmations(web_settings)] == ["new@example.org"]
    assert store.get_by_email("erased@example.org") is None
    assert store.get_by_email("bounced@example.org").status is Status.BOUNCED
    assert store.get_by_email("active@example.org").status is Status.ACTIVE


def test_a_pending_address_gets_the_link_again(client, ctx, web_settings):
    sign_up(client, "anna@example.org")
    sign_up(client, "anna@example.org")
    ctx.signups.drain()
    assert len(confirmations(web_settings)) == 2


def test_someone_who_left_comes_back_only_through_a_new_link(client, ctx, store, add,
                                                            web_settings, monkeypatch):
    former = add("former@example.org")
    real_time = time.time
    monkeypatch.setattr("newsletter.tokens.time.time", lambda: real_time() - 3600)
    old_link = f"/confirm/{make_token(web_settings, Purpose.CONFIRM, former.id)}"
    monkeypatch.undo()
    store.set_status(former.id, Status.UNSUBSCRIBED, reason="unsubscribe page")
    assert client.post(old_link).status_code == 400
    assert store.get(former.id).status is Status.UNSUBSCRIBED

    sign_up(client, "former@example.org")
    ctx.signups.drain()
    assert store.get(former.id).status is Status.UNSUBSCRIBED  # not silently
    link = confirm_link(confirmations(web_settings)[-1], web_settings)
    assert client.post(link).status_code == 200
    back = store.get(former.id)
    assert (back.status, back.status_reason) == (Status.ACTIVE, "rejoined (confirmation link)")


def test_the_honeypot_drops_the_sign_up(client, ctx, store, web_settings, caplog):
    response = sign_up(client, "bot@example.org", website="https://spam.example")
    ctx.signups.drain()
    assert response.status_code == 200 and "Check your inbox" in response.get_data(as_text=True)
    assert store.get_by_email("bot@example.org") is None and not confirmations(web_settings)
    assert any(getattr(r, "fields", {}).get("outcome") == "honeypot" for r in caplog.records)


@pytest.mark.parametrize("token", ["", "nonsense", "expired", "other client"])
def test_a_missing_or_stale_csrf_token_returns_the_filled_in_form(client, ctx, store, token,
                                                                  monkeypatch):
    if token == "expired":
        token = csrf(client)
        monkeypatch.setattr("newsletter.web.signing.FORM_MAX_AGE", -1)
    elif token == "other client":
        token = csrf(client, remote="192.0.2.7")
    response = client.post("/subscribe", data={"email": "anna@example.org", "name": "Anna",
                                               "csrf": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "This form had expired" in html
    assert 'value="anna@example.org"' in html and 'value="Anna"' in html
    ctx.signups.drain()
    assert store.get_by_email("anna@example.org") is None


@pytest.mark.parametrize(("address", "name", "field"), [
    ("not-an-address", "", "email"), ("", "", "email"), ("anna@example.org", "x" * 201, "name")])
def test_invalid_input_returns_the_form_with_the_problem(client, ctx, store, address, name,
                                                         field):
    response = sign_up(client, address, name)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'aria-describedby="{field}-problem"' in html
    ctx.signups.drain()
    assert store.count() == 0


def test_the_per_client_limit_answers_429(client, ctx, store):
    ctx.per_client = RateLimiter(ctx.buckets, "client", Limit(burst=2, per_hour=1))
    codes = [sign_up(client, f"p{n}@example.org").status_code for n in range(3)]
    assert codes == [200, 200, 429]
    refused = sign_up(client, "p9@example.org")
    assert int(refused.headers["Retry-After"]) > 3000
    assert "Too many attempts" in refused.get_data(as_text=True)
    ctx.signups.drain()
    assert store.count() == 2


def test_the_per_address_limit_stops_mail_silently(client, ctx, web_settings):
    answers = {sign_up(client, "anna@example.org").get_data() for _ in range(5)}
    ctx.signups.drain()
    assert len(answers) == 1
    assert len(confirmations(web_settings)) == 3  # the burst of the per-address limit


def test_a_full_queue_answers_503(client, ctx, store):
    ctx.signups = Background(capacity=0)
    response = sign_up(client, "anna@example.org")
    assert response.status_code == 503
    assert store.get_by_email("anna@example.org") is None


def test_a_transport_failure_is_logged_not_shown(client, ctx, store, caplog, monkeypatch):
    def broken():
        raise OSError("disk full")

    monkeypatch.setattr(ctx, "transport", broken)
    assert sign_up(client, "anna@example.org").status_code == 200
    ctx.signups.drain()
    assert any(r.getMessage() == "sign-up failed" for r in caplog.records)


def test_an_expired_confirmation_link_gets_a_friendly_page(client, add, web_settings, store,
                                                          monkeypatch):
    pending = add("anna@example.org", status=Status.PENDING)
    link = f"/confirm/{make_token(web_settings, Purpose.CONFIRM, pending.id)}"
    monkeypatch.setattr("newsletter.tokens.CONFIRM_MAX_AGE", -1)
    for method in (client.get, client.post):
        response = method(link)
        assert response.status_code == 400
        assert "This link has expired" in response.get_data(as_text=True)
        assert 'href="/subscribe"' in response.get_data(as_text=True)
    assert store.get(pending.id).status is Status.PENDING


@pytest.mark.parametrize("case", ["tampered", "unsubscribe token", "erased", "bounced"])
def test_confirmation_refusals_change_nothing(client, add, web_settings, store, case):
    pending = add("anna@example.org", status=Status.PENDING)
    token = make_token(web_settings, Purpose.CONFIRM, pending.id)
    if case == "tampered":
        token = flip(token, -5)
    elif case == "unsubscribe token":
        token = make_token(web_settings, Purpose.UNSUBSCRIBE, pending.id)
    elif case == "erased":
        store.forget(pending.email)
    else:
        store.set_status(pending.id, Status.BOUNCED, reason="hard bounce")
    for method in (client.get, client.post):
        assert method(f"/confirm/{token}").status_code == 400
    found = store.get(pending.id)
    assert found is None or found.status in (Status.PENDING, Status.BOUNCED)
