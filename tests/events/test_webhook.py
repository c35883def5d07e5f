"""``handle_sns_request``, the function behind ``POST /webhooks/ses``: signed SNS posts in, HTTP
status out; refused posts change nothing. Hypothesis fuzzes it with arbitrary bodies."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from newsletter.config import Settings
from newsletter.feedback import sns as sns_module
from newsletter.feedback.events import handle_sns_request
from newsletter.feedback.sns import CertificateCache, SnsVerifier, fetch_https
from newsletter.store import Status, Store, Subscriber
from newsletter.store.events import EventRecord
from tests.events.conftest import (
    OTHER_TOPIC,
    READERS,
    TOPIC,
    CertHost,
    Recipient,
    Sns,
    body,
    send_issue,
    ses,
    sns_time,
)
from tests.events.test_parse import JSON, SES_LIKE

ANA, JAN, MARIA, ELENI = READERS


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything an SNS post could change."""
    with store.engine.connect() as connection:
        people = connection.execute(select(
            Subscriber.id, Subscriber.status, Subscriber.status_changed_at).order_by(
            Subscriber.id)).all()
        events = connection.execute(select(EventRecord.event_key).order_by(
            EventRecord.id)).all()
    return tuple(people), tuple(events)


@pytest.fixture
def post(events_settings: Settings, store: Store,
         verifier: SnsVerifier) -> Any:
    def handle(envelope: dict[str, Any] | bytes) -> tuple[int, str]:
        data = envelope if isinstance(envelope, bytes) else body(envelope)
        return handle_sns_request(data, events_settings, store, verifier=verifier)
    return handle


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_bounce_suppresses_and_a_redelivery_changes_nothing(
        post: Any, sns: Sns, store: Store, sent: dict[str, Recipient], version: str) -> None:
    envelope = sns.notification(ses("identity/bounce-permanent", sent[ANA].message_id),
                                version=version)
    assert post(envelope) == (200, "applied")
    assert store.is_suppressed(ANA)
    before = snapshot(store)
    assert post(envelope) == (200, "duplicate")
    assert snapshot(store) == before


@pytest.mark.parametrize("name", ["identity/complaint", "event/complaint"])
def test_a_signed_complaint_suppresses(post: Any, sns: Sns, store: Store,
                                       sent: dict[str, Recipient], name: str) -> None:
    assert post(sns.notification(ses(name, sent[MARIA].message_id)))[0] == 200
    maria = store.get_by_email(MARIA)
    assert maria is not None and maria.status is Status.COMPLAINED


def test_every_fixture_goes_through(post: Any, sns: Sns, sent: dict[str, Recipient]) -> None:
    names = [f"{folder.name}/{path.stem}" for folder in (Path(__file__).parent / "fixtures")
             .iterdir() if folder.is_dir() for path in sorted(folder.glob("*.json"))]
    assert len(names) == 16
    for name in names:
        status, answer = post(sns.notification(ses(name, sent[ELENI].message_id)
                                               if "mail" in ses(name) else ses(name)))
        assert status == 200 and answer in ("applied", "unmatched"), name


def refused(post: Any, store: Store, envelope: dict[str, Any] | bytes, status: int) -> str:
    before = snapshot(store)
    answer = post(envelope)
    assert answer[0] == status, answer
    assert snapshot(store) == before
    return str(answer[1])


def test_what_is_refused_changes_nothing(post: Any, sns: Sns, store: Store,
                                         sent: dict[str, Recipient]) -> None:
    bounce = ses("identity/bounce-permanent", sent[ANA].message_id)
    good = sns.notification(bounce)
    tampered = good | {"Message": good["Message"].replace(sent[ANA].message_id,
                                                          sent[JAN].message_id)}
    assert refused(post, store, tampered, 403) == "refused: signature"
    assert refused(post, store, sns.notification(bounce, topic=OTHER_TOPIC),
                   403) == "refused: topic"
    assert refused(post, store, sns.notification(
        bounce, cert_url="https://sns.eu-west-1.amazonaws.com.evil.example/c.pem"),
        403) == "refused: certificate host"
    old = sns_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    assert refused(post, store, sns.notification(bounce, timestamp=old), 403) == "refused: stale"
    assert refused(post, store, b"{not json", 400) == "malformed"
    assert refused(post, store, sns.notification("not json"), 400) == "malformed"
    assert refused(post, store, sns.notification({"eventType": "Bounce"}), 400) == "malformed"
    assert not store.is_suppressed(ANA) and not store.is_suppressed(JAN)


def test_a_subscription_is_confirmed_only_for_an_allowed_topic_on_the_trusted_host(
        post: Any, sns: Sns, store: Store, cert_host: CertHost) -> None:
    before = cert_host.fetched("/confirm")
    assert post(sns.confirmation()) == (200, "subscription confirmed")
    assert cert_host.fetched("/confirm") == before + 1
    refused(post, store, sns.confirmation(topic=OTHER_TOPIC), 403)
    elsewhere = sns.confirmation(subscribe_url="https://evil.example/confirm?Token=x")
    assert refused(post, store, elsewhere, 403) == "refused: subscribe host"
    plain = sns.confirmation(subscribe_url=cert_host.url.replace("https", "http") + "/confirm")
    refused(post, store, plain, 403)
    assert cert_host.fetched("/confirm") == before + 1


