"""Fixtures of the web tests: an app over a real database, its test client, a real server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import waitress
from flask import Flask
from flask.testing import FlaskClient
from waitress import wasyncore

from newsletter.config import Settings
from newsletter.store import Status, Store, Subscriber
from newsletter.web import close_app, create_app
from newsletter.web.context import Context

SECRET = "web-test-secret-0123456789"
OLD_SECRET = "web-test-old-secret-0123456789"


@pytest.fixture
def web_settings(workspace_settings: Settings, database_url: str, workspace: Path) -> Settings:
    """The ASIT settings in a throwaway workspace, with a key, a database and an outbox."""
    return workspace_settings.model_copy(update={
        "secret_key": SECRET, "previous_secret_keys": (OLD_SECRET,),
        "database_url": database_url, "outbox_dir": workspace / "outbox"})


@pytest.fixture
def store(web_settings: Settings) -> Iterator[Store]:
    with Store.open(web_settings.database_url) as opened:
        yield opened


@pytest.fixture
def app(web_settings: Settings, store: Store) -> Iterator[Flask]:
    made = create_app(web_settings, store=store)
    yield made
    close_app(made)


@pytest.fixture
def ctx(app: Flask) -> Context:
    found: Context = app.extensions["newsletter"]
    return found


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def subscriber(store: Store) -> Subscriber:
    return store.add("anna.kowalska@kwp-krakow.example.org", name="Anna Kowalska",
                     status=Status.ACTIVE)


@pytest.fixture
def add(store: Store) -> Callable[..., Subscriber]:
    def adding(email: str, status: Status = Status.ACTIVE, **kwargs: Any) -> Subscriber:
        return store.add(email, status=status, **kwargs)
    return adding


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The app on waitress on a free loopback port; yields its base URL."""
    running: Any = waitress.create_server(app, host="127.0.0.1", port=0, threads=4, ident=None)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{running.effective_port}"
    # Close every socket from the server's own loop thread, which then ends (its map is empty).
    running.trigger.pull_trigger(lambda: wasyncore.close_all(running._map))
    thread.join(timeout=10)
    running.task_dispatcher.shutdown()
    assert not thread.is_alive()


def path_of(url: str, settings: Settings) -> str:
    """A public URL (base_url + path) as a path the test client or a local server can use."""
    assert url.startswith(settings.base_url), url
    return url[len(settings.base_url):]
