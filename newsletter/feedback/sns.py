"""Amazon SNS messages posted to our webhook: read them, prove they come from AWS, confirm them.

A message is believed only when all of this holds (checked in this order, cheapest first):

1. its ``TopicArn`` is one of ``settings.sns_topic_arns`` (nobody else's topic can reach us);
2. its ``SigningCertURL`` is https, on a host matching ``settings.sns_certificate_host``
   (by default ``sns.<region>.amazonaws.com``), so the certificate comes from AWS;
3. its ``Timestamp`` is less than ``MAX_AGE`` old and not in the future (a replayed capture
   stops working);
4. its ``Signature`` verifies, with that certificate's RSA key, over the canonical string of
   the message: SHA1 for ``SignatureVersion`` 1, SHA256 for 2.

https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html

Certificates are fetched over https only (TLS verified against the system's CAs, or a given
``ssl.SSLContext``), never through a redirect, and kept in memory per URL: AWS publishes a new
URL when it rotates the certificate. ``CERTIFICATES`` is the process-wide cache; tests and
special set-ups pass their own ``CertificateCache(fetch=...)``. Python's default TLS context
honours ``SSL_CERT_FILE``, which lets a test run a real server against a local certificate host.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import http.client
import json
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.config import Settings
from newsletter.errors import EventSourceUnavailable, MalformedEvent, UntrustedMessage

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The fields signed, per message type, in the (byte) order of the canonical string.
# https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message-verify-message-signature.html
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                        "Type")
SIGNED_FIELDS: Mapping[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: _CONFIRMATION_FIELDS,
    UNSUBSCRIBE_CONFIRMATION: _CONFIRMATION_FIELDS,
}
_ENVELOPE_FIELDS = ("Signature", "SignatureVersion", "SigningCertURL")
HASHES: Mapping[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1,
                                                            "2": hashes.SHA256}

# SNS stops retrying an HTTP/S delivery within 3,600 s of the first attempt (a hard limit), so a
# genuine message is never older than this; the extra minutes absorb clock skew.
# https://docs.aws.amazon.com/sns/latest/dg/sns-message-delivery-retries.html
MAX_AGE = dt.timedelta(hours=1, minutes=5)
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_BODY = 1024 * 1024  # SNS messages are at most 256 KiB; JSON escaping can double that
FETCH_TIMEOUT = 5.0
FETCH_LIMIT = 64 * 1024  # a PEM certificate is 2 KiB; a confirmation answer is ~300 bytes

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class SnsMessage:
    """An SNS message as posted, its signed fields kept verbatim for the canonical string."""

    type: str
    fields: Mapping[str, str]
    timestamp: dt.datetime

    @property
    def topic_arn(self) -> str:
        return self.fields["TopicArn"]

    @property
    def message(self) -> str:
        """The published text: for SES, a JSON document."""
        return self.fields["Message"]

    @property
    def message_id(self) -> str:
        return self.fields["MessageId"]


def parse_message(body: bytes | str) -> SnsMessage:
    """Read an SNS POST body; MalformedEvent unless it has every field its type requires."""
    document = load_json(body, "the SNS message")
    if not isinstance(document, dict):
        raise MalformedEvent("an SNS message is a JSON object")
    return message_from(document)


def message_from(document: Mapping[str, Any]) -> SnsMessage:
    """An SNS message from its decoded JSON object (see ``parse_message``)."""
    kind = document.get("Type")
    if not isinstance(kind, str) or kind not in SIGNED_FIELDS:
        raise MalformedEvent(f"unknown SNS message type {str(kind)[:40]!r}")
    fields: dict[str, str] = {}
    for name in (*SIGNED_FIELDS[kind], *_ENVELOPE_FIELDS):
        value = document.get(name)
        if name == "Subject" and value is None:
            continue  # optional, and signed only when present
        if not isinstance(value, str):
            raise MalformedEvent(f"SNS {kind} without a text {name}")
        fields[name] = value
    return SnsMessage(kind, fields, _timestamp(fields["Timestamp"]))


def load_json(text: bytes | str, what: str) -> Any:
    """``json.loads`` for untrusted input: every failure becomes MalformedEvent."""
    if len(text) > MAX_BODY:
        raise MalformedEvent(f"{what} is larger than {MAX_BODY:,} bytes")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise MalformedEvent(f"{what} is not JSON: {str(error)[:80]}") from None


def parse_time(text: str) -> dt.datetime | None:
    """An ISO 8601 time as an aware UTC datetime (naive means UTC); None if it is not one."""
    try:
        moment = dt.datetime.fromisoformat(text)
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(
            dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved by an offset
        return None


def _timestamp(text: str) -> dt.datetime:
    moment = parse_time(text)
    if moment is None:
        raise MalformedEvent(f"SNS Timestamp {text[:40]!r} is not an ISO 8601 time")
    return moment


def canonical_string(message: SnsMessage) -> bytes:
    """What SNS signed: ``name\\nvalue\\n`` for each signed field present, in a fixed order."""
    lines = (f"{name}\n{message.fields[name]}\n" for name in SIGNED_FIELDS[message.type]
             if name in message.fields)
    return "".join(lines).encode("utf-8")


# ---------------------------------------------------------------- fetching


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead off the trusted host: refuse it (AWS never redirects these)."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def fetch_https(url: str, *, context: ssl.SSLContext | None = None,
                timeout: float = FETCH_TIMEOUT, limit: int = FETCH_LIMIT) -> bytes:
    """GET an https URL (TLS verified, no redirects, at most ``limit`` bytes).

    UntrustedMessage when the answer proves the URL wrong (TLS failure, 3xx, 4xx, too large);
    EventSourceUnavailable when it may work later (network, timeout, 5xx)."""
    if urlsplit(url).scheme != "https":
        raise UntrustedMessage(f"{url[:100]} is not https", reason="certificate host")
    handler = urllib.request.HTTPSHandler(context=context or ssl.create_default_context())
    opener = urllib.request.build_opener(_NoRedirect, handler)
    try:
        with opener.open(url, timeout=timeout) as response:
            body: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code >= 500:
            raise EventSourceUnavailable(f"{url}: HTTP {error.code}") from None
        raise UntrustedMessage(f"{url}: HTTP {error.code}", reason="certificate") from None
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        reason = getattr(error, "reason", error)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise UntrustedMessage(f"{url}: {reason.verify_message}",
                                   reason="certificate") from None
        raise EventSourceUnavailable(f"cannot fetch {url}: {reason}") from None
    if len(body) > limit:
        raise UntrustedMessage(f"{url}: answer larger than {limit:,} bytes", reason="certificate")
    return body


class CertificateCache:
    """Signing certificates by URL, fetched once per process (thread-safe, bounded)."""

    def __init__(self, fetch: Fetch = fetch_https, *, size: int = 16):
        self.fetch = fetch
        self.size = size
        self._certificates: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> x509.Certificate:
        with self._lock:
            known = self._certificates.get(url)
        if known is not None:
            return known
        certificate = _certificate(self.fetch(url), url)
        with self._lock:
            while len(self._certificates) >= self.size:
                del self._certificates[next(iter(self._certificates))]  # the oldest
            self._certificates[url] = certificate
        return certificate

    def __len__(self) -> int:
        return len(self._certificates)


def _certificate(pem: bytes, url: str) -> x509.Certificate:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise UntrustedMessage(f"{url} does not hold a PEM certificate",
                               reason="certificate") from None
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        raise UntrustedMessage(f"{url}: not an RSA certificate", reason="certificate")
    return certificate


CERTIFICATES = CertificateCache()  # the process-wide cache used unless one is passed


def _algorithm(message: SnsMessage) -> hashes.HashAlgorithm:
    """The hash its SignatureVersion names (checked before any certificate is fetched)."""
    version = message.fields["SignatureVersion"]
    if version not in HASHES:
        raise UntrustedMessage(f"unknown SignatureVersion {version[:10]!r}", reason="signature")
    return HASHES[version]()


# ---------------------------------------------------------------- verifying


class SnsVerifier:
    """Checks SNS messages against a topic allowlist and a trusted certificate host."""

    def __init__(self, topic_arns: Iterable[str], certificate_host: str, *,
                 certificates: CertificateCache | None = None, max_age: dt.timedelta = MAX_AGE,
                 clock: Callable[[], dt.datetime] | None = None):
        self.topic_arns = frozenset(topic_arns)
        self.certificate_host = re.compile(certificate_host)
        self.certificates = CERTIFICATES if certificates is None else certificates
        self.max_age = max_age
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    @classmethod
    def from_settings(cls, settings: Settings,
                      certificates: CertificateCache | None = None) -> SnsVerifier:
        return cls(settings.sns_topic_arns, settings.sns_certificate_host,
                   certificates=certificates)

    def verify(self, message: SnsMessage) -> None:
        """Return if the message is genuine and current; raise UntrustedMessage otherwise."""
        if message.topic_arn not in self.topic_arns:
            raise UntrustedMessage(f"topic {message.topic_arn[:200]} is not in sns_topic_arns",
                                   reason="topic")
        url = message.fields["SigningCertURL"]
        if not self.trusted_url(url):
            raise UntrustedMessage(f"SigningCertURL {url[:200]} is not on a trusted host",
                                   reason="certificate host")
        self._check_age(message.timestamp)
        self._check_signature(message, _algorithm(message), self.certificates.get(url))

    def trusted_url(self, url: str) -> bool:
        """An https URL, without user info, on a host matching ``certificate_host``."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError for a malformed port
        except ValueError:
            return False
        return (parts.scheme == "https" and parts.username is None and parts.password is None
                and bool(parts.hostname) and self.certificate_host.fullmatch(
                    parts.hostname or "") is not None)

    def _check_age(self, timestamp: dt.datetime) -> None:
        now = self.clock()
        if now - timestamp > self.max_age or timestamp - now > CLOCK_SKEW:
            raise UntrustedMessage(f"SNS message of {timestamp.isoformat()} is stale or from "
                                   "the future", reason="stale")

    def _check_signature(self, message: SnsMessage, algorithm: hashes.HashAlgorithm,
                         certificate: x509.Certificate) -> None:
        now = self.clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise UntrustedMessage("the signing certificate has expired", reason="certificate")
        key = certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)  # checked when it was cached
        try:
            signature = base64.b64decode(message.fields["Signature"], validate=True)
            key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm)
        except (InvalidSignature, binascii.Error, ValueError):
            raise UntrustedMessage("the SNS signature does not match", reason="signature") from None

    # ------------------------------------------------------------ subscriptions

    def confirm(self, message: SnsMessage) -> None:
        """Confirm a (verified) SubscriptionConfirmation by visiting its SubscribeURL, which
        must be on the trusted host too: a signature alone never sends us anywhere else."""
        url = message.fields["SubscribeURL"]
        if not self.trusted_url(url):
            raise UntrustedMessage(f"SubscribeURL {url[:200]} is not on a trusted host",
                                   reason="subscribe host")
        self.certificates.fetch(url)
