"""The Markdown body of an issue → sections of blocks.

Text before the first ``##`` heading is the introduction; each ``##`` heading starts a section.
Fenced directives (``::: button``, ``::: columns``, ``::: partners``, ``::: callout``) add the
blocks plain Markdown lacks. Problems are reported through a callback, so that every one in a
file is collected, not just the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.container import container_plugin

from newsletter.config import Link, Settings
from newsletter.values import (
    LINK_PLACEHOLDERS,
    PLACEHOLDER_RE,
    PLACEHOLDERS,
    attribute_name,
)

DIRECTIVES = ("button", "columns", "partners", "callout")


def placeholder_problem(name: str, *, in_subject: bool = False) -> str | None:
    """Why ``{{name}}`` cannot be filled in, or None. Besides the built-in fields, any
    subscriber attribute can be named as an import names it: lowercase, "_" between words."""
    if in_subject and name in LINK_PLACEHOLDERS:
        return f"{{{{{name}}}}} is a link and cannot be filled in the subject"
    if name in PLACEHOLDERS or (name and attribute_name(name) == name):
        return None
    guess = attribute_name(name)
    return (f"{{{{{name}}}}} is not a placeholder: " + (f"did you mean {{{{{guess}}}}}? "
            if guess else "") + "use " + ", ".join(f"{{{{{p}}}}}" for p in PLACEHOLDERS)
            + " or a subscriber attribute as the import names it (e.g. {{organisation}})")


@dataclass(frozen=True)
class Text:
    kind: ClassVar[str] = "text"
    html: str


@dataclass(frozen=True)
class Image:
    kind: ClassVar[str] = "image"
    src: str
    alt: str
    href: str | None = None


@dataclass(frozen=True)
class Button:
    kind: ClassVar[str] = "button"
    label: str
    url: str


@dataclass(frozen=True)
class Callout:
    kind: ClassVar[str] = "callout"
    html: str


@dataclass(frozen=True)
class Partners:
    kind: ClassVar[str] = "partners"
    partners: tuple[Link, ...]


@dataclass(frozen=True)
class Columns:
    kind: ClassVar[str] = "columns"
    columns: tuple[tuple[Block, ...], ...]


Block = Text | Image | Button | Callout | Partners | Columns


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


Report = Callable[[int, str, str], None]  # (line, field, message)


@dataclass(frozen=True)
class Landmark:
    """A point of an issue's structure that every translation must have too: a section, a
    block, an image, a link target or a placeholder, with its file line."""

    line: int
    kind: str  # "section", "block", "image", "link", "placeholder"
    value: str = ""  # the block's name, the image's src, the link's URL, the placeholder


class BodyParser:
    """One pass over the Markdown body of one issue file."""

    def __init__(self, folder: Path, settings: Settings, problem: Report):
        self.folder, self.settings, self.problem = folder, settings, problem
        self.assets: list[Path] = []
        self.outline: list[Landmark] = []  # in file order
        self.md = _markdown()

    def parse(self, body: str, body_line: int) -> tuple[tuple[Block, ...], tuple[Section, ...]]:
        """Body text starting at file line ``body_line`` → (introduction, sections)."""
        self.check_placeholders(body, body_line)
        tokens = self.md.parse(body)
        for token in tokens:  # make token.map line numbers refer to the file
            if token.map:
                token.map = [token.map[0] + body_line - 1, token.map[1] + body_line - 1]
            if token.type == "inline":
                self.check_inline(token)
            elif token.type == "heading_open" and token.tag == "h2" and token.level == 0:
                self.outline.append(Landmark(_line(token), "section"))
            elif token.type == "container_directive_open":
                name = token.info.strip().partition(" ")[0]
                self.outline.append(Landmark(_line(token), "block", name))
        self.outline.sort(key=lambda landmark: landmark.line)
        return self.split_sections(tokens)

    def check_placeholders(self, body: str, body_line: int) -> None:
        for number, line in enumerate(body.splitlines(), body_line):
            for match in PLACEHOLDER_RE.finditer(line):
                if problem := placeholder_problem(match.group(1)):
                    self.problem(number, "placeholder", problem)
                self.outline.append(Landmark(number, "placeholder", match.group(1)))

    def split_sections(self, tokens: list[Token]) -> tuple[tuple[Block, ...], tuple[Section, ...]]:
        starts = [i for i, t in enumerate(tokens) if t.type == "heading_open" and t.level == 0]
        for i in starts:
            if tokens[i].tag == "h1":
                self.problem(_line(tokens[i]), "heading", "use '##' for section headings; "
                             "the issue title goes in the front matter (hero.title)")
        starts = [i for i in starts if tokens[i].tag == "h2"]
        intro = self.blocks(tokens[: starts[0] if starts else len(tokens)])
        sections = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(tokens)
            title = tokens[start + 1].content
            sections.append(Section(title, self.blocks(tokens[start + 3: end])))
        return intro, tuple(sections)

    def blocks(self, tokens: list[Token], nested: bool = False) -> tuple[Block, ...]:
        """Top-level tokens → blocks: runs of Markdown become Text, directives their own."""
        out: list[Block] = []
        run: list[Token] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.type == "container_directive_open":
                end = _closing(tokens, i)
                out.extend(self.text_blocks(run))
                run = []
                out.extend(self.directive(token, tokens[i + 1: end], nested))
                i = end + 1
                continue
            run.append(token)
            i += 1
        out.extend(self.text_blocks(run))
        return tuple(out)

    def text_blocks(self, run: list[Token]) -> list[Block]:
        """A Markdown run; a paragraph holding only an image becomes a full-width Image."""
        out: list[Block] = []
        pending: list[Token] = []
        i = 0
        while i < len(run):
            image = _lone_image(run, i)
            if image:
                if pending:
                    out.append(Text(self.render(pending)))
                    pending = []
                out.append(image)
                i += 3  # paragraph_open, inline, paragraph_close
                continue
            pending.append(run[i])
            i += 1
        if pending:
            out.append(Text(self.render(pending)))
        return out

    def check_inline(self, token: Token) -> None:
        for child in token.children or ():
            if child.type == "link_open":
                self.outline.append(Landmark(_line(token), "link", str(child.attrGet("href"))))
            if child.type == "image":
                self.outline.append(Landmark(_line(token), "image", str(child.attrGet("src"))))
                src = str(child.attrGet("src") or "")
                if not child.content.strip():
                    self.problem(_line(token), "image", f"{src}: missing alt text "
                                 "(write ![what the image shows](file.jpg))")
                child.attrSet("src", self.resolve_src(src, _line(token), "image"))

    def resolve_src(self, src: str, line: int, field_name: str) -> str:
        """Remote images stay as they are; local ones must exist and are published by URL."""
        if re.match(r"[a-z][a-z0-9+.-]*:|//", src, re.I) or src.startswith("{{"):
            return src
        file = (self.folder / src).resolve()
        if not file.is_relative_to(self.folder.resolve()) or not file.is_file():
            self.problem(line, field_name, f"{src}: no such file in {self.folder}")
            return src
        self.assets.append(file)
        return f"{self.settings.base_url}/archive/{self.folder.name}/{src}"

    def render(self, tokens: list[Token]) -> str:
        return self.md.renderer.render(tokens, self.md.options, {}).strip()

    def directive(self, opening: Token, inner: list[Token], nested: bool) -> list[Block]:
        name, _, argument = opening.info.strip().partition(" ")
        line = _line(opening)
        if name not in DIRECTIVES:
            self.problem(line, "block", f"unknown block '::: {name}' (known: "
                         + ", ".join(DIRECTIVES) + ")")
            return []
        if argument.strip():
            self.problem(line, name, f"'::: {name}' takes no argument, got {argument.strip()!r}")
        if name == "button":
            return self.buttons(inner, line)
        if name == "callout":
            return [Callout(self.render(inner))]
        if name == "partners":
            return [Partners(self.partner_links(inner, line))]
        if nested:
            self.problem(line, "columns", "columns cannot be nested inside columns")
            return []
        return self.columns(inner, line)

    def buttons(self, inner: list[Token], line: int) -> list[Block]:
        links = [_link(child, token) for token in inner if token.type == "inline"
                 for child in _children(token) if child.type == "link_open"]
        if not links:
            self.problem(line, "button", "put a link inside: [Read the report](https://…)")
        return [Button(label, url) for label, url in links]

    def partner_links(self, inner: list[Token], line: int) -> tuple[Link, ...]:
        links = [_link(child, token) for token in inner if token.type == "inline"
                 for child in _children(token) if child.type == "link_open"]
        if not inner:
            return self.settings.footer.partners
        if not links:
            self.problem(line, "partners", "list partners as '- [Name](https://…)', "
                         "or leave the block empty to use the partners from newsletter.toml")
        return tuple(Link(name=label, url=url) for label, url in links)

    def columns(self, inner: list[Token], line: int) -> list[Block]:
        groups: list[list[Token]] = [[]]
        for token in inner:
            if token.type == "hr" and token.level == 1:
                groups.append([])
            elif token.type == "heading_open" and token.markup == "-":
                self.problem(_line(token), "columns", "a '---' right under text makes it a "
                             "heading: leave an empty line before the '---' between columns")
                groups[-1].append(token)
            else:
                groups[-1].append(token)
        if not 2 <= len(groups) <= 3:
            self.problem(line, "columns", f"expected 2 or 3 columns separated by '---' lines, "
                         f"found {len(groups)}")
            return []
        return [Columns(tuple(self.blocks(group, nested=True) for group in groups))]


# ---------------------------------------------------------------- helpers


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.use(container_plugin, name="directive", validate=lambda *_: True)
    normalize = md.normalizeLink

    def keep_placeholders(url: str) -> str:
        # markdown-it percent-encodes braces; a {{placeholder}} URL must reach the sender intact.
        return re.sub(r"%7B%7B(\w+)%7D%7D", r"{{\1}}", normalize(url))

    md.normalizeLink = keep_placeholders  # type: ignore[method-assign]
    return md


def _line(token: Token) -> int:
    return token.map[0] + 1 if token.map else 1


def _closing(tokens: list[Token], start: int) -> int:
    depth = 0
    for i in range(start, len(tokens)):
        depth += {"container_directive_open": 1, "container_directive_close": -1}.get(
            tokens[i].type, 0)
        if depth == 0:
            return i
    return len(tokens) - 1


def _children(token: Token) -> list[Token]:
    return token.children or []


def _link(opening: Token, inline: Token) -> tuple[str, str]:
    children = _children(inline)
    start = children.index(opening)
    label = []
    for child in children[start + 1:]:
        if child.type == "link_close":
            break
        label.append(child.content)
    return "".join(label).strip(), str(opening.attrGet("href") or "")


def _lone_image(run: list[Token], i: int) -> Image | None:
    """``![alt](src)`` or ``[![alt](src)](url)`` alone in a paragraph starting at ``run[i]``."""
    if run[i].type != "paragraph_open" or i + 1 >= len(run) or run[i + 1].type != "inline":
        return None
    kids = [c for c in _children(run[i + 1]) if not (c.type == "text" and not c.content.strip())]
    if len(kids) == 1 and kids[0].type == "image":
        return Image(str(kids[0].attrGet("src")), kids[0].content)
    if [k.type for k in kids] == ["link_open", "image", "link_close"]:
        return Image(str(kids[1].attrGet("src")), kids[1].content, str(kids[0].attrGet("href")))
    return None
