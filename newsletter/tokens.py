"""Signed tokens for the links in our mail: confirm a subscription, unsubscribe, preferences.

A token carries its purpose, the subscriber id and optionally the issue it was sent with, signed
with HMAC-SHA256 by itsdangerous. Keys rotate without breaking links already sent: the newest key
(``secret_key`` / NEWSLETTER_SECRET_KEY) signs, the ``previous_secret_keys`` still verify.
Unsubscribe and preferences links never expire (a years-old email must still let people leave
or change what they get); confirmation links do (CONFIRM_MAX_AGE).

Every message carries two tokens (unsubscribe, preferences), so minting is on the send's hot
path: itsdangerous' own serializer spends ~65 µs per token (zlib and a key derivation every
call), and even its ``Signer.sign`` with a cached key ~5 µs. ``make_token`` keeps what is fixed
per purpose and issue (the payload around the id, an HMAC primed with the derived key) and
costs ~4 µs: byte for byte the token ``Signer.sign`` makes, which verifies it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from itsdangerous import BadData, BadSignature, SignatureExpired, Signer, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode

from newsletter.config import Settings
from newsletter.errors import ConfigError, InvalidToken

CONFIRM_MAX_AGE = 7 * 24 * 3600  # seconds
MIN_KEY_LENGTH = 16
KEY_HINT = ("set NEWSLETTER_SECRET_KEY (or secret_key in newsletter.toml) to a long random "
            "string, e.g. the output of: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'")


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"


@dataclass(frozen=True)
class Token:
    """What a verified token says."""

    purpose: Purpose
    subscriber_id: int
    issue: str | None = None


def make_token(settings: Settings, purpose: Purpose, subscriber_id: int,
               issue: str | None = None) -> str:
    """A URL-safe token for one subscriber (and issue); ConfigError if no secret key is set."""
    keys = _keys(settings)
    if purpose is Purpose.CONFIRM:  # time-stamped: itsdangerous adds the stamp
        head, tail = _payload_parts(purpose, issue)
        payload = base64.urlsafe_b64encode(b"%s%d%s" % (head, subscriber_id, tail)).rstrip(b"=")
        return _signer(*keys, purpose=purpose).sign(payload).decode("ascii")
    return _minter(keys, purpose, issue)(subscriber_id)


def read_token(settings: Settings, token: str, purpose: Purpose,
               max_age: int | None = None) -> Token:
    """Verify a token for ``purpose``; InvalidToken (``expired`` set when too old) if it fails.
    ``max_age`` defaults to CONFIRM_MAX_AGE for confirmations and to forever for unsubscribes."""
    signer = _signer(*_keys(settings), purpose=purpose)
    if max_age is None and purpose is Purpose.CONFIRM:
        max_age = CONFIRM_MAX_AGE
    try:
        if not _canonical(token):  # one token, one spelling
            raise BadSignature("not in the form we write")
        if isinstance(signer, TimestampSigner):
            encoded = signer.unsign(token.encode("ascii"), max_age=max_age)
        else:
            encoded = signer.unsign(token.encode("ascii"))
    except SignatureExpired:
        raise InvalidToken("this link has expired", expired=True) from None
    except (BadSignature, UnicodeEncodeError):
        raise InvalidToken("this link is not valid (damaged, or not one of ours)") from None
    return _decode(encoded, purpose)


def unsubscribe_url(settings: Settings, subscriber_id: int, issue: str | None = None) -> str:
    """The link that unsubscribes one subscriber (GET shows a page, POST is RFC 8058 one-click)."""
    return (f"{settings.base_url}/unsubscribe/"
            f"{make_token(settings, Purpose.UNSUBSCRIBE, subscriber_id, issue)}")


def preferences_url(settings: Settings, subscriber_id: int) -> str:
    """The link to one subscriber's preferences page (language, topics, unsubscribe). Bound
    to the subscriber alone: the same link in every issue, and it never expires."""
    return (f"{settings.base_url}/preferences/"
            f"{make_token(settings, Purpose.PREFERENCES, subscriber_id)}")


def confirm_url(settings: Settings, subscriber_id: int) -> str:
    """The double opt-in link sent to a pending subscriber."""
    return f"{settings.base_url}/confirm/{make_token(settings, Purpose.CONFIRM, subscriber_id)}"


@functools.lru_cache(maxsize=64)
def _payload_parts(purpose: Purpose, issue: str | None) -> tuple[bytes, bytes]:
    """The JSON around the subscriber id: ``["unsubscribe",`` and ``,"2025-04"]``, as
    ``json.dumps`` with compact separators writes them, without its ~4 µs of set-up per call."""
    head = json.dumps([purpose.value], separators=(",", ":")).encode()[:-1] + b","
    tail = json.dumps([issue] if issue else [], separators=(",", ":")).encode()[1:]
    return head, (b"," + tail) if issue else tail


@functools.lru_cache(maxsize=64)
def _minter(keys: tuple[str, ...], purpose: Purpose, issue: str | None
            ) -> Callable[[int], str]:
    """Makes the tokens of one purpose and issue: the payload's fixed parts and an HMAC primed
    with the key ``Signer.sign`` would derive, copied per token (cheaper than a fresh HMAC)."""
    head, tail = _payload_parts(purpose, issue)
    primed = hmac.new(_signer(*keys, purpose=purpose).derive_key(), digestmod=hashlib.sha256)
    encode = base64.urlsafe_b64encode

    def mint(subscriber_id: int) -> str:
        payload = encode(b"%s%d%s" % (head, subscriber_id, tail)).rstrip(b"=")
        mac = primed.copy()
        mac.update(payload)
        return (payload + b"." + encode(mac.digest()).rstrip(b"=")).decode("ascii")

    return mint


def _canonical(token: str) -> bool:
    """Every part exactly as we encode it: unpadded base64 whose unused last bits are zero
    (a decoder ignores those bits, so one signature would otherwise have several spellings)."""
    try:
        return all(base64_encode(base64_decode(part)).decode("ascii") == part
                   for part in token.split("."))
    except BadData:
        return False


def _keys(settings: Settings) -> tuple[str, ...]:
    """Oldest first, the signing key last (the order itsdangerous expects)."""
    if not settings.secret_key:
        raise ConfigError(f"no secret key for signed links: {KEY_HINT}")
    if len(settings.secret_key) < MIN_KEY_LENGTH:
        raise ConfigError(f"NEWSLETTER_SECRET_KEY is too short ({len(settings.secret_key)} "
                          f"characters, at least {MIN_KEY_LENGTH}): {KEY_HINT}")
    return (*settings.previous_secret_keys, settings.secret_key)


class _CachedKeys:
    """Derives each key once instead of on every signature (itsdangerous re-derives)."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        cache: dict[Any, bytes] = self.__dict__.setdefault("_derived", {})
        if secret_key not in cache:
            cache[secret_key] = super().derive_key(secret_key)  # type: ignore[misc]
        return cache[secret_key]


class _Signer(_CachedKeys, Signer):
    pass


class _TimestampSigner(_CachedKeys, TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time())


@functools.lru_cache(maxsize=16)
def _signer(*keys: str, purpose: Purpose) -> Signer:
    kind = _TimestampSigner if purpose is Purpose.CONFIRM else _Signer
    return kind(list(keys), salt=f"newsletter.{purpose.value}", digest_method=hashlib.sha256)


def _decode(encoded: bytes, purpose: Purpose) -> Token:
    try:
        padded = encoded + b"=" * (-len(encoded) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        kind, subscriber_id, *rest = data
        token = Token(Purpose(kind), int(subscriber_id), rest[0] if rest else None)
    except (ValueError, TypeError):
        raise InvalidToken("this link is not valid (unreadable)") from None
    if token.purpose is not purpose:
        raise InvalidToken(f"this is not a link to {purpose.value}")
    return token
