"""SNS verification: SigV1 and SigV2 against a certificate served over https on 127.0.0.1, and
everything that must be refused before anything is believed."""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

import pytest

from newsletter.errors import EventSourceUnavailable, MalformedEvent, UntrustedMessage
from newsletter.feedback.sns import (
    CERTIFICATES,
    CertificateCache,
    SnsVerifier,
    canonical_string,
    fetch_https,
    parse_message,
)
from tests.events.conftest import (
    OTHER_TOPIC,
    TOPIC,
    CertHost,
    Sns,
    body,
    canonical,
    make_pki,
    ses,
    sign,
    sns_time,
)


def verify(verifier: SnsVerifier, envelope: dict[str, Any]) -> None:
    verifier.verify(parse_message(body(envelope)))


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_notification_verifies(sns: Sns, verifier: SnsVerifier, version: str) -> None:
    verify(verifier, sns.notification(ses("identity/bounce-permanent"), version=version))


@pytest.mark.parametrize("version", ["1", "2"])
def test_subject_and_confirmations_are_signed_too(sns: Sns, verifier: SnsVerifier,
                                                  version: str) -> None:
    verify(verifier, sns.notification("{}", subject="Amazon SES Email Event Notification",
                                       version=version))
    verify(verifier, sns.confirmation(version=version))
    verify(verifier, sns.confirmation("UnsubscribeConfirmation", version=version))


def test_the_canonical_string_is_the_documented_one(sns: Sns) -> None:
    envelope = sns.notification('{"a": "line one\\nline two"}', subject="Hi")
    assert canonical_string(parse_message(body(envelope))) == canonical(envelope)
    assert canonical(envelope).startswith(b'Message\n{"a": "line one\\nline two"}\nMessageId\n')


def test_a_null_subject_is_an_absent_subject(sns: Sns, verifier: SnsVerifier) -> None:
    envelope = sns.notification("{}")
    verify(verifier, envelope | {"Subject": None})


@pytest.mark.parametrize("field", ["Message", "MessageId", "Timestamp", "Type", "Subject"])
def test_a_tampered_field_is_refused(sns: Sns, verifier: SnsVerifier, field: str) -> None:
    envelope = sns.notification(ses("identity/delivery"), subject="Amazon SES")
    tampered = {"Message": envelope["Message"].replace("Delivery", "Bounce"),
                "MessageId": "00000000-0000-0000-0000-000000000000",
                "Timestamp": sns_time(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)),
                "Type": "SubscriptionConfirmation", "Subject": "Amazon SES!"}[field]
    changed = envelope | {field: tampered}
    if field == "Type":
        changed |= {"SubscribeURL": "https://127.0.0.1/confirm", "Token": "x"}
    with pytest.raises(UntrustedMessage) as refused:
        verify(verifier, changed)
    assert refused.value.reason == "signature"


def test_a_signature_by_another_key_is_refused(sns: Sns, verifier: SnsVerifier,
                                              tmp_path: Any) -> None:
    stranger = make_pki(tmp_path)
    envelope = sign({k: v for k, v in sns.notification("{}").items()
                     if k not in ("Signature", "SignatureVersion")}, stranger.key)
    with pytest.raises(UntrustedMessage, match="signature"):
        verify(verifier, envelope)


@pytest.mark.parametrize("signature", ["", "not base64!", "AAAA", "QUJD" * 64])
def test_broken_signatures_are_refused(sns: Sns, verifier: SnsVerifier, signature: str) -> None:
    with pytest.raises(UntrustedMessage, match="signature"):
        verify(verifier, sns.notification("{}") | {"Signature": signature})


@pytest.mark.parametrize("version", ["0", "3", "", "SHA256"])
def test_unknown_signature_versions_are_refused(sns: Sns, verifier: SnsVerifier,
                                                version: str) -> None:
    with pytest.raises(UntrustedMessage, match="SignatureVersion"):
        verify(verifier, sns.notification("{}") | {"SignatureVersion": version})


def test_a_v1_signature_claimed_as_v2_is_refused(sns: Sns, verifier: SnsVerifier) -> None:
    with pytest.raises(UntrustedMessage, match="signature"):
        verify(verifier, sns.notification("{}", version="1") | {"SignatureVersion": "2"})


def test_a_topic_outside_the_allowlist_is_refused_without_any_fetch(
        sns: Sns, verifier: SnsVerifier, cert_host: CertHost) -> None:
    before = len(cert_host.requests)
    with pytest.raises(UntrustedMessage) as refused:
        verify(verifier, sns.notification("{}", topic=OTHER_TOPIC))
    assert refused.value.reason == "topic" and len(cert_host.requests) == before
    nobody = SnsVerifier((), r"127\.0\.0\.1", certificates=verifier.certificates)
    with pytest.raises(UntrustedMessage, match="sns_topic_arns"):
        verify(nobody, sns.notification("{}"))


@pytest.mark.parametrize("url", [
    "https://evil.example/SimpleNotificationService-1.pem",
    "http://127.0.0.1/SimpleNotificationService-1.pem",
    "https://127.0.0.1.evil.example/cert.pem",
    "https://127.0.0.1@evil.example/cert.pem",
    "https://user@127.0.0.1/cert.pem",
    "https://127.0.0.1:99999/cert.pem",
    "file:///etc/ssl/certs/ca-certificates.crt",
    "//127.0.0.1/cert.pem",
    "",
])
def test_a_certificate_off_the_trusted_host_is_refused_without_any_fetch(
        sns: Sns, verifier: SnsVerifier, cert_host: CertHost, url: str) -> None:
    before = len(cert_host.requests)
    with pytest.raises(UntrustedMessage) as refused:
        verify(verifier, sns.notification("{}", cert_url=url))
    assert refused.value.reason == "certificate host" and len(cert_host.requests) == before


