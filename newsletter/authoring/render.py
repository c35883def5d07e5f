"""``Issue`` → ``RenderedIssue``: Jinja2 → MJML → mjml-python → premailer, plus a text part.

Pure: no database, no network. Runs once per issue; per-recipient fields stay in the output as
``{{name}}`` placeholders (see ``content.PLACEHOLDERS``) for the send step to fill.
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from pathlib import Path
from typing import Any

import html2text
import jinja2
import mjml
import premailer

from newsletter.authoring.content import (
    PLACEHOLDERS,
    Block,
    Button,
    Columns,
    Image,
    Issue,
    Partners,
    load_issue,
    translation_files,
)
from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.i18n import load_translations, locale_dirs
from newsletter.message import Edition, RenderedIssue
from newsletter.templating import TemplateLoader
from newsletter.values import FIELD_RE

LAYOUTS = "layouts"
# Jinja globals: {{ ph.unsubscribe_url }} in a template writes the literal {{unsubscribe_url}}.
PLACEHOLDER_TOKENS = {name: f"{{{{{name}}}}}" for name in PLACEHOLDERS}


def render_issue(issue: Issue, settings: Settings) -> RenderedIssue:
    """Render an issue into email HTML and text; raise RenderError for template/MJML bugs.

    A translation renders with its own language in place of the newsletter's: ``<html lang>``
    and the email's own words (footer, links) follow it."""
    if issue.language and issue.language != settings.language:
        settings = settings.model_copy(update={
            "language": issue.language, "footer": settings.footer.in_language(issue.language)})
    env = _environment(settings.template_dirs, language=settings.language,
                       locales=locale_dirs(settings))
    layout = issue.meta.template or settings.layout
    context = _context(issue, settings)
    source = _render_template(env, f"{LAYOUTS}/{layout}.mjml.j2", context)
    html = inline_css(compile_mjml(source, lambda: _marked_source(settings, layout, context)))
    text = _render_template(env, "text.txt.j2", context)
    return RenderedIssue(issue.slug, issue.meta.subject, issue.meta.preheader, html,
                         _tidy_text(text), settings.language)


def render_edition(folder: Path, settings: Settings) -> Edition:
    """The issue in ``folder`` and its translations into the languages offered, rendered:
    what a send sends. ContentError or RenderError if any of them is broken."""
    versions = {settings.language: render_issue(load_issue(folder, settings), settings)}
    for language in translation_files(folder):
        if language in settings.offered_languages and language != settings.language:
            versions[language] = render_issue(load_issue(folder, settings, language), settings)
    return Edition(versions)


def layouts(settings: Settings) -> list[str]:
    """The layout names a newsletter can choose from: the theme's and its own templates/layouts/."""
    return sorted({p.name.removesuffix(".mjml.j2") for folder in settings.template_dirs
                   for p in (folder / LAYOUTS).glob("*.mjml.j2")})


# ---------------------------------------------------------------- Jinja2


