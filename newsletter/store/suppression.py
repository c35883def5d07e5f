"""The suppression hash: how an erased address is remembered without being kept.

``HMAC-SHA256(pepper, address key)``, where the pepper is 32 random bytes generated once per
database and stored in it (``store_meta``), not derived from NEWSLETTER_SECRET_KEY. Why: the
hashes must outlive every rotation of the secret key. A hash keyed with the secret key could only
be checked while that key is still configured, so the day an old key was dropped from
``previous_secret_keys`` every erased address would silently become mailable again. The pepper
travels with the database (backups, restores) and needs no configuration; the hash still cannot
be reversed or matched against an address list without the database itself. Copying the list to
another database means copying ``store_meta`` and ``suppressions`` too.
"""

from __future__ import annotations

import hmac
import secrets

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from newsletter.store.models import StoreMeta

PEPPER = "suppression_pepper"


def address_hash(pepper: bytes, key: str) -> str:
    """The suppression hash of a normalised address (see newsletter.addresses.address_key)."""
    return hmac.digest(pepper, key.encode("utf-8"), "sha256").hex()


def load_pepper(connection: Connection) -> bytes:
    """This database's pepper, created on first use (safely, should two processes race)."""
    query = select(StoreMeta.value).where(StoreMeta.key == PEPPER)
    value = connection.scalar(query)
    if value is None:
        try:
            with connection.begin_nested():
                connection.execute(insert(StoreMeta).values(key=PEPPER,
                                                            value=secrets.token_hex(32)))
        except IntegrityError:
            pass  # another process created it first: use theirs
        value = connection.scalar(query)
    assert value is not None
    return bytes.fromhex(value)
