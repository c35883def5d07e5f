"""Short-lived signed values for the web forms: the sign-up form's CSRF token, the undo token.

Neither needs a server session. The sign-up token binds the form to the client's address (a
digest of it, never the address itself), so a page on another site cannot post a valid form
from a visitor's browser: it can neither read our token (same-origin policy) nor mint one. The
undo token is handed out only in the response to an unsubscribe and names the exact
unsubscribe it may reverse. Both are HMAC-SHA256 over the secret key with a salt per purpose;
keys in ``previous_secret_keys`` still verify, as for the links in our mail.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from itsdangerous.encoding import base64_decode, bytes_to_int

from newsletter.config import Settings

FORM_MAX_AGE = 2 * 3600  # seconds a sign-up form stays valid
UNDO_MAX_AGE = 24 * 3600  # seconds the "undo" button of an unsubscribe works


class _Signer(TimestampSigner):
    """Derives each key once, not on every call (itsdangerous re-derives: ~60 µs a time)."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        cache: dict[Any, bytes] = self.__dict__.setdefault("_derived", {})
        if secret_key not in cache:
            cache[secret_key] = super().derive_key(secret_key)
        return cache[secret_key]


@functools.lru_cache(maxsize=16)
def _signer(keys: tuple[str, ...], purpose: str) -> _Signer:
    return _Signer(list(keys), salt=f"newsletter.web.{purpose}", digest_method=hashlib.sha256)


def _keys(settings: Settings) -> tuple[str, ...]:
    assert settings.secret_key, "create_app checks the secret key"
    return (*settings.previous_secret_keys, settings.secret_key)


def sign(settings: Settings, purpose: str, value: str) -> str:
    """``value`` signed and time-stamped for ``purpose``."""
    return _signer(_keys(settings), purpose).sign(value.encode()).decode("ascii")


def unsign(settings: Settings, purpose: str, token: str, max_age: int) -> str | None:
    """The value of a token signed for ``purpose`` at most ``max_age`` seconds ago, else None."""
    try:
        return _signer(_keys(settings), purpose).unsign(
            token.encode("ascii"), max_age=max_age).decode()
    except (BadSignature, SignatureExpired, UnicodeError):
        return None


def form_token(settings: Settings, address: str) -> str:
    """The CSRF token of the sign-up form, for a client at ``address``."""
    return sign(settings, "form", _digest(_keys(settings)[-1], address))


def form_token_valid(settings: Settings, token: str, address: str) -> bool:
    """True if ``token`` is a fresh sign-up form token issued to ``address``."""
    value = unsign(settings, "form", token, FORM_MAX_AGE)
    if value is None:
        return False
    return any(value == _digest(key, address) for key in _keys(settings))


def _digest(key: str, address: str) -> str:
    """A short keyed digest of a client address: binds a form to it without storing it."""
    return hashlib.blake2s(address.encode(), key=key.encode()[:32], digest_size=8).hexdigest()


def issued_at(token: str) -> int | None:
    """When a verified itsdangerous timestamped token was signed (seconds since the epoch).

    ``newsletter.tokens`` verifies confirmation links but does not return their age; the web app
    needs it to refuse a confirmation link older than the unsubscribe it would undo."""
    try:
        stamp = token.rsplit(".", 2)[-2]
        return bytes_to_int(base64_decode(stamp))
    except (IndexError, ValueError):
        return None