def test_the_default_host_pattern_is_aws_s() -> None:
    aws = SnsVerifier([TOPIC], r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
    assert aws.trusted_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-a.pem")
    assert aws.trusted_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    for url in ("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
                "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
                "http://sns.eu-west-1.amazonaws.com/x.pem",
                "https://sns.eu-west-1.amazonaws.com@evil.example/x.pem"):
        assert not aws.trusted_url(url), url
    unanchored = SnsVerifier([TOPIC], r"sns\.amazonaws\.com")  # matched whole, all the same
    assert not unanchored.trusted_url("https://sns.amazonaws.com.evil.example/x.pem")


@pytest.mark.parametrize("age", [dt.timedelta(hours=1, minutes=6), dt.timedelta(days=400),
                                 -dt.timedelta(minutes=6)])
def test_stale_or_future_messages_are_refused(sns: Sns, verifier: SnsVerifier,
                                              age: dt.timedelta) -> None:
    when = sns_time(dt.datetime.now(dt.UTC) - age)
    with pytest.raises(UntrustedMessage) as refused:
        verify(verifier, sns.notification("{}", timestamp=when))
    assert refused.value.reason == "stale"


def test_a_message_retried_within_the_hour_is_accepted(sns: Sns, verifier: SnsVerifier) -> None:
    when = sns_time(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=59))
    verify(verifier, sns.notification("{}", timestamp=when))


def test_certificates_are_fetched_once_and_cached(sns: Sns, verifier: SnsVerifier,
                                                  cert_host: CertHost) -> None:
    before = cert_host.fetched("/SimpleNotificationService-")
    for version in ("1", "2", "1"):
        verify(verifier, sns.notification("{}", version=version))
    assert cert_host.fetched("/SimpleNotificationService-") == before + 1
    assert len(verifier.certificates) == 1


def test_the_cache_is_bounded(cert_host: CertHost) -> None:
    cache = CertificateCache(fetch=functools.partial(fetch_https, context=cert_host.context),
                             size=2)
    for n in range(3):
        cache.get(f"{cert_host.cert_url}?{n}")
    assert len(cache) == 2


@pytest.mark.parametrize(("path", "error", "reason"), [
    ("/redirect", UntrustedMessage, "certificate"),
    ("/missing.pem", UntrustedMessage, "certificate"),
    ("/garbage", UntrustedMessage, "certificate"),
    ("/unavailable", EventSourceUnavailable, None),
])
def test_what_a_certificate_fetch_can_answer(cert_host: CertHost, path: str,
                                             error: type[Exception], reason: str | None) -> None:
    cache = CertificateCache(fetch=functools.partial(fetch_https, context=cert_host.context))
    with pytest.raises(error) as raised:
        cache.get(cert_host.url + path)
    assert getattr(raised.value, "reason", None) == reason
    assert len(cache) == 0


def test_production_fetches_trust_only_the_system_cas(cert_host: CertHost,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(UntrustedMessage, match=r"self.signed|certificate verify failed"):
        fetch_https(cert_host.cert_url)


def test_ssl_cert_file_lets_a_real_server_trust_a_test_host(
        cert_host: CertHost, pki: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """How tests of `newsletter serve` can use this host: no code hook, just the environment."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.cert_file))
    assert fetch_https(cert_host.cert_url) == cert_host.pem


def test_nothing_but_https_is_fetched() -> None:
    with pytest.raises(UntrustedMessage, match="not https"):
        fetch_https("http://127.0.0.1:1/cert.pem")


def test_a_closed_port_is_worth_retrying() -> None:
    with pytest.raises(EventSourceUnavailable):
        fetch_https("https://127.0.0.1:1/cert.pem", timeout=2)


def test_an_expired_signing_certificate_is_refused(sns: Sns, verifier: SnsVerifier) -> None:
    late = SnsVerifier([TOPIC], r"127\.0\.0\.1", certificates=verifier.certificates,
                       max_age=dt.timedelta(days=400),
                       clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=60))
    envelope = sns.notification("{}", timestamp=sns_time(
        dt.datetime.now(dt.UTC) + dt.timedelta(days=60)))
    with pytest.raises(UntrustedMessage, match="expired"):
        verify(late, envelope)


def test_the_default_cache_is_shared(events_settings: Any) -> None:
    assert SnsVerifier.from_settings(events_settings).certificates is CERTIFICATES


@pytest.mark.parametrize("document", [
    b"", b"null", b"[]", b"{", b'"text"', b"\xff\xfe\x00", b"[" * 100_000,
    body({"Type": "Notification"}),
    body({"Type": "Telegram", "Message": "{}"}),
    body({"Type": "Notification", "MessageId": 1, "TopicArn": TOPIC, "Message": "{}",
          "Timestamp": "now", "Signature": "", "SignatureVersion": "1",
          "SigningCertURL": ""}),
])
def test_malformed_envelopes_are_malformed(document: bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse_message(document)


@pytest.mark.parametrize("stamp", ["yesterday", "", "0001-01-01T00:00:00+05:00",
                                   "9999-12-31T23:00:00-05:00"])
def test_a_bad_timestamp_is_malformed(sns: Sns, stamp: str) -> None:
    with pytest.raises(MalformedEvent, match="Timestamp"):
        parse_message(body(sns.notification("{}") | {"Timestamp": stamp}))


def test_a_huge_body_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="larger"):
        parse_message(json.dumps({"Message": "x" * 2_000_000}).encode())
