"""The web archive: issues that were sent, as their email HTML with neutral placeholder values.

An issue is listed once it has a ``sends`` row (sent, or being sent). Its page is the rendered
email with the per-recipient fields filled in for nobody in particular: the fallback first name,
no address, the unsubscribe link pointing at a page that explains how to leave, and no token
ever. Rendering takes ~100 ms, so each page is cached until a file of its folder changes.

Each translation into a language offered in ``newsletter.toml`` has a page of its own,
``/archive/<slug>/<lang>/``, as its readers received it. Every version's page links to the others
(``<link rel="alternate" hreflang>`` for search engines, a small switch for readers), and all of
them share the folder's images at ``/archive/<slug>/<file>``.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter.authoring.content import FIELD_RE, ISSUE_FILE, load_issue, translation_files
from newsletter.authoring.render import render_issue
from newsletter.config import Settings
from newsletter.i18n import display_name, translations
from newsletter.message import archive_url
from newsletter.store import Store
from newsletter.store.ledger import Ledger

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BODY = re.compile(r"<body\b[^>]*>", re.I)
Version = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Entry:
    """One line of the archive index."""

    slug: str
    subject: str
    sent_at: dt.datetime
    translations: tuple[tuple[str, str], ...] = ()  # (language, its name in itself)


@dataclass(frozen=True)
class Page:
    """A rendered archive page and the files it may show (the issue's own images)."""

    version: Version
    html: str
    assets: frozenset[Path]
    language: str = ""


class Archive:
    """Lists sent issues and renders their web versions, cached per folder version."""

    def __init__(self, settings: Settings, store: Store):
        self.settings, self.ledger = settings, Ledger(store)
        self._pages: dict[tuple[str, str], Page] = {}
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        """Sent issues whose folder still exists, newest first."""
        found = []
        for sent in self.ledger.sent_issues():
            folder = self._folder(sent.issue)
            if folder is not None:
                found.append(Entry(sent.issue, self._neutral(sent.subject, sent.issue),
                                   sent.sent_at, tuple((language, display_name(language))
                                                       for language in self.languages(folder)[1:])))
        return found

    def languages(self, folder: Path) -> list[str]:
        """The languages an issue has a page in: the original's first, then those offered in
        ``newsletter.toml`` that have a translation beside it (in the order offered). A
        translation into another language is never sent, so it is not published either."""
        files = translation_files(folder)
        return [self.settings.language,
                *(language for language in self.settings.offered_languages[1:]
                  if language in files)]

    def _neutral(self, text: str, slug: str, escape: Callable[[str], str] = str,
                 language: str | None = None) -> str:
        """``text`` with its placeholders filled for nobody in particular."""
        values = neutral_values(self.settings, slug, language)
        return FIELD_RE.sub(lambda m: escape(values.get(m.group(1), "")), text)

    def page(self, slug: str, language: str | None = None) -> Page | None:
        """The archive page of a sent issue in ``language`` (None: the original), or None if
        there is none to show."""
        folder = self._folder(slug)
        if folder is None:
            return None
        language = language or self.settings.language
        if language not in self.languages(folder) or not self.ledger.is_sent(slug):
            return None
        return self._cached(folder, language)

    def asset(self, slug: str, name: str) -> Path | None:
        """A local image of a sent issue, if a version of the issue uses it (never issue.md,
        never elsewhere). Usually the original's images are all there is, so the translations
        are rendered only for a file the original does not show."""
        folder = self._folder(slug)
        if folder is None or not self.ledger.is_sent(slug):
            return None
        wanted = (folder / name).resolve()
        used = any(wanted in self._cached(folder, language).assets
                   for language in self.languages(folder))
        return wanted if used else None

    def _folder(self, slug: str) -> Path | None:
        if not _SLUG.fullmatch(slug):
            return None
        folder = self.settings.issues_dir / slug
        return folder if (folder / ISSUE_FILE).is_file() else None

    def _cached(self, folder: Path, language: str) -> Page:
        version = _version(folder)  # covers the translations too, and so the switch
        key = (folder.name, language)
        with self._lock:
            cached = self._pages.get(key)
        if cached is not None and cached.version == version:
            return cached
        fresh = self._render(folder, language, version)
        with self._lock:
            self._pages[key] = fresh
        return fresh

    def _render(self, folder: Path, language: str, version: Version) -> Page:
        issue = load_issue(folder, self.settings, language)
        rendered = render_issue(issue, self.settings)
        filled = self._neutral(rendered.html, issue.slug, html.escape, language)
        filled = with_versions(filled, self.settings, issue.slug, language,
                               self.languages(folder))
        return Page(version, filled, frozenset(p.resolve() for p in issue.assets),
                    rendered.language)


def neutral_values(settings: Settings, slug: str, language: str | None = None
                   ) -> dict[str, str]:
    """The placeholder values of the archive: nobody's name, address or token (and no
    attributes: those placeholders are left empty). "View in your browser" stays on the
    version it is read in."""
    return {
        "first_name": settings.first_name_fallback,
        "name": settings.first_name_fallback,
        "email": "",
        "unsubscribe_url": f"{settings.base_url}/unsubscribe/",
        "preferences_url": f"{settings.base_url}/preferences/",  # explains where the link is
        "web_url": archive_url(settings, slug, language),
    }


def with_versions(page: str, settings: Settings, slug: str, language: str,
                  languages: list[str]) -> str:
    """An archive page that links to the issue's other languages: ``<link rel="alternate">``
    in the head (the original as ``x-default``), and a switch at the top of the body, each
    language by its own name, in the look of the email (inline styles, as mail has no
    stylesheet of its own). A page with no other language is left as it is."""
    if len(languages) < 2:
        return page
    urls = {code: html.escape(archive_url(settings, slug, code)) for code in languages}
    alternates = "".join(f'<link rel="alternate" hreflang="{html.escape(code)}" href="{url}">'
                         for code, url in urls.items())
    alternates += f'<link rel="alternate" hreflang="x-default" href="{urls[languages[0]]}">'
    brand = settings.brand
    choices = []
    for code, url in urls.items():
        name, tag = html.escape(display_name(code)), html.escape(code)
        if code == language:
            choices.append(f'<strong lang="{tag}" aria-current="true">{name}</strong>')
        else:
            choices.append(f'<a href="{url}" hreflang="{tag}" lang="{tag}" style="color:'
                           f'{html.escape(brand.primary_color)}">{name}</a>')
    label = html.escape(translations(language, settings).gettext("Language"))
    switch = (f'<nav aria-label="{label}" style="max-width:600px;margin:0 auto;'
              f"padding:10px 16px 0;text-align:right;font-family:"
              f"{html.escape(brand.font_family)};font-size:14px;line-height:1.6;"
              f'color:{html.escape(brand.text_color)}">'
              + ' <span aria-hidden="true">·</span> '.join(choices) + "</nav>")
    page = page.replace("</head>", alternates + "</head>", 1)
    body = _BODY.search(page)
    if body is None:
        return switch + page
    return page[:body.end()] + switch + page[body.end():]


def _version(folder: Path) -> Version:
    """Changes whenever a file of the issue folder is edited, added or removed."""
    return tuple(sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns, p.stat().st_size)
                        for p in folder.rglob("*") if p.is_file()))
