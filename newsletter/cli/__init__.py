"""The ``newsletter`` command: a thin click layer over the library.

Exit codes: 0 success · 1 the command ran and found or met a problem (invalid issue, failed
check, failed operation) · 2 usage error (unknown option, missing argument) · 3 configuration
error (newsletter.toml or NEWSLETTER_* must be fixed first).

Every module of this package imports, at its top, only click, the standard library and the light
parts of the package (``newsletter.errors``, ``newsletter.values``); each command imports the
libraries it needs when it runs. ``newsletter --help`` and shell completion (which runs the
command on every tab) then load nothing else, and a command only its own libraries: ``check``
neither SQLAlchemy nor boto3 nor Flask. tests/test_cli_imports.py checks it; bench/cli.py
measures it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsletter import __version__
from newsletter.errors import ConfigError, NewsletterError

if TYPE_CHECKING:
    from newsletter.config import Settings

EXIT_PROBLEM, EXIT_USAGE, EXIT_CONFIG = 1, 2, 3


class ConfigFailure(click.ClickException):
    exit_code = EXIT_CONFIG


class _Group(click.Group):
    """Turns library errors into clean messages with meaningful exit codes, never tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            raise ConfigFailure(f"configuration: {error}") from None
        except NewsletterError as error:
            raise click.ClickException(str(error)) from None


class Env:
    """Per-invocation state: the settings are loaded once, on first use."""

    def __init__(self, config: Path | None):
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from newsletter.config import load_settings

            self._settings = load_settings(self.config)
        return self._settings


pass_env = click.make_pass_decorator(Env)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              envvar="NEWSLETTER_CONFIG",
              help="Path to newsletter.toml (default: ./newsletter.toml).")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Write newsletter issues as Markdown, render them to email, send them through Amazon SES."""
    ctx.obj = Env(config)


def _register() -> None:
    from newsletter.cli import (
        events,
        folder,
        issues,
        reports,
        scheduling,
        sending,
        ses,
        subscribers,
        triggers,
        web,
    )

    for module in (folder, issues, subscribers, sending, scheduling, triggers, web, events,
                   ses, reports):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
