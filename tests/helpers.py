"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from newsletter.config import Settings
from newsletter.content import Issue, load_issue


def write_issue(root: Path, slug: str, text: str) -> Path:
    """Write ``issues/<slug>/issue.md`` (dedented) and return the folder."""
    folder = root / "issues" / slug
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "issue.md").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


def load(root: Path, slug: str, text: str, settings: Settings) -> Issue:
    return load_issue(write_issue(root, slug, text), settings)