def test_a_failed_confirmation_is_tried_again(post: Any, sns: Sns, store: Store,
                                              cert_host: CertHost) -> None:
    assert refused(post, store, sns.confirmation(
        subscribe_url=cert_host.url + "/unavailable"), 500) == "try again later"


def test_an_unsubscribe_confirmation_is_ignored(post: Any, sns: Sns, store: Store) -> None:
    assert refused(post, store, sns.confirmation("UnsubscribeConfirmation"), 200) == "ignored"


def test_a_certificate_host_that_fails_gets_a_retry(
        events_settings: Settings, store: Store, sns: Sns, cert_host: CertHost,
        sent: dict[str, Recipient]) -> None:
    verifier = SnsVerifier.from_settings(events_settings, CertificateCache(
        fetch=functools.partial(fetch_https, context=cert_host.context)))
    envelope = sns.notification(ses("identity/bounce-permanent", sent[ANA].message_id),
                                cert_url=cert_host.url + "/unavailable")
    before = snapshot(store)
    assert handle_sns_request(body(envelope), events_settings, store, verifier=verifier) == (
        500, "try again later")
    assert snapshot(store) == before


def test_our_own_failure_is_a_500_so_sns_retries(
        post: Any, sns: Sns, store: Store, sent: dict[str, Recipient],
        caplog: pytest.LogCaptureFixture) -> None:
    envelope = sns.notification(ses("identity/bounce-permanent", sent[ANA].message_id))
    with store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_elsewhere"))
    try:
        assert post(envelope) == (500, "internal error")
        assert "SNS will retry" in caplog.text
    finally:
        with store.engine.begin() as connection:
            connection.execute(text("ALTER TABLE events_elsewhere RENAME TO events"))
    assert not store.is_suppressed(ANA)
    assert post(envelope) == (200, "applied")  # the retry
    assert store.is_suppressed(ANA)


def test_the_default_wiring_uses_the_settings_and_the_shared_cache(
        events_settings: Settings, store: Store, sns: Sns, cert_host: CertHost,
        sent: dict[str, Recipient], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the web app calls: no verifier given (tests swap the process-wide cache)."""
    monkeypatch.setattr(sns_module, "CERTIFICATES", CertificateCache(
        fetch=functools.partial(fetch_https, context=cert_host.context)))
    envelope = sns.notification(ses("event/open", sent[ELENI].message_id))
    assert handle_sns_request(body(envelope), events_settings, store) == (200, "applied")
    assert len(sns_module.CERTIFICATES) == 1
    closed = events_settings.model_copy(update={"sns_topic_arns": ()})
    assert handle_sns_request(body(envelope), closed, store) == (403, "refused: topic")


# ---------------------------------------------------------------- fuzzing


@pytest.fixture
def fuzz_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'fuzz.db'}") as opened:
        send_issue(opened, READERS)
        yield opened


TEXT = st.text(max_size=30)
CERT_URL = "{the test certificate host}"  # replaced by the real URL in each example
ENVELOPE = st.fixed_dictionaries(
    {"Type": st.sampled_from(["Notification", "SubscriptionConfirmation",
                              "UnsubscribeConfirmation"]) | TEXT},
    optional={"MessageId": TEXT, "TopicArn": st.just(TOPIC) | TEXT,
              "Message": TEXT | JSON.map(json.dumps), "Subject": st.none() | TEXT,
              "Timestamp": st.just(sns_time()) | TEXT,
              "SignatureVersion": st.sampled_from(["1", "2"]) | TEXT,
              "Signature": st.binary(max_size=256).map(
                  lambda b: base64.b64encode(b).decode()) | TEXT,
              "SigningCertURL": st.just(CERT_URL) | TEXT,
              "SubscribeURL": TEXT, "Token": TEXT, "UnsubscribeURL": TEXT}) | JSON


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | ENVELOPE.map(lambda d: json.dumps(d).encode()))
def test_no_unsigned_body_crashes_the_webhook_or_changes_anything(
        events_settings: Settings, fuzz_store: Store, verifier: SnsVerifier,
        cert_host: CertHost, data: bytes) -> None:
    data = data.replace(CERT_URL.encode(), cert_host.cert_url.encode())
    before = snapshot(fuzz_store)
    status, answer = handle_sns_request(data, events_settings, fuzz_store, verifier=verifier)
    assert status in (400, 403), (status, answer)
    assert snapshot(fuzz_store) == before


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=TEXT | JSON.map(json.dumps) | SES_LIKE.map(json.dumps),
       version=st.sampled_from(["1", "2"]))
def test_no_signed_message_crashes_the_webhook(
        events_settings: Settings, fuzz_store: Store, verifier: SnsVerifier, sns: Sns,
        message: str, version: str) -> None:
    before = snapshot(fuzz_store)
    status, answer = handle_sns_request(body(sns.notification(message, version=version)),
                                        events_settings, fuzz_store, verifier=verifier)
    assert status in (200, 400), (status, answer)
    if status == 400:
        assert snapshot(fuzz_store) == before
