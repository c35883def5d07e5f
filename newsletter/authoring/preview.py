"""A local preview server for editors: desktop and phone widths side by side, live reload.

Every request re-reads the issue, templates and settings when their files changed, so an edit
shows up within a second; a broken edit shows its error in the page and the server keeps going.
An issue with translations (``issue.<lang>.md``) has a switch: ``?lang=es`` on the page and on
what it fetches previews that version, with the original's structure checked against it as
``check`` does. Standard library only: this is a single-user tool on localhost, not the public
web app.
"""

from __future__ import annotations

import hashlib
import html
import json
import mimetypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from newsletter.authoring.checks import Finding, check_rendered
from newsletter.authoring.content import Issue, load_issue, translation_files
from newsletter.authoring.render import RenderedIssue, render_issue
from newsletter.authoring.translations import compare
from newsletter.config import Settings
from newsletter.errors import ConfigError, ContentError, NewsletterError
from newsletter.i18n import display_name

PAGE = Path(__file__).with_name("preview.html")


@dataclass(frozen=True)
class Snapshot:
    """One render of the issue at one version of its files (or the error that stopped it)."""

    version: str
    language: str = ""  # the translation's; "" for the original
    rendered: RenderedIssue | None = None
    findings: tuple[Finding, ...] = ()
    error: str | None = None


class Preview:
    """Renders an issue and its translations on demand, each re-rendered only when a watched
    file changed."""

    def __init__(self, folder: Path, load_settings: Callable[[], Settings]):
        self.folder = folder
        self.load_settings = load_settings
        self.base_url = ""
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}  # by language, "" for the original

    def watched_files(self) -> list[Path]:
        try:
            settings = self.load_settings()
            roots = [*settings.template_dirs, settings.root / "newsletter.toml"]
        except ConfigError:
            roots = []
        files = [p for root in [self.folder, *roots] for p in ([root] if root.is_file()
                 else root.rglob("*")) if p.is_file()]
        return sorted(files)

    def version(self) -> str:
        digest = hashlib.sha1()
        for path in self.watched_files():
            stat = path.stat()
            digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode())
        return digest.hexdigest()[:12]

    def languages(self) -> list[str]:
        """The versions to switch between: "" for the original, then every translation beside
        it (offered in newsletter.toml or not yet: its preview says which)."""
        return ["", *translation_files(self.folder)]

    def snapshot(self, language: str = "") -> Snapshot:
        """The current render of the original (``""``) or of the translation into
        ``language``."""
        version = self.version()
        with self._lock:
            found = self._snapshots.get(language)
            if found is None or found.version != version:
                found = self._snapshots[language] = self._render(version, language)
            return found

    def _render(self, version: str, language: str) -> Snapshot:
        try:
            settings = self.load_settings()
            if self.base_url:  # local images are served by this server, not the public site
                settings = settings.model_copy(update={"base_url": self.base_url})
            if language == settings.language:  # ?lang=en where issue.md is in English
                language = ""
            if language and language not in translation_files(self.folder):
                return Snapshot(version, language, error=f"{self.folder.name} has no "
                                f"translation into {language!r} (issue.{language}.md)")
            issue = load_issue(self.folder, settings, language or None)
            rendered = render_issue(issue, settings)
            findings = check_rendered(rendered, settings)
            if language:
                findings = sorted([*_translation_findings(self.folder, settings, issue),
                                   *findings], key=lambda f: f.severity != "error")
            return Snapshot(version, language, rendered, tuple(findings))
        except (NewsletterError, ConfigError) as error:
            return Snapshot(version, language, error=str(error))


def _translation_findings(folder: Path, settings: Settings, translation: Issue) -> list[Finding]:
    """What ``check`` says of a translation beyond its own email: whether it is sent at all,
    and where its structure differs from the original's (unless the original is broken)."""
    findings = []
    if translation.language not in settings.offered_languages:
        findings.append(Finding("warning", "language", f"{translation.source.name}: "
                                f"{translation.language!r} is not in languages of "
                                "newsletter.toml, so it is never sent"))
    try:
        original = load_issue(folder, settings)
    except ContentError:
        return findings
    return [*(Finding("error", problem.field, str(problem))
              for problem in compare(original, translation)), *findings]


class _Handler(BaseHTTPRequestHandler):
    preview: Preview  # set on the subclass made by make_server
    language = ""  # the version asked for (?lang=), "" for the original

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        self.language = parse_qs(url.query).get("lang", [""])[0]  # "" is the original
        routes = {"/": self._page, "/email.html": self._html, "/email.txt": self._text,
                  "/state.json": self._state}
        if path in routes:
            routes[path]()
        elif path.startswith(f"/archive/{self.preview.folder.name}/"):
            self._asset(path.rsplit("/", 1)[-1])
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def _page(self) -> None:
        self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html")

    def _html(self) -> None:
        snapshot = self.preview.snapshot(self.language)
        if snapshot.rendered:
            body = snapshot.rendered.html
        else:
            body = ("<!DOCTYPE html><meta charset='utf-8'><body style='font:15px sans-serif;"
                    "margin:24px;color:#7a0010'><h1 style='font-size:18px'>This issue does not "
                    "render</h1><pre style='white-space:pre-wrap'>"
                    f"{html.escape(snapshot.error or '')}</pre>"
                    "<p style='color:#333'>Fix the file and save: this page reloads.</p>")
        self._send(HTTPStatus.OK, body.encode(), "text/html")

    def _text(self) -> None:
        snapshot = self.preview.snapshot(self.language)
        text = snapshot.rendered.text if snapshot.rendered else snapshot.error or ""
        self._send(HTTPStatus.OK, text.encode(), "text/plain")

    def _state(self) -> None:
        snapshot = self.preview.snapshot(self.language)
        state = {"version": snapshot.version, "error": snapshot.error,
                 "subject": snapshot.rendered.subject if snapshot.rendered else None,
                 "findings": [f.as_dict() for f in snapshot.findings],
                 "language": snapshot.language,
                 "languages": [{"code": code, "name": display_name(code) if code else "Original",
                                "current": code == snapshot.language}
                               for code in self.preview.languages()]}
        self._send(HTTPStatus.OK, json.dumps(state).encode(), "application/json")

    def _asset(self, name: str) -> None:
        file = self.preview.folder / name
        if name in ("", "issue.md") or not file.is_file():
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            return
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, file.read_bytes(), kind)

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8" if kind.startswith("text")
                         else kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet: the CLI prints the URL
        pass


def make_server(preview: Preview, host: str = "127.0.0.1", port: int = 8025) -> ThreadingHTTPServer:
    """A server for ``preview``; port 0 picks a free port (see ``server.server_address``)."""
    handler = type("PreviewHandler", (_Handler,), {"preview": preview})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    preview.base_url = f"http://{host}:{server.server_address[1]}"
    return server
