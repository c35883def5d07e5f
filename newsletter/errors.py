"""The exceptions the library raises, as one tree.

    ConfigError(Exception)              newsletter.toml or NEWSLETTER_* is wrong: fix and rerun.
                                        Kept outside NewsletterError on purpose, so that code
                                        handling per-issue or per-recipient failures can never
                                        swallow a configuration mistake.
    NewsletterError(Exception)          anything else the user can act on
    ├── ContentError(ValueError)        an issue file is invalid (carries every Problem found)
    ├── IssueNotFound(LookupError)      no issue folder matches the name given
    └── RenderError                     the templates or MJML could not produce an email

Each error's ``str()`` is the message to show the user; the CLI prints it without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a file, located so an editor can jump to it."""

    path: Path
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class ConfigError(Exception):
    """The configuration is missing or invalid; the message names the key to fix."""


class NewsletterError(Exception):
    """Base class of every error the user can act on (other than configuration)."""


class ContentError(NewsletterError, ValueError):
    """An issue file has problems; ``problems`` lists all of them, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class IssueNotFound(NewsletterError, LookupError):
    """No issue folder matches the given path or slug."""


class RenderError(NewsletterError):
    """Templates or MJML failed to produce an email (a template or layout bug, not content)."""
