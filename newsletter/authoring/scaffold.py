"""Scaffolds: a newsletter folder (``newsletter init``), a dated issue in it (``newsletter new``),
templates of the default theme to customise (``newsletter templates copy``)."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tomllib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from newsletter.authoring.content import ISSUE_FILE
from newsletter.config import CONFIG_NAME, THEME_DIR, Settings, settings_from_document
from newsletter.errors import NewsletterError
from newsletter.templating import TemplateLoader, theme_files

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
    env = jinja2.Environment(loader=TemplateLoader(settings.template_dirs),
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["quoted"] = lambda text: json.dumps(text, ensure_ascii=False)  # valid YAML
    try:
        text = env.get_template(SCAFFOLD).render(title=title, date=date.isoformat(),
                                                 kicker=settings.name)
    except jinja2.TemplateNotFound:
        raise NewsletterError(f"no scaffold template {SCAFFOLD} in {settings.templates_dir} "
                              "or the default theme") from None
    folder.mkdir(parents=True)
    (folder / ISSUE_FILE).write_text(text, encoding="utf-8")
    return folder / ISSUE_FILE


# ---------------------------------------------------------------- a newsletter folder

STARTER_DIR = Path(__file__).parent / "starter"
# What ``newsletter init`` writes: the file in the folder ← the starter file it comes from.
STARTER_FILES = {
    CONFIG_NAME: "newsletter.toml.j2",
    "README.md": "README.md.j2",
    ".gitignore": "gitignore",
    "subscribers/sample.csv": "sample.csv",
}


@dataclass(frozen=True)
class NewFolder:
    """What a new newsletter folder is made of: the values its ``newsletter.toml`` starts with."""

    name: str
    sender: str  # "Name <news@example.org>"
    base_url: str
    language: str = "en"


def ensure_new_folder(folder: Path) -> None:
    """NewsletterError if ``init`` would overwrite anything in ``folder``."""
    if (folder / CONFIG_NAME).exists():
        raise NewsletterError(f"{folder / CONFIG_NAME} exists: {folder} already is a newsletter")
    taken = [name for name in STARTER_FILES if (folder / name).exists()]
    if taken:
        raise NewsletterError(f"{folder} already has {', '.join(taken)}: choose an empty folder")


def create_newsletter(folder: Path, values: NewFolder, today: dt.date) -> list[Path]:
    """Make ``folder`` a newsletter: config, README, .gitignore, a sample list and a first issue
    that passes ``check``. Return the files written.

    Never overwrites: NewsletterError before writing anything if the folder already is a
    newsletter or holds a file of the same name. ConfigError if the values make an invalid
    configuration (checked before anything is written, by the same validation as at run time).
    """
    folder = folder.resolve()
    ensure_new_folder(folder)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(STARTER_DIR),
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["toml"] = lambda text: json.dumps(text, ensure_ascii=False)  # a TOML string
    context = {"name": values.name, "sender": values.sender, "base_url": values.base_url,
               "language": values.language}
    texts = {name: env.get_template(source).render(context)
             for name, source in STARTER_FILES.items()}
    settings = settings_from_document(tomllib.loads(texts[CONFIG_NAME]), folder / CONFIG_NAME,
                                      env={})
    written = []
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    written.append(create_issue(settings, f"Welcome to {values.name}", today))
    return written


def copy_templates(settings: Settings, names: Sequence[str] = (), *,
                   overwrite: bool = False) -> list[Path]:
    """Copy templates of the default theme into the folder's ``templates/`` to customise them:
    those named (a file such as ``partials/footer.mjml.j2``, or a folder such as ``web``), or
    all. Return the files written. NewsletterError for a name the theme does not have, or a
    file the folder already has (unless ``overwrite``), before copying anything."""
    available = theme_files(THEME_DIR)
    chosen = list(available) if not names else []
    for name in names:
        name = name.strip("/")
        matches = [f for f in available if f == name or f.startswith(name + "/")]
        if not matches:
            raise NewsletterError(f"the default theme has no template {name!r}: see "
                                  "`newsletter templates list`")
        chosen += [f for f in matches if f not in chosen]
    targets = {name: settings.templates_dir / name for name in chosen}
    existing = [name for name, path in targets.items() if path.exists()]
    if existing and not overwrite:
        raise NewsletterError(f"{settings.templates_dir} already has {', '.join(existing)}: "
                              "edit it there, or pass --force to replace it with the theme's")
    for name, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(THEME_DIR / name, path)
    return list(targets.values())


def template_overrides(settings: Settings) -> tuple[list[str], list[str]]:
    """The theme's templates and the folder's own (overrides and additions), by name."""
    own = theme_files(settings.templates_dir) if settings.templates_dir.is_dir() else []
    return theme_files(THEME_DIR), own
