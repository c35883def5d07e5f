"""``newsletter new``: a dated issue folder from ``templates/new-issue.md.j2``."""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from pathlib import Path

import jinja2

from newsletter.authoring.content import ISSUE_FILE
from newsletter.config import Settings
from newsletter.errors import NewsletterError

SCAFFOLD = "new-issue.md.j2"


def slugify(title: str) -> str:
    """'Žilina & Sofia: 2nd Twinning!' → 'zilina-sofia-2nd-twinning'."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60].rstrip("-")


def create_issue(settings: Settings, title: str, date: dt.date) -> Path:
    """Write ``issues/<YYYY-MM>-<slug>/issue.md`` and return its path; never overwrite."""
    slug = f"{date:%Y-%m}-{slugify(title) or 'issue'}"
    folder = settings.issues_dir / slug
    if folder.exists():
        raise NewsletterError(f"{folder} already exists: choose another title or remove it")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(settings.templates_dir),
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["quoted"] = lambda text: json.dumps(text, ensure_ascii=False)  # valid YAML
    try:
        text = env.get_template(SCAFFOLD).render(title=title, date=date.isoformat(),
                                                 kicker=settings.name)
    except jinja2.TemplateNotFound:
        raise NewsletterError(f"no scaffold template {settings.templates_dir / SCAFFOLD}") from None
    folder.mkdir(parents=True)
    (folder / ISSUE_FILE).write_text(text, encoding="utf-8")
    return folder / ISSUE_FILE
