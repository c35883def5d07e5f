"""Pre-send lint of a ``RenderedIssue``: what would hurt delivery or readers, found before sending.

Errors block a send; warnings are printed and left to the editor's judgement.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

from newsletter.authoring.content import (
    ISSUE_FILE,
    LINK_PLACEHOLDERS,
    PLACEHOLDER_RE,
    WELCOME,
    Issue,
    load_issue,
    placeholder_problem,
    translation_files,
    triggered_issues,
)
from newsletter.authoring.render import RenderedIssue, render_issue
from newsletter.authoring.translations import compare
from newsletter.config import Settings
from newsletter.errors import ContentError, Problem, RenderError
from newsletter.message import sample_message

Severity = Literal["error", "warning"]

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides everything after ~102 KB of HTML, footer included
SIZE_WARNING_BYTES = 90 * 1024
SUBJECT_MAX_CHARS = 78  # longer subjects are cut off in most inbox lists
MAX_LINE_OCTETS = 998  # RFC 5322 §2.1.1; SES rejects longer lines


@dataclass(frozen=True)
class Finding:
    severity: Severity
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.rule}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def check_issue(folder: Path, settings: Settings) -> list[Finding]:
    """Every finding for an issue folder, errors first: the original and each translation
    (its file, its email, its structure against the original's), and the languages offered
    in ``newsletter.toml`` that have no translation (warnings: those readers get a fallback)."""
    findings: list[Finding] = []
    original = _checked_version(folder, settings, None, findings)
    files = translation_files(folder)
    for language, path in files.items():
        if language not in settings.offered_languages:
            findings.append(Finding("warning", "language", f"{path}: {language!r} is not in "
                                    "languages of newsletter.toml, so it is never sent"))
            continue
        translation = _checked_version(folder, settings, language, findings)
        if original and translation:
            findings += [_error(problem) for problem in compare(original, translation)]
    if original and original.meta.trigger:
        findings += _trigger_findings(original, settings)
    missing = [language for language in settings.offered_languages[1:] if language not in files]
    if missing:
        readers = ", ".join(f"{language} → {settings.fallback_chain(language)[1]}"
                            for language in missing)
        findings.append(Finding("warning", "translation", f"no translation into "
                                f"{', '.join(missing)}: those readers get {readers}"))
    return sorted(findings, key=lambda f: f.severity != "error")


def _checked_version(folder: Path, settings: Settings, language: str | None,
                     findings: list[Finding]) -> Issue | None:
    """One version loaded, rendered and linted; its findings added. None if it cannot load."""
    try:
        issue = load_issue(folder, settings, language)
    except ContentError as error:
        findings += [_error(problem) for problem in error.problems]
        return None
    label = "" if language is None else f"{issue.source.name}: "
    try:
        found = check_rendered(render_issue(issue, settings), settings)
    except RenderError as error:
        found = [Finding("error", "render", str(error))]
    findings += [Finding(f.severity, f.rule, label + f.message) for f in found]
    return issue


def _trigger_findings(issue: Issue, settings: Settings) -> list[Finding]:
    """A sequence step must follow an issue that exists, the welcome issue must be one, and
    steps must not follow each other round in a circle."""
    trigger = issue.meta.trigger
    if trigger is None or trigger.welcome:
        return []
    triggers = triggered_issues(settings)
    line = _line_of(issue.source, "after:")

    def error(message: str) -> list[Finding]:
        return [_error(Problem(issue.source, line, "trigger.after", message))]

    welcome = sorted(slug for slug, meta in triggers.items() if meta.trigger and
                     meta.trigger.welcome)
    chain, step = [issue.slug], trigger.after
    while step is not None:
        if step == WELCOME:
            if len(welcome) != 1:
                return error("no issue has 'trigger: welcome'" if not welcome else
                             f"several issues have 'trigger: welcome' ({', '.join(welcome)}): "
                             "name the one to follow by its slug")
            step = welcome[0]
        if step in chain:
            return error(f"the sequence goes round in a circle: {' → '.join([*chain, step])}")
        if not (settings.issues_dir / step / ISSUE_FILE).is_file():
            return error(f"no issue {step!r} to follow (a slug of issues/, or 'welcome')")
        chain.append(step)
        followed = triggers[step].trigger if step in triggers else None
        step = followed.after if followed else None
    return []


def _line_of(path: Path, text: str) -> int:
    """The first line of the file holding ``text`` (1 if none does)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 1
    return next((number for number, line in enumerate(lines, 1) if text in line), 1)


def _error(problem: Problem) -> Finding:
    return Finding("error", problem.field, str(problem))


def check_rendered(rendered: RenderedIssue, settings: Settings) -> list[Finding]:
    """Every finding for one rendered issue, errors first."""
    page = _Page()
    page.feed(rendered.html)
    findings = [
        *_size(rendered),
        *_images(page),
        *_links(page),
        *_placeholders(rendered),
        *_envelope(rendered),
        *check_message(sample_message(rendered, settings)),
    ]
    return sorted(findings, key=lambda f: f.severity != "error")


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def _size(rendered: RenderedIssue) -> list[Finding]:
    size = len(rendered.html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        return [Finding("error", "size", f"the HTML is {size / 1024:.0f} KB: Gmail clips mail "
                        f"over {GMAIL_CLIP_BYTES // 1024} KB and hides the unsubscribe link")]
    if size > SIZE_WARNING_BYTES:
        return [Finding("warning", "size", f"the HTML is {size / 1024:.0f} KB, close to Gmail's "
                        f"{GMAIL_CLIP_BYTES // 1024} KB clipping limit")]
    return []


def _images(page: _Page) -> list[Finding]:
    return [Finding("error", "alt-text", f"image {src} has no alt text")
            for src, alt in page.images if not (alt or "").strip()]


def _links(page: _Page) -> list[Finding]:
    findings = []
    for href in page.links:
        whole = PLACEHOLDER_RE.fullmatch(href)  # our own links; an attribute could hold anything
        if (whole and whole.group(1) in LINK_PLACEHOLDERS) or re.match(r"(mailto|tel):", href):
            continue
        if href.startswith("http://"):
            findings.append(Finding("warning", "links", f"{href} is not https"))
        elif not href.startswith("https://"):
            findings.append(Finding("error", "links", f"{href!r} is not an absolute https:// "
                                    "link (relative links break in mail clients)"))
    return findings


def _placeholders(rendered: RenderedIssue) -> list[Finding]:
    findings = []
    for part, body in (("HTML", rendered.html), ("text", rendered.text)):
        if "{{unsubscribe_url}}" not in body:
            findings.append(Finding("error", "unsubscribe", f"the {part} part has no "
                                    "{{unsubscribe_url}} link"))
        problems = {placeholder_problem(m.group(1)) for m in PLACEHOLDER_RE.finditer(body)}
        findings += [Finding("error", "placeholders", f"{problem} in the {part} part")
                     for problem in sorted(p for p in problems if p)]
    return findings


def _envelope(rendered: RenderedIssue) -> list[Finding]:
    findings = []
    if not rendered.preheader.strip():
        findings.append(Finding("warning", "preheader", "no preheader: inboxes will show the "
                                "first words of the email instead"))
    if len(rendered.subject) > SUBJECT_MAX_CHARS:
        findings.append(Finding("warning", "subject", f"the subject has {len(rendered.subject)} "
                                f"characters; inboxes cut it after about {SUBJECT_MAX_CHARS}"))
    return findings


def check_message(raw: bytes) -> list[Finding]:
    """Lint an encoded message: no line may exceed RFC 5322's 998 octets."""
    longest = max(len(line) for line in raw.splitlines())
    if longest > MAX_LINE_OCTETS:
        return [Finding("error", "line-length", f"a line of the encoded message has {longest} "
                        f"octets (the limit is {MAX_LINE_OCTETS})")]
    return []


class _Page(HTMLParser):
    """Collects the links and images of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href") is not None:
            self.links.append((values["href"] or "").strip())
        elif tag == "img":
            self.images.append((values.get("src") or "", values.get("alt")))
