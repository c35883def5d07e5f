"""Several web processes on one database (SQLite file and PostgreSQL): the limits hold across
them, a forged request changes nothing, and sends made elsewhere show in the archive at once.

Two apps over two Store instances stand for two processes in most tests; the last one starts
two real ``newsletter serve`` processes on loopback ports."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.store import Status, Store
from newsletter.store.ledger import Ledger
from newsletter.store.limits import Bucket
from newsletter.web import close_app, create_app
from newsletter.web.limits import PER_ADDRESS, PER_CLIENT, Limit, RateLimiter
from tests.web.conftest import SECRET
from tests.web.test_get_is_safe import snapshot
from tests.web.test_subscribe import confirmations, csrf

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def other_app(web_settings: Settings) -> Iterator[Flask]:
    """A second app on the same database through a Store of its own: another process."""
    with Store.open(web_settings.database_url) as own:
        made = create_app(web_settings, store=own)
        yield made
        close_app(made)


def post(client, data: dict[str, str], **kwargs):
    return client.post("/subscribe", data=data, **kwargs)


def drain(*apps: Flask) -> None:
    for app in apps:
        app.extensions["newsletter"].signups.drain()


def test_confirmation_emails_per_address_are_limited_across_processes(app, other_app, add,
                                                                      web_settings):
    # Pending already: every sign-up let through sends the link again. (Two processes adding
    # the same new address at once would race, and the loser sends nothing: see signup.)
    add("anna@example.org", status=Status.PENDING)
    clients = [app.test_client(), other_app.test_client()]
    for n in range(2 * PER_ADDRESS.burst):
        client = clients[n % 2]
        response = post(client, {"email": "anna@example.org", "csrf": csrf(client)})
        assert response.status_code == 200 and "Check your inbox" in response.text
    drain(app, other_app)
    assert len(confirmations(web_settings)) == PER_ADDRESS.burst


def test_sign_ups_per_client_are_limited_across_processes(app, other_app):
    limit = Limit(burst=3, per_hour=1)
    for made in (app, other_app):
        ctx = made.extensions["newsletter"]
        ctx.per_client = RateLimiter(ctx.buckets, "client", limit)
    clients = [app.test_client(), other_app.test_client()]
    codes = [post(clients[n % 2], {"email": f"p{n}@example.org", "csrf": csrf(clients[n % 2])})
             .status_code for n in range(6)]
    assert codes == [200, 200, 200, 429, 429, 429]
    drain(app, other_app)


def test_a_forged_x_forwarded_for_does_not_pick_the_bucket(app, other_app):
    """Without trusted proxies the header is nobody's word: every attempt is the peer's."""
    clients = [app.test_client(), other_app.test_client()]
    for n in range(PER_CLIENT.burst):
        assert post(clients[n % 2], {"email": "x"},
                    headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code == 400
    refused = post(clients[0], {"email": "x"}, headers={"X-Forwarded-For": "198.51.100.1"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


def test_forged_and_malformed_sign_ups_change_nothing(client, ctx, store, web_settings):
    """Each counts against its sender's own bucket (one row, hashed), and that is all: no
    subscriber, no consent, no mail, no per-address bucket."""
    ours = ctx.buckets.key("client", "127.0.0.1")  # (creates the database's pepper, once)
    before = snapshot(store)
    token = csrf(client)
    attempts = [
        ({"email": "anna@example.org"}, FORM),  # no CSRF token
        ({"email": "anna@example.org", "csrf": "nonsense"}, FORM),
        ({"email": "anna@example.org", "csrf": csrf(client, remote="192.0.2.7")}, FORM),
        ({"email": "anna@example.org", "csrf": token[:-3] + "AAA"}, FORM),  # tampered
        ({"email": "anna@example.org", "csrf": token, "website": "https://spam"}, FORM),
        ({"email": "not an address", "csrf": token}, FORM),
        ({"email": "anna@" + "x" * 400 + ".org", "csrf": token}, FORM),
        ({"email": "anna@example.org", "name": "n" * 500, "csrf": token}, FORM),
        ({"email": "anna\x00@example.org", "csrf": token}, FORM),
        (b"\xff\xfe%%%email=\x80\x81&csrf=" + token.encode(), FORM),
        (b"--x\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n", "multipart/"
         "form-data; boundary=x"),
        (b'{"email": "anna@example.org"}', "application/json"),
    ]
    for data, kind in attempts:
        body = urlencode(data).encode() if isinstance(data, dict) else data
        response = client.post("/subscribe", data=body, content_type=kind)
        assert response.status_code in (200, 400), (data, response.status_code)
    ctx.signups.drain()
    after = snapshot(store)
    assert {name: rows for name, rows in after.items() if name != "web_limits"} == {
        name: rows for name, rows in before.items() if name != "web_limits"}
    assert [row[0] for row in after["web_limits"]] == [ours]
    assert not web_settings.outbox_dir.exists()


def test_sends_made_elsewhere_show_in_the_archive_at_once(client, web_settings):
    assert client.get("/archive/2025-04-asit-highlights/").status_code == 404
    assert "No issue has been sent yet" in client.get("/archive/").text
    with Store.open(web_settings.database_url) as elsewhere:  # another machine's `send`
        Ledger(elsewhere).plan("2025-04-asit-highlights", "ASIT April", "hash")
    assert "ASIT April" in client.get("/archive/").text
    assert client.get("/archive/2025-04-asit-highlights/").status_code == 200


def test_every_process_renders_an_edited_issue_again(app, other_app, workspace, store):
    Ledger(store).plan("2025-04-asit-highlights", "ASIT April", "hash")
    clients = [app.test_client(), other_app.test_client()]
    path = "/archive/2025-04-asit-highlights/"
    assert all("Steering Committee" in client.get(path).text for client in clients)  # cached
    issue = workspace / "issues" / "2025-04-asit-highlights" / "issue.md"
    issue.write_text(issue.read_text().replace("Steering Committee", "Guiding Board"))
    later = issue.stat().st_mtime + 2
    os.utime(issue, (later, later))
    assert all("Guiding Board" in client.get(path).text and "Steering Committee" not in
               client.get(path).text for client in clients)


# ---------------------------------------------------------------- real processes


class Server:
    """``newsletter serve`` as a child process on a free loopback port."""

    def __init__(self, workspace: Path, settings: Settings):
        env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET,
               "NEWSLETTER_DATABASE_URL": settings.database_url,
               "NEWSLETTER_OUTBOX_DIR": str(settings.outbox_dir)}
        self.log = open(workspace / f"serve-{id(self)}.log", "wb")  # noqa: SIM115
        self.child = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(workspace / "newsletter.toml"),
             "serve", "--host", "127.0.0.1", "--port", "0", "--threads", "4"],
            stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=workspace)
        assert self.child.stdout is not None
        line = self.child.stdout.readline().decode()
        assert "http://127.0.0.1:" in line, line
        self.port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            connection.close()

    def sign_up(self, address: str) -> tuple[int, dict[str, str]]:
        _, _, form = self.request("GET", "/subscribe")
        found = re.search(r'name="csrf" value="([^"]+)"', form)
        assert found, form
        body = urlencode({"email": address, "csrf": found.group(1)}).encode()
        status, headers, _ = self.request("POST", "/subscribe", body, {"Content-Type": FORM})
        return status, headers

    def stop(self) -> None:
        """Ctrl+C: the server finishes its queued sign-ups, then exits."""
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGINT)
            try:
                self.child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        if self.child.stdout is not None:
            self.child.stdout.close()
        self.log.close()


@pytest.fixture
def servers(workspace: Path, web_settings: Settings, store: Store) -> Iterator[list[Server]]:
    """Two ``newsletter serve`` processes on the (migrated) test database."""
    started: list[Server] = []
    try:
        for _ in range(2):
            started.append(Server(workspace, web_settings))
        yield started
    finally:
        for server in started:
            server.stop()


def test_two_serve_processes_share_the_limits(servers, store, add, web_settings):
    one, two = servers
    add("anna@example.org", status=Status.PENDING)  # see the test with two apps above
    # Confirmation emails to one address: the per-address burst, between both processes.
    assert [(one, two)[n % 2].sign_up("anna@example.org")[0] for n in range(6)] == [200] * 6
    # Sign-ups from one client: the per-client burst in all (6 used already), then 429.
    codes, retry = [], []
    for n in range(PER_CLIENT.burst - 6 + 2):
        status, headers = (one, two)[n % 2].sign_up(f"reader{n}@example.org")
        codes.append(status)
        retry.append(headers.get("Retry-After"))
    assert codes == [200] * (PER_CLIENT.burst - 6) + [429, 429]
    assert all(int(seconds) > 0 for seconds in retry[-2:] if seconds)
    for server in servers:
        server.stop()  # finishes the queued sign-ups
    sent = [message["To"] for message in confirmations(web_settings)]
    assert sent.count("anna@example.org") == PER_ADDRESS.burst
    assert len(sent) == PER_ADDRESS.burst + PER_CLIENT.burst - 6
    with store.engine.connect() as connection:
        keys = list(connection.scalars(select(Bucket.key)))
    assert len(keys) == 1 + 1 + PER_CLIENT.burst - 6  # one client, one bucket per address
    assert not any("example" in key or "127.0.0.1" in key for key in keys)
