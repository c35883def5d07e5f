"""Commands that make and customise a newsletter folder: init, templates.

Library modules are imported inside the commands, so that ``newsletter --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from newsletter.cli import Env, pass_env


@click.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="The newsletter's name, e.g. \"ASIT Newsletter\".")
@click.option("--from", "sender", metavar="ADDRESS",
              help="The sender, e.g. \"ASIT Project <newsletter@asit-project.eu>\".")
@click.option("--base-url", metavar="URL",
              help="Where the archive and unsubscribe pages will be served.")
@click.option("--language", default="en", show_default=True, help="The issues' language.")
def init(folder: Path, name: str | None, sender: str | None, base_url: str | None,
         language: str) -> None:
    """Make FOLDER (default: here) a newsletter: settings, a first issue, a sample list.

    Values not given as options are asked for on a terminal. Nothing is ever overwritten."""
    from newsletter.authoring.scaffold import NewFolder, create_newsletter, ensure_new_folder
    from newsletter.errors import ConfigError

    ensure_new_folder(folder)
    default_name = folder.resolve().name.replace("-", " ").replace("_", " ").title()
    values = NewFolder(
        name=name or _ask("--name", "Name of the newsletter", default_name or None),
        sender=sender or _ask("--from", "Sender (Name <address>)"),
        base_url=base_url or _ask("--base-url", "Public web address (https://...)"),
        language=language)
    try:
        written = create_newsletter(folder, values, dt.date.today())
    except ConfigError as error:
        raise click.UsageError(str(error).split(": ", 1)[-1]) from None
    issue = written[-1].parent.name
    click.echo(f"Created a newsletter in {folder}:")
    for path in written:
        click.echo(f"  {path.relative_to(folder.resolve())}")
    here = "" if folder.resolve() == Path.cwd() else f"  cd {folder}\n"
    click.echo(
        f"Next:\n{here}"
        "  export NEWSLETTER_SECRET_KEY=\"$(python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')\"   # once; keep it\n"
        f"  newsletter preview {issue}\n"
        "  newsletter subscribers import subscribers/sample.csv\n"
        f"  newsletter send {issue}            # to outbox/ until transport = \"ses\"")


def _ask(option: str, prompt: str, default: str | None = None) -> str:
    """A value from the terminal; without one (a script, CI), the option is required."""
    if not sys.stdin.isatty():
        raise click.UsageError(f"{option} is required (no terminal to ask on)")
    return str(click.prompt(prompt, default=default)).strip()


@click.group()
def templates() -> None:
    """The default theme's templates, and this folder's own in templates/."""


@templates.command("list")
@pass_env
def list_templates(env: Env) -> None:
    """Every template, marked where this folder has its own version."""
    from newsletter.authoring.scaffold import template_overrides

    theme, own = template_overrides(env.settings)
    for name in sorted({*theme, *own}):
        mark = ("own " if name not in theme else "custom") if name in own else "      "
        click.echo(f"{mark}  {name}")
    click.echo(f"\n{len(own)} of the folder's own in {env.settings.templates_dir}; "
               "the rest come from the default theme.")


@templates.command("copy")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Replace templates the folder already has.")
@pass_env
def copy(env: Env, names: tuple[str, ...], force: bool) -> None:
    """Copy templates of the default theme into templates/ to customise them.

    NAMES are files (partials/footer.mjml.j2) or folders (web); none copies the whole theme.
    A copied file replaces the theme's for this folder, file by file."""
    from newsletter.authoring.scaffold import copy_templates

    written = copy_templates(env.settings, names, overwrite=force)
    for path in written:
        click.echo(f"copied {path.relative_to(env.settings.root)}")
    click.echo(f"{len(written)} template(s) copied: edit them there; "
               "`newsletter preview ISSUE` shows the result as you save.")


COMMANDS: list[click.Command] = [init, templates]
