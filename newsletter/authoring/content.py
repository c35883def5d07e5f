"""Issue files → a validated ``Issue``.

An issue is a folder ``issues/<slug>/`` holding ``issue.md``: YAML front matter (validated
here), then a Markdown body (parsed into sections of blocks by ``newsletter.authoring.body``). Every
problem is collected and reported at once as ``path:line: field: message``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from newsletter.authoring.body import (
    DIRECTIVES,
    Block,
    BodyParser,
    Button,
    Callout,
    Columns,
    Image,
    Landmark,
    Partners,
    Section,
    Text,
    placeholder_problem,
)
from newsletter.config import Settings
from newsletter.errors import ContentError, IssueNotFound, Problem
from newsletter.values import FIELD_RE, LINK_PLACEHOLDERS, PLACEHOLDER_RE, PLACEHOLDERS

__all__ = [
    "DIRECTIVES",
    "FIELD_RE",
    "ISSUE_FILE",
    "LINK_PLACEHOLDERS",
    "PLACEHOLDERS",
    "PLACEHOLDER_RE",
    "WELCOME",
    "Block",
    "Button",
    "Callout",
    "Columns",
    "FrontMatter",
    "Hero",
    "Image",
    "Issue",
    "Landmark",
    "Partners",
    "Section",
    "Text",
    "Trigger",
    "find_issue",
    "load_issue",
    "parse_duration",
    "parse_send_at",
    "placeholder_problem",
    "read_front_matter",
    "translation_files",
    "triggered_issues",
]

ISSUE_FILE = "issue.md"
TRANSLATION_RE = re.compile(r"issue\.([a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)\.md")  # issue.bg.md


# ---------------------------------------------------------------- the content model


class _FrontMatterModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hero(_FrontMatterModel):
    """The title block at the top of an issue."""

    title: str = Field(min_length=1)
    kicker: str = ""
    image: str | None = None
    alt: str | None = None


WELCOME = "welcome"


class Trigger(_FrontMatterModel):
    """When a triggered issue goes to each subscriber: as they become active (``trigger:
    welcome``), or ``delay`` after they received the issue ``after`` names (a slug, or
    ``welcome`` for the welcome issue)."""

    after: str | None = Field(default=None, min_length=1)
    delay: dt.timedelta = dt.timedelta(0)

    @field_validator("delay", mode="before")
    @classmethod
    def _parse_delay(cls, value: Any) -> Any:
        return parse_duration(value)

    @property
    def welcome(self) -> bool:
        return self.after is None

    def describe(self) -> str:
        if self.welcome:
            return "welcome (when a subscriber joins)"
        return f"{describe_duration(self.delay)} after {self.after}"


class FrontMatter(_FrontMatterModel):
    subject: str = Field(min_length=1)
    preheader: str = ""
    date: dt.date
    send_at: dt.datetime | None = None
    audience: tuple[str, ...] = ()
    template: str | None = None
    hero: Hero | None = None
    trigger: Trigger | None = None

    @field_validator("trigger", mode="before")
    @classmethod
    def _welcome(cls, value: Any) -> Any:
        if value == WELCOME:
            return {}
        if isinstance(value, str):
            raise ValueError(f"expected 'welcome' or {{after: SLUG, delay: \"3 days\"}}, "
                             f"got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_time(self) -> FrontMatter:
        if self.trigger is not None and self.send_at is not None:
            raise ValueError("send_at: a triggered issue goes to each subscriber at their own "
                             "time; remove send_at or trigger")
        return self

    @field_validator("subject")
    @classmethod
    def _check_subject(cls, value: str) -> str:
        for match in PLACEHOLDER_RE.finditer(value):
            if problem := placeholder_problem(match.group(1), in_subject=True):
                raise ValueError(problem)
        return value

    @field_validator("send_at", mode="before")
    @classmethod
    def _parse_send_at(cls, value: Any) -> Any:
        return parse_send_at(value) if value is not None else None


@dataclass(frozen=True)
class Issue:
    """One validated issue, ready to render."""

    slug: str
    folder: Path
    meta: FrontMatter
    intro: tuple[Block, ...]
    sections: tuple[Section, ...]
    assets: tuple[Path, ...] = field(default=())
    hero_image: str | None = None  # hero.image as a URL (local files are published)
    language: str = ""  # of this version: the newsletter's language for issue.md
    source: Path = Path()  # the file: issue.md, or issue.<lang>.md for a translation
    outline: tuple[Landmark, ...] = field(default=(), compare=False)  # see translations.py


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(second|minute|hour|day)s?", re.IGNORECASE)


def parse_duration(value: Any) -> dt.timedelta:
    """``3 days``, ``12 hours``, ``1 day 6 hours``, ``90 minutes``, ``30 seconds`` (or a number
    of seconds) → a timedelta."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return dt.timedelta(seconds=value)
    text = str(value).strip()
    parts = _DURATION_PART.findall(text)
    if not parts or not re.fullmatch(r"(?:[\s,]|and)*", _DURATION_PART.sub("", text)):
        raise ValueError(f"expected a duration like '3 days', '12 hours' or '90 minutes', "
                         f"got {value!r}")
    return dt.timedelta(seconds=sum(float(n) * _UNITS[unit.lower()] for n, unit in parts))


