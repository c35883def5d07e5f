"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socketserver
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from newsletter.authoring.content import Issue, load_issue
from newsletter.config import Settings
from newsletter.transports.base import Envelope, Transport


def self_signed(folder: Path, stem: str, key: Any, *, common_name: str = "127.0.0.1",
                valid_days: int = 1) -> tuple[x509.Certificate, Path, Path]:
    """A certificate for 127.0.0.1 and localhost that is its own CA, written as
    ``folder/STEM.pem`` and ``folder/STEM.key``: (certificate, certificate file, key file)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=isinstance(key, rsa.RSAPrivateKey), data_encipherment=False,
            key_agreement=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return certificate, cert_file, key_file


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """Run ``server`` in a thread for the duration; shut it down and close it after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def write_issue(root: Path, slug: str, text: str) -> Path:
    """Write ``issues/<slug>/issue.md`` (dedented) and return the folder."""
    folder = root / "issues" / slug
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "issue.md").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


def load(root: Path, slug: str, text: str, settings: Settings) -> Issue:
    return load_issue(write_issue(root, slug, text), settings)


class Recording(Transport):
    """A transport that remembers every message handed to it, and can fail on cue."""

    name = "recording"

    def __init__(self, fail=None, quota=None):
        self.sent: list[tuple[str, bytes]] = []
        self.calls: dict[str, int] = {}
        self.fail = fail or (lambda envelope, call: None)
        self._quota = quota
        self._lock = threading.Lock()

    def send(self, raw, envelope: Envelope) -> str:
        with self._lock:
            call = self.calls[envelope.recipient] = self.calls.get(envelope.recipient, 0) + 1
        error = self.fail(envelope, call)
        if error:
            raise error
        with self._lock:
            self.sent.append((envelope.recipient, raw))
            return f"id-{len(self.sent)}"

    def quota(self):
        return self._quota

    def recipients(self):
        return sorted(recipient for recipient, _ in self.sent)
