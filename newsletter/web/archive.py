"""The web archive: issues that were sent, as their email HTML with neutral placeholder values.

An issue is listed once it has a ``sends`` row (sent, or being sent). Its page is the rendered
email with the per-recipient fields filled in for nobody in particular: the fallback first name,
no address, the unsubscribe link pointing at a page that explains how to leave, and no token
ever. Rendering takes ~100 ms, so each page is cached until a file of its folder changes.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from newsletter.authoring.content import FIELD_RE, ISSUE_FILE, load_issue
from newsletter.authoring.render import render_issue
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store.ledger import Ledger

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
Version = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Entry:
    """One line of the archive index."""

    slug: str
    subject: str
    sent_at: dt.datetime


@dataclass(frozen=True)
class Page:
    """A rendered archive page and the files it may show (the issue's own images)."""

    version: Version
    html: str
    assets: frozenset[Path]


class Archive:
    """Lists sent issues and renders their web versions, cached per folder version."""

    def __init__(self, settings: Settings, store: Store):
        self.settings, self.ledger = settings, Ledger(store)
        self._pages: dict[str, Page] = {}
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        """Sent issues whose folder still exists, newest first."""
        return [Entry(sent.issue, self._neutral(sent.subject, sent.issue), sent.sent_at)
                for sent in self.ledger.sent_issues() if self._folder(sent.issue) is not None]

    def _neutral(self, text: str, slug: str, escape: Callable[[str], str] = str) -> str:
        """``text`` with its placeholders filled for nobody in particular."""
        values = neutral_values(self.settings, slug)
        return FIELD_RE.sub(lambda m: escape(values.get(m.group(1), "")), text)

    def page(self, slug: str) -> Page | None:
        """The archive page of a sent issue, or None if there is none to show."""
        folder = self._folder(slug)
        if folder is None or not self.ledger.is_sent(slug):
            return None
        version = _version(folder)
        with self._lock:
            cached = self._pages.get(slug)
        if cached is not None and cached.version == version:
            return cached
        fresh = self._render(folder, version)
        with self._lock:
            self._pages[slug] = fresh
        return fresh

    def asset(self, slug: str, name: str) -> Path | None:
        """A local image of a sent issue, if the issue uses it (never issue.md, never elsewhere)."""
        found = self.page(slug)
        if found is None:
            return None
        wanted = (self.settings.issues_dir / slug / name).resolve()
        return wanted if wanted in found.assets else None

    def _folder(self, slug: str) -> Path | None:
        if not _SLUG.fullmatch(slug):
            return None
        folder = self.settings.issues_dir / slug
        return folder if (folder / ISSUE_FILE).is_file() else None

    def _render(self, folder: Path, version: Version) -> Page:
        issue = load_issue(folder, self.settings)
        rendered = render_issue(issue, self.settings)
        filled = self._neutral(rendered.html, issue.slug, html.escape)
        return Page(version, filled, frozenset(p.resolve() for p in issue.assets))


def neutral_values(settings: Settings, slug: str) -> dict[str, str]:
    """The placeholder values of the archive: nobody's name, address or token (and no
    attributes: those placeholders are left empty)."""
    return {
        "first_name": settings.first_name_fallback,
        "name": settings.first_name_fallback,
        "email": "",
        "unsubscribe_url": f"{settings.base_url}/unsubscribe/",
        "web_url": f"{settings.base_url}/archive/{quote(slug)}/",
    }


def _version(folder: Path) -> Version:
    """Changes whenever a file of the issue folder is edited, added or removed."""
    return tuple(sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns, p.stat().st_size)
                        for p in folder.rglob("*") if p.is_file()))
