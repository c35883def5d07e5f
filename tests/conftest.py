"""Shared fixtures: the real ASIT configuration, and throwaway copies of the project to edit."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import RenderedIssue, render_issue
from newsletter.config import Settings, load_settings

# Timings are measured in bench/, not asserted: a busy CI machine must not turn a slow example
# into a failure (Hypothesis' default deadline is 200 ms per example).
hypothesis.settings.register_profile("project", deadline=None,
                                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile("project")

ROOT = Path(__file__).resolve().parents[1]
ASIT_ISSUES = ("2025-04-asit-highlights", "2025-05-twinning-and-training")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(ROOT / "newsletter.toml", env={})


@pytest.fixture(scope="session")
def asit_rendered(settings: Settings) -> dict[str, RenderedIssue]:
    return {slug: render_issue(load_issue(find_issue(settings, slug), settings), settings)
            for slug in ASIT_ISSUES}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the project's content (config, templates, issues) that a test may change."""
    for name in ("templates", "issues"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "templates" / "blocks").mkdir(exist_ok=True)  # for tests that override a block
    shutil.copy(ROOT / "newsletter.toml", tmp_path / "newsletter.toml")
    return tmp_path


@pytest.fixture
def workspace_settings(workspace: Path) -> Settings:
    return load_settings(workspace / "newsletter.toml", env={})


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's): skipped, with the reason, only where none is installed."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        _require("Chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


POSTGRES_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _require(reason: str) -> None:
    """Skip where an outside program is missing, but never in CI, where .ci/run provides it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections live in a fresh schema of the test PostgreSQL, dropped after."""
    import secrets

    import psycopg

    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        admin = psycopg.connect(plain, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        _require(f"no PostgreSQL at {POSTGRES_URL}: {str(error).strip().splitlines()[0]}")
    schema = f"test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against a real SQLite file and the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'newsletter.db'}"
    return str(request.getfixturevalue("postgres_url"))