def describe_duration(delta: dt.timedelta) -> str:
    """``3 days``, ``1 day 6 hours``, ``0 seconds``: the largest units first."""
    seconds, words = int(delta.total_seconds()), []
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        count, seconds = divmod(seconds, size)
        if count:
            words.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(words) or "0 seconds"


def parse_send_at(value: Any) -> dt.datetime:
    """``2025-10-06 09:00 Europe/Sofia`` or ISO 8601 with an offset → an aware datetime."""
    if isinstance(value, dt.datetime):
        moment, zone = value, None
    else:
        text = str(value).strip()
        head, _, tail = text.rpartition(" ")
        if (head and "/" in tail) or tail == "UTC":
            text, zone = head, tail
        else:
            zone = None
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"expected a time like '2025-10-06 09:00 Europe/Sofia' or "
                f"'2025-10-06T09:00+03:00', got {value!r}"
            ) from None
    if zone:
        if moment.tzinfo:
            raise ValueError("give either a UTC offset or a zone name, not both")
        try:
            return moment.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
    if moment.tzinfo is None:
        raise ValueError("add a UTC offset (+02:00) or a zone name (Europe/Brussels)")
    return moment


# ---------------------------------------------------------------- finding and loading


def find_issue(settings: Settings, name: str | Path) -> Path:
    """An issue folder from a path (``issues/2025-04-x``) or a bare slug (``2025-04-x``)."""
    for candidate in (Path(name), settings.issues_dir / str(name)):
        if (candidate / ISSUE_FILE).is_file():
            return candidate
        if candidate.name == ISSUE_FILE and candidate.is_file():
            return candidate.parent
    known = sorted(p.parent.name for p in settings.issues_dir.glob(f"*/{ISSUE_FILE}"))
    hint = f"; known issues: {', '.join(known)}" if known else ""
    raise IssueNotFound(f"no issue {str(name)!r} (looked for {ISSUE_FILE} in it{hint})")


def load_issue(folder: Path, settings: Settings, language: str | None = None) -> Issue:
    """Read and validate ``folder/issue.md``, or its translation ``issue.<language>.md``;
    raise ContentError listing every problem (IssueNotFound for a translation that is not
    there)."""
    original = language in (None, settings.language)
    path = folder / (ISSUE_FILE if original else f"issue.{language}.md")
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IssueNotFound(f"{folder.name} has no translation into {language!r} "
                            f"({path.name})") from None
    except UnicodeDecodeError as error:
        raise ContentError([Problem(path, 1, "file", f"not UTF-8 ({error.reason})")]) from None
    return _IssueParser(path, source, settings).parse(
        settings.language if original else str(language))


def read_front_matter(folder: Path, settings: Settings) -> FrontMatter:
    """Only the front matter of ``folder/issue.md`` (the scheduler looks for triggers in every
    issue on each pass: the body is not needed for that); ContentError if it is invalid."""
    path = folder / ISSUE_FILE
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ContentError([Problem(path, 1, "file", f"not UTF-8 ({error.reason})")]) from None
    parser = _IssueParser(path, source, settings)
    meta, _, _ = parser.split_front_matter()
    if meta is None:
        raise ContentError(parser.problems)
    return meta


_FRONT_MATTER_CACHE: dict[Path, tuple[tuple[int, int], FrontMatter | None]] = {}


