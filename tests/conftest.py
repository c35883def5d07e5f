"""Shared fixtures: the real ASIT configuration, and throwaway copies of the project to edit."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.content import find_issue, load_issue
from newsletter.render import RenderedIssue, render_issue

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
        pytest.skip("Chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
