"""The app around the views: health, the SES webhook hand-off, errors, headers, logs, serve."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import types
import urllib.request

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from newsletter.cli import main
from newsletter.errors import ConfigError
from newsletter.store import Status
from newsletter.tokens import unsubscribe_url
from newsletter.web import create_app
from newsletter.web.access import JsonLines, mask_path
from tests.web.conftest import SECRET, path_of


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_is_down(client, ctx, monkeypatch):
    class Down:
        def connect(self):
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(ctx.store, "engine", Down())
    response = client.get("/healthz")
    assert response.status_code == 503 and response.get_json()["database"] == "unreachable"


def test_the_ses_webhook_hands_the_raw_body_to_newsletter_events(client, ctx, monkeypatch):
    seen = []

    def handle_sns_request(body, settings, store):
        seen.append((body, settings, store))
        return 403, "bad signature"

    fake = types.ModuleType("newsletter.feedback.events")
    fake.handle_sns_request = handle_sns_request  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "newsletter.feedback.events", fake)
    response = client.post("/webhooks/ses", data=b'{"Type": "Notification"}',
                           content_type="text/plain; charset=UTF-8")
    assert (response.status_code, response.get_data(as_text=True)) == (403, "bad signature\n")
    assert seen == [(b'{"Type": "Notification"}', ctx.settings, ctx.store)]


def test_the_ses_webhook_is_503_without_newsletter_events(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "newsletter.feedback.events", None)
    assert client.post("/webhooks/ses", data=b"{}").status_code == 503


def test_error_pages_keep_their_status_and_headers(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "Page not found" in missing.get_data(as_text=True)
    wrong = client.delete("/subscribe")
    assert wrong.status_code == 405 and "POST" in wrong.headers["Allow"]
    assert "Method Not Allowed" in wrong.get_data(as_text=True)
    huge = client.post("/subscribe", data=b"x" * (1024 * 1024 + 1),
                       content_type="application/x-www-form-urlencoded")
    assert huge.status_code == 413
    assert client.get("/unsubscribe").status_code == 308  # to /unsubscribe/


def test_security_headers_on_every_page(client):
    for path in ("/subscribe", "/archive/", "/nope"):
        headers = client.get(path).headers
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_without_a_secret_key_the_app_refuses_to_start(web_settings, store):
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        create_app(web_settings.model_copy(update={"secret_key": None}), store=store)


def test_access_logs_mask_tokens_and_leave_out_queries(client, web_settings, subscriber,
                                                       caplog):
    caplog.set_level(logging.INFO, logger="newsletter.web")
    link = path_of(unsubscribe_url(web_settings, subscriber.id, "x"), web_settings)
    client.post(link).close()  # the line is written once the server closes the response
    client.get("/subscribe?email=anna%40example.org").close()
    fields = [r.fields for r in caplog.records if hasattr(r, "fields") and "method" in r.fields]
    assert [(f["method"], f["path"], f["status"]) for f in fields] == [
        ("POST", "/unsubscribe/***", 200), ("GET", "/subscribe", 200)]
    assert all(f["remote"] == "127.0.0.1" and f["ms"] >= 0 for f in fields)
    assert "anna" not in caplog.text and link.rsplit("/", 1)[1] not in caplog.text
    line = json.loads(JsonLines().format(caplog.records[-1]))
    assert line["logger"] == "newsletter.web" and line["path"] == "/subscribe"


def test_mask_path():
    assert mask_path("/confirm/abc.def") == "/confirm/***"
    assert mask_path("/unsubscribe/abc/undo") == "/unsubscribe/***/undo"
    assert mask_path("/preferences/abc.def") == "/preferences/***"
    assert mask_path("/archive/2025-04/") == "/archive/2025-04/"


def test_the_client_address_comes_from_trusted_proxies_only(web_settings, store, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.web")
    forwarded = {"X-Forwarded-For": "203.0.113.9, 198.51.100.2"}
    for hops, expected in ((0, "127.0.0.1"), (1, "198.51.100.2"), (2, "203.0.113.9")):
        app = create_app(web_settings.model_copy(update={"trusted_proxies": hops}), store=store)
        app.test_client().get("/healthz", headers=forwarded).close()
        assert caplog.records[-1].fields["remote"] == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_newsletter_serve_runs_waitress_and_logs_json(workspace, tmp_path, database_url,
                                                      store, subscriber, web_settings):
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_DATABASE_URL": database_url}
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(workspace / "newsletter.toml"),
         "serve", "--host", "127.0.0.1", "--port", "0", "--threads", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("serving ASIT Newsletter on http://127.0.0.1:"), first
        base = first.split(" on ", 1)[1].split("/ ", 1)[0]
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert json.load(response) == {"status": "ok", "database": "ok"}
        link = path_of(unsubscribe_url(web_settings, subscriber.id), web_settings)
        request = urllib.request.Request(f"{base}{link}", data=b"List-Unsubscribe=One-Click")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert store.get(subscriber.id).status is Status.UNSUBSCRIBED
    finally:
        server.send_signal(signal.SIGTERM)  # stops cleanly, like Ctrl+C
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 0, errors
    lines = [json.loads(line) for line in errors.splitlines() if line.startswith("{")]
    assert {(line["method"], line["path"], line["status"]) for line in lines} == {
        ("GET", "/healthz", 200), ("POST", "/unsubscribe/***", 200)}


def test_serve_without_a_secret_key_is_a_configuration_error(workspace):
    result = CliRunner().invoke(main, ["--config", str(workspace / "newsletter.toml"), "serve"],
                                env={"NEWSLETTER_SECRET_KEY": None})
    assert result.exit_code == 3 and "NEWSLETTER_SECRET_KEY" in result.output


def test_serve_has_help():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "--host" in result.output
