"""Fixtures for the SES events tests.

A test PKI (one self-signed RSA certificate, made at run time), a local https server standing in
for ``sns.<region>.amazonaws.com``, SNS messages signed with that key the way AWS documents it
(built here independently of ``newsletter.feedback.sns``), realistic SES bodies from
``fixtures/``, and a store holding a sent issue whose deliveries carry SES message ids.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import http.server
import json
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.config import Settings
from newsletter.feedback.sns import CertificateCache, SnsVerifier, fetch_https
from newsletter.store import Status, Store
from newsletter.store.ledger import Ledger, Outcome
from tests.helpers import self_signed, serving

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
OTHER_TOPIC = "arn:aws:sns:eu-west-1:999999999999:someone-elses-topic"
ISSUE = "2025-04-asit-highlights"
FIXTURES = Path(__file__).with_name("fixtures")
CERT_PATH = "/SimpleNotificationService-0000000000000000000000.pem"

# What SNS signs, per type, as the AWS documentation lists it (not imported from the code).
NOTIFICATION_SIGNED = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_SIGNED = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                       "Type")


# ---------------------------------------------------------------- the test PKI


@dataclass(frozen=True)
class Pki:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    cert_file: Path
    key_file: Path

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def make_pki(folder: Path, *, valid_days: int = 30) -> Pki:
    """A self-signed certificate for 127.0.0.1 that serves TLS and signs SNS messages."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate, cert_file, key_file = self_signed(folder, "sns-test", key,
                                                   common_name="sns.test.invalid",
                                                   valid_days=valid_days)
    return Pki(key, certificate, cert_file, key_file)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------- the certificate host


@dataclass
class CertHost:
    """A local https server in the role of sns.<region>.amazonaws.com."""

    url: str
    context: ssl.SSLContext  # a client context that trusts the test certificate
    pem: bytes
    requests: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return self.url + CERT_PATH

    def fetched(self, prefix: str) -> int:
        return sum(path.startswith(prefix) for path in self.requests)


def _handler(host: CertHost) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.requests.append(self.path)
            if self.path.startswith("/SimpleNotificationService-"):
                self._answer(200, host.pem, "application/x-pem-file")
            elif self.path.startswith("/confirm"):
                self._answer(200, b"<ConfirmSubscriptionResponse/>", "text/xml")
            elif self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", CERT_PATH)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.startswith("/unavailable"):
                self._answer(503, b"slow down", "text/plain")
            elif self.path.startswith("/garbage"):
                self._answer(200, b"-----BEGIN NOTHING-----", "text/plain")
            else:
                self._answer(404, b"no such key", "text/plain")

        def _answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def cert_host(pki: Pki) -> Iterator[CertHost]:
    client = ssl.create_default_context(cafile=str(pki.cert_file))
    host = CertHost(url="", context=client, pem=pki.pem)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(host))
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki.cert_file, pki.key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    host.url = f"https://127.0.0.1:{server.server_address[1]}"
    with serving(server):
        yield host


# ---------------------------------------------------------------- signing SNS messages


def canonical(fields: dict[str, Any]) -> bytes:
    names = NOTIFICATION_SIGNED if fields["Type"] == "Notification" else CONFIRMATION_SIGNED
    return "".join(f"{name}\n{fields[name]}\n" for name in names if name in fields).encode()


def sign(fields: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "2") -> dict[str, Any]:
    """``fields`` with SignatureVersion and Signature: SHA1withRSA (1) or SHA256withRSA (2)."""
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical(fields), padding.PKCS1v15(), algorithm)
    return fields | {"SignatureVersion": version,
                     "Signature": base64.b64encode(signature).decode()}


