"""Databases for the subscriber tests: a SQLite file per test, and a PostgreSQL schema per test.

PostgreSQL comes from NEWSLETTER_TEST_POSTGRES_URL (default: the local server's ``test``
database). Its tests are skipped, with the reason, only when no server answers; under CI
(``CI`` set) an unreachable server fails them instead, so CI cannot go green without them.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from newsletter.cli import main
from newsletter.store import Store
from tests.conftest import ROOT

POSTGRES_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "test-secret-key-0123456789abcdef"


@functools.cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except OperationalError as error:
        return f"no PostgreSQL server at {POSTGRES_URL} ({str(error.orig).strip()[:120]})"
    finally:
        engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    reason = postgres_unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the PostgreSQL tests")
        pytest.skip(reason)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'subscribers.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store.open(database_url) as opened:
        yield opened


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A newsletter folder: the ASIT newsletter.toml and its templates."""
    shutil.copy(ROOT / "newsletter.toml", tmp_path / "newsletter.toml")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path


@pytest.fixture
def cli(folder: Path) -> Callable[..., Result]:
    """Run ``newsletter --config <folder>/newsletter.toml ARGS``; the database is the default
    SQLite file under <folder>/subscribers/ unless ``env`` says otherwise."""
    def invoke(*args: str, env: dict[str, str | None] | None = None,
               input: str | None = None) -> Result:
        environment: dict[str, str | None] = {"NEWSLETTER_DATABASE_URL": None,
                                              "NEWSLETTER_SECRET_KEY": SECRET, **(env or {})}
        return CliRunner().invoke(main, ["--config", str(folder / "newsletter.toml"), *args],
                                  env=environment, input=input, catch_exceptions=False)
    return invoke
