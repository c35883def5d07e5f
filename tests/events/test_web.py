"""``POST /webhooks/ses`` through the real web app: Flask's test client and waitress on a loopback
port, wired as in production (no verifier passed; the system's TLS trust comes from
SSL_CERT_FILE, which points at the test certificate host)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings
from newsletter.feedback import sns as sns_module
from newsletter.feedback.sns import CertificateCache
from newsletter.store import Status, Store
from tests.events.conftest import (
    OTHER_TOPIC,
    READERS,
    Pki,
    Recipient,
    Sns,
    body,
    send_issue,
    ses,
)

flask = pytest.importorskip("flask")
web = pytest.importorskip("newsletter.web")

ANA, JAN, MARIA, ELENI = READERS


@pytest.fixture
def app(events_settings: Settings, workspace: Path, database_url: str, pki: Pki,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.cert_file))
    monkeypatch.setattr(sns_module, "CERTIFICATES", CertificateCache())  # production's fetch
    settings = events_settings.model_copy(update={
        "secret_key": "events-web-test-secret-0123456789", "database_url": database_url,
        "root": workspace, "outbox_dir": workspace / "outbox"})
    made = web.create_app(settings)
    yield made
    web.close_app(made)


@pytest.fixture
def store(app: Any) -> Store:
    found: Store = app.extensions["newsletter"].store
    return found


@pytest.fixture
def sent(store: Store) -> dict[str, Recipient]:
    return send_issue(store, READERS)


def test_the_test_client_posts_signed_events(app: Any, store: Store, sns: Sns,
                                             sent: dict[str, Recipient]) -> None:
    client = app.test_client()
    bounce = sns.notification(ses("identity/bounce-permanent", sent[ANA].message_id),
                              version="1")
    answer = client.post("/webhooks/ses", data=body(bounce),
                         headers={"Content-Type": "text/plain; charset=UTF-8",
                                  "x-amz-sns-message-type": "Notification"})
    assert (answer.status_code, answer.text) == (200, "applied\n")
    assert store.is_suppressed(ANA)
    complaint = sns.notification(ses("event/complaint", sent[MARIA].message_id), topic=OTHER_TOPIC)
    answer = client.post("/webhooks/ses", data=body(complaint))
    assert answer.status_code == 403 and not store.is_suppressed(MARIA)
    assert client.post("/webhooks/ses", data=b"{}").status_code == 400


def test_a_real_server_takes_sns_posts(app: Any, store: Store, sns: Sns,
                                       sent: dict[str, Recipient]) -> None:
    waitress = pytest.importorskip("waitress")
    wasyncore = pytest.importorskip("waitress.wasyncore")
    server: Any = waitress.create_server(app, host="127.0.0.1", port=0, threads=2, ident=None)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}/webhooks/ses"
    try:
        for envelope in (sns.confirmation(),
                         sns.notification(ses("event/delivery", sent[JAN].message_id)),
                         sns.notification(ses("identity/complaint", sent[JAN].message_id))):
            request = urllib.request.Request(url, data=body(envelope), method="POST")
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
        tampered = sns.notification(ses("identity/complaint", sent[ELENI].message_id))
        tampered["Signature"] = tampered["Signature"][::-1]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=body(tampered)), timeout=10)
        assert refused.value.code == 403
        refused.value.close()
    finally:  # as tests/web does: close every socket from the server's own loop thread
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
    jan = store.get_by_email(JAN)
    assert jan is not None and jan.status is Status.COMPLAINED
    assert not store.is_suppressed(ELENI)