def sns_time(moment: dt.datetime | None = None) -> str:
    """A Timestamp as SNS writes it: 2025-04-15T09:31:07.412Z."""
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Sns:
    """Builds SNS messages as AWS posts them, signed with the test key."""

    pki: Pki
    host: CertHost

    def notification(self, message: dict[str, Any] | str, *, version: str = "2",
                     topic: str = TOPIC, cert_url: str | None = None,
                     timestamp: str | None = None, subject: str | None = None,
                     message_id: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "Type": "Notification", "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": timestamp or sns_time(),
            "SigningCertURL": self.host.cert_url if cert_url is None else cert_url,
            "UnsubscribeURL": f"{self.host.url}/?Action=Unsubscribe&SubscriptionArn={topic}:1",
        }
        if subject is not None:
            fields["Subject"] = subject
        return sign(fields, self.pki.key, version)

    def confirmation(self, kind: str = "SubscriptionConfirmation", *, topic: str = TOPIC,
                     subscribe_url: str | None = None, version: str = "2") -> dict[str, Any]:
        token = "2336412f37fb687f5d51e6e2425dacbba7b8b0e8a4f0e1d3d6e7b9c0a1f2e3d4"
        fields = {
            "Type": kind, "MessageId": str(uuid.uuid4()), "Token": token, "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the "
                       "subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": subscribe_url or (f"{self.host.url}/confirm?Action="
                                              f"ConfirmSubscription&TopicArn={topic}"
                                              f"&Token={token}"),
            "Timestamp": sns_time(), "SigningCertURL": self.host.cert_url,
        }
        return sign(fields, self.pki.key, version)


def body(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


@pytest.fixture
def sns(pki: Pki, cert_host: CertHost) -> Sns:
    return Sns(pki, cert_host)


# ---------------------------------------------------------------- settings and verifiers


@pytest.fixture
def events_settings(settings: Settings) -> Settings:
    """The ASIT settings, subscribed to the test topic, trusting the local certificate host."""
    return settings.model_copy(update={"sns_topic_arns": (TOPIC,),
                                       "sns_certificate_host": r"127\.0\.0\.1"})


@pytest.fixture
def certificates(cert_host: CertHost) -> CertificateCache:
    """A fresh cache whose fetches trust the test certificate (production: the system CAs)."""
    return CertificateCache(fetch=functools.partial(fetch_https, context=cert_host.context))


@pytest.fixture
def verifier(events_settings: Settings, certificates: CertificateCache) -> SnsVerifier:
    return SnsVerifier.from_settings(events_settings, certificates)


# ---------------------------------------------------------------- SES bodies and a sent issue


def ses(name: str, message_id: str | None = None) -> dict[str, Any]:
    """A fixture SES body (``identity/bounce-permanent``), about ``message_id`` if given."""
    document: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    if message_id is not None:
        document["mail"]["messageId"] = message_id
        if "commonHeaders" in document["mail"]:
            document["mail"]["commonHeaders"]["messageId"] = message_id
    return document


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    message_id: str


def send_issue(store: Store, emails: list[str], issue: str = ISSUE) -> dict[str, Recipient]:
    """Add ``emails`` as active subscribers (if new) and record ``issue`` as sent to them,
    each delivery with an SES-like message id."""
    for email in emails:
        if store.get_by_email(email) is None:
            store.add(email, status=Status.ACTIVE)
    ledger = Ledger(store)
    ledger.plan(issue, "ASIT highlights: April 2025", "0" * 64)
    sender = ledger.register_sender()
    claims, _ = ledger.claim(issue, sender, 10_000)
    sent = {c.email: Recipient(c.subscriber_id, c.email, f"0102018f{uuid.uuid4()}-000000")
            for c in claims}
    ledger.record([Outcome(c.delivery_id, "sent", message_id=sent[c.email].message_id,
                           attempts=1) for c in claims])
    ledger.unregister_sender(sender)
    return sent


READERS = ["ana.reader@example.net", "jan.kowalski@example.org", "maria.rossi@example.com",
           "eleni.papadopoulou@example.gr"]


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store.open(database_url) as opened:
        yield opened


@pytest.fixture
def sent(store: Store) -> dict[str, Recipient]:
    return send_issue(store, READERS)
