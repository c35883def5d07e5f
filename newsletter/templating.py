"""Template lookup: a newsletter folder's ``templates/`` over the default theme, file by file.

The theme (``newsletter/theme/``) ships in the package, so a new folder renders with no
templates of its own; a folder overrides just what it changes (``partials/footer.mjml.j2``).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path

import jinja2
from jinja2.loaders import split_template_path


class TemplateLoader(jinja2.FileSystemLoader):
    """First match wins along ``searchpath`` (the folder's templates, then the theme).

    ``FileSystemLoader`` reloads a template when the file it came from changes, but not when an
    override appears (or goes) in an earlier folder while ``preview`` or ``serve`` runs; here a
    template is also stale once its name resolves to another file.
    """

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)

        def current() -> bool:
            return uptodate() and self.resolve(template) == filename

        return source, filename, current

    def resolve(self, template: str) -> str | None:
        """The file ``template`` comes from now, or None."""
        pieces = split_template_path(template)
        for folder in self.searchpath:
            path = posixpath.join(folder, *pieces)  # as FileSystemLoader looks them up
            if os.path.isfile(path):
                return os.path.normpath(path)
        return None


def theme_files(theme: Path) -> list[str]:
    """Every template name of a theme folder, as ``partials/footer.mjml.j2``."""
    return sorted(p.relative_to(theme).as_posix() for p in theme.rglob("*") if p.is_file())