@functools.lru_cache(maxsize=64)  # (template folders, marked, language): a few per language
def _environment(template_dirs: tuple[Path, ...], marked: bool = False, language: str = "en",
                 locales: tuple[Path, ...] = ()) -> jinja2.Environment:
    """The issue email's words (``_()`` in the footer and text templates) in ``language``."""
    loader_class = _MarkingLoader if marked else TemplateLoader
    loader = loader_class(template_dirs)
    env = jinja2.Environment(
        loader=loader,
        # select_autoescape() does not know .mjml.j2, so name the escaped kinds ourselves.
        autoescape=lambda name: (name or "").endswith((".mjml.j2", ".html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,
    )
    env.filters["rows"] = block_rows
    env.filters["text"] = block_text
    env.filters["upper"] = upper_text
    env.globals["ph"] = PLACEHOLDER_TOKENS
    env.add_extension("jinja2.ext.i18n")
    translations = load_translations(language, locales)
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


def _context(issue: Issue, settings: Settings) -> dict[str, Any]:
    return {"issue": issue, "settings": settings, "brand": settings.brand,
            "footer": settings.footer}


def _render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as error:
        raise RenderError(f"template not found: {error.name} in {env.loader.searchpath[0]}"  # type: ignore[union-attr]
                          ) from None
    except jinja2.TemplateSyntaxError as error:
        raise RenderError(f"{error.filename}:{error.lineno}: template syntax: {error.message}"
                          ) from None
    except Exception as error:  # a template bug (undefined name, bad filter) — say where
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if f.filename.endswith(".j2")]
        where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
        raise RenderError(f"{where}template error: {error}") from None


def block_rows(blocks: tuple[Block, ...]) -> list[list[list[Block]]]:
    """Blocks → rows of columns: consecutive blocks share a row; Columns get a row of their own."""
    rows: list[list[list[Block]]] = []
    run: list[Block] = []
    for block in blocks:
        if isinstance(block, Columns):
            if run:
                rows.append([run])
                run = []
            rows.append([list(column) for column in block.columns])
        else:
            run.append(block)
    if run:
        rows.append([run])
    return rows


# ---------------------------------------------------------------- MJML and CSS


def compile_mjml(source: str, marked_source: Any = None) -> str:
    """MJML → HTML. MRML's errors carry no position, so on failure locate the bad tag ourselves."""
    try:
        return mjml.mjml2html(source, disable_comments=True, fonts={})
    except ValueError as error:
        where = find_unbalanced_tag(marked_source() if marked_source else source)
        raise RenderError(f"MJML structure error: {where or error}") from None


def inline_css(html: str) -> str:
    """Inline the CSS with premailer, keeping what cannot be inlined (media queries)."""
    # premailer drops MJML's lowercase doctype; strip_important=True would kill the mobile rules.
    html = html.replace("<!doctype html>", "<!DOCTYPE html>", 1)
    return premailer.Premailer(
        html,
        allow_network=False,
        strip_important=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform(pretty_print=False)


_TAG = re.compile(r"<(/?)(mjml|mj-[a-z-]+)\b[^>]*?(/?)>|<!-- (/?)template: (\S+) -->")


def find_unbalanced_tag(source: str) -> str | None:
    """Describe the first MJML tag that is closed wrongly or never, naming its template."""
    stack: list[tuple[str, int, str]] = []
    templates = ["(layout)"]
    for match in _TAG.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        closing, tag, self_closing, marker_end, template = match.groups()
        if template:
            templates.pop() if marker_end else templates.append(template)
        elif self_closing:
            continue
        elif not closing:
            stack.append((tag, line, templates[-1]))
        elif not stack or stack[-1][0] != tag:
            opened = stack[-1] if stack else None
            detail = (f"<{opened[0]}> opened at line {opened[1]} is not closed"
                      if opened else "nothing is open")
            where = opened[2] if opened else templates[-1]
            return f"{where}: found </{tag}> at line {line} but {detail}"
        else:
            stack.pop()
    if stack:
        tag, line, template = stack[-1]
        return f"{template}: <{tag}> opened at line {line} is never closed"
    return None


class _MarkingLoader(TemplateLoader):
    """Wraps each template in marker comments so an MJML error can name its template."""

    def get_source(self, environment: jinja2.Environment, template: str) -> Any:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".mjml.j2"):
            source = f"<!-- template: {template} -->{source}<!-- /template: {template} -->"
        return source, filename, uptodate


def _marked_source(settings: Settings, layout: str, context: dict[str, Any]) -> str:
    env = _environment(settings.template_dirs, marked=True, language=settings.language,
                       locales=locale_dirs(settings))
    return _render_template(env, f"{LAYOUTS}/{layout}.mjml.j2", context)


# ---------------------------------------------------------------- the text part


@functools.cache
def _html2text() -> html2text.HTML2Text:
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.ul_item_mark = "-"
    converter.unicode_snob = True
    return converter


_LINK = re.compile(r'<a href="([^"]*)">(.*?)</a>', re.S)


def html_text(html: str) -> str:
    """Markdown HTML → readable plain text; links become 'label <url>'."""
    def link(match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        bare = re.sub(r"^(https?://|mailto:)", "", url).rstrip("/")
        return label if label.strip() in (url, bare) else f"{label} &lt;{url}&gt;"

    text = _html2text().handle(_LINK.sub(link, html))
    text = re.sub(r"^  (?=\s*(?:- |\d+\. ))", "", text, flags=re.M)  # html2text indents lists
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def upper_text(text: str) -> str:
    """Upper case for headings of the text part, leaving ``{{placeholders}}`` as they are: a
    subject used as the title must not turn ``{{first_name}}`` into ``{{FIRST_NAME}}``."""
    pieces = FIELD_RE.split(str(text))  # text, name, text, name, ..., text
    return "".join(piece.upper() if i % 2 == 0 else f"{{{{{piece}}}}}"
                   for i, piece in enumerate(pieces))


def block_text(block: Block) -> str:
    """One block as plain text, for the text template."""
    if isinstance(block, Image):
        return f"[{block.alt}]" + (f" <{block.href}>" if block.href else "")
    if isinstance(block, Columns):
        return "\n\n".join(block_text(b) for column in block.columns for b in column)
    if isinstance(block, Partners):
        return "\n".join(f"{p.name}: {p.url}" for p in block.partners)
    if isinstance(block, Button):
        return f"{block.label}: {block.url}"
    return html_text(block.html)


def _tidy_text(text: str) -> str:
    """Collapse the blank lines template logic leaves behind; end with one newline."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