def triggered_issues(settings: Settings) -> dict[str, FrontMatter]:
    """The front matter of every issue with a ``trigger``, by slug. It is read again only
    from files that changed since the last call (a scheduler asks on every pass; a stat is
    cheap, YAML is not); issues whose front matter is invalid are left out (``check`` reports
    them)."""
    found = {}
    for path in sorted(settings.issues_dir.glob(f"*/{ISSUE_FILE}")):
        try:
            stat = path.stat()
        except OSError:
            continue
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = _FRONT_MATTER_CACHE.get(path)
        if cached is None or cached[0] != stamp:
            try:
                meta: FrontMatter | None = read_front_matter(path.parent, settings)
            except (ContentError, OSError):
                meta = None
            cached = _FRONT_MATTER_CACHE[path] = (stamp, meta)
        if cached[1] is not None and cached[1].trigger is not None:
            found[path.parent.name] = cached[1]
    return found


def translation_files(folder: Path) -> dict[str, Path]:
    """The translations beside an issue's ``issue.md``, by language: ``{"bg": …/issue.bg.md}``."""
    found = {}
    for path in sorted(folder.glob("issue.*.md")):
        match = TRANSLATION_RE.fullmatch(path.name)
        if match:
            found[match.group(1)] = path
    return found


class _IssueParser:
    """One pass over one issue file, gathering problems instead of stopping at the first."""

    def __init__(self, path: Path, source: str, settings: Settings):
        self.path, self.source, self.settings = path, source, settings
        self.folder = path.parent
        self.problems: list[Problem] = []
        self.hero_line = 1
        self.body = BodyParser(self.folder, settings, self.problem)

    def problem(self, line: int, field_name: str, message: str) -> None:
        self.problems.append(Problem(self.path, line, field_name, message))

    def parse(self, language: str) -> Issue:
        meta, body, body_line = self.split_front_matter()
        intro, sections = self.body.parse(body, body_line)
        hero_image = None
        if meta and meta.hero and meta.hero.image:
            hero_image = self.body.resolve_src(meta.hero.image, self.hero_line, "hero.image")
            if not meta.hero.alt:
                self.problem(self.hero_line, "hero.alt", "the hero image needs alt text")
        if self.problems:
            raise ContentError(self.problems)
        assert meta is not None
        outline = [Landmark(1, "placeholder", match.group(1))  # in the front matter
                   for text in (meta.subject, meta.preheader)
                   for match in PLACEHOLDER_RE.finditer(text)]
        return Issue(self.folder.name, self.folder, meta, intro, sections,
                     tuple(self.body.assets), hero_image, language, self.path,
                     (*outline, *self.body.outline))

    # -- front matter

    def split_front_matter(self) -> tuple[FrontMatter | None, str, int]:
        lines = self.source.splitlines(keepends=True)
        if not lines or lines[0].strip() != "---":
            self.problem(1, "front matter", "the file must start with a '---' line, then "
                         "subject, date and the other fields, then another '---' line")
            return None, self.source, 1
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        if end is None:
            self.problem(1, "front matter", "no closing '---' line after the front matter")
            return None, "", len(lines)
        return self.front_matter("".join(lines[1:end])), "".join(lines[end + 1:]), end + 2

    def front_matter(self, text: str) -> FrontMatter | None:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 2 if mark else 1
            reason = getattr(error, "problem", None) or str(error)
            self.problem(line, "front matter", f"invalid YAML: {reason}")
            return None
        if not isinstance(data, dict):
            self.problem(2, "front matter", "expected 'field: value' lines")
            return None
        self.hero_line = _node_line(node, ("hero", "image"))
        try:
            return FrontMatter.model_validate(data)
        except ValidationError as error:
            for item in error.errors():
                loc = tuple(item["loc"])
                message = item["msg"].removeprefix("Value error, ")
                if item["type"] == "extra_forbidden":
                    model = _NESTED.get(str(loc[0]), FrontMatter) if len(loc) > 1 else \
                        FrontMatter
                    message = "unknown field (known: " + ", ".join(model.model_fields) + ")"
                elif item["type"] == "missing":
                    message = "required field is missing"
                self.problem(_node_line(node, loc), ".".join(map(str, loc)), message)
            return None

    # -- body

# ---------------------------------------------------------------- helpers

_NESTED: dict[str, type[BaseModel]] = {"hero": Hero, "trigger": Trigger}



def _node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The file line of the front-matter key at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line if node else 0
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == key), None)
            node, line = (pair[1], pair[0].start_mark.line) if pair else (None, line)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line
        else:
            node = None
        if node is None:
            break
    return line + 2  # +1 for 1-based lines, +1 for the opening '---'


