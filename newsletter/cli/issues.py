"""Commands that work on issue files: new, check, render, preview."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from newsletter.cli import EXIT_PROBLEM, Env, pass_env
from newsletter.errors import NewsletterError


def issue_folder(env: Env, name: str) -> Path:
    from newsletter.authoring.content import find_issue

    try:
        return find_issue(env.settings, name)
    except NewsletterError as error:
        raise click.BadParameter(str(error), param_hint="ISSUE") from None


@click.command()
@click.argument("title")
@click.option("--date", "date", type=click.DateTime(["%Y-%m-%d"]),
              help="Issue date (default: today).")
@pass_env
def new(env: Env, title: str, date: dt.datetime | None) -> None:
    """Create a new issue folder from the scaffold, ready to edit."""
    from newsletter.authoring.scaffold import create_issue

    path = create_issue(env.settings, title, (date or dt.datetime.now()).date())
    click.echo(f"Created {path}\nEdit it, then run: newsletter preview {path.parent.name}")


@click.command()
@click.argument("issue")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_env
def check(env: Env, issue: str, as_json: bool) -> None:
    """Validate an issue and its translations and lint the emails they render to (exit 1 on
    errors)."""
    from newsletter.authoring.checks import check_issue, has_errors

    folder = issue_folder(env, issue)
    findings = check_issue(folder, env.settings)
    errors = sum(f.severity == "error" for f in findings)
    if as_json:
        click.echo(json.dumps({"issue": folder.name, "ok": not errors, "errors": errors,
                               "warnings": len(findings) - errors,
                               "findings": [f.as_dict() for f in findings]}, indent=2))
    else:
        for finding in findings:
            click.echo(str(finding), err=finding.severity == "error")
        click.echo(f"{folder.name}: {errors} error(s), {len(findings) - errors} warning(s)")
    if has_errors(findings):
        raise SystemExit(EXIT_PROBLEM)


@click.command()
@click.argument("issue")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write to (default: out/<issue>).")
@pass_env
def render(env: Env, issue: str, out: Path | None) -> None:
    """Write email.html, email.txt and a sample message.eml for an issue, and for each
    translation in a folder of its language (out/<issue>/<lang>/)."""
    from newsletter.authoring.render import render_edition
    from newsletter.message import sample_message

    folder = issue_folder(env, issue)
    settings = env.settings
    edition = render_edition(folder, settings)
    out = out or settings.root / "out" / folder.name
    for language, rendered in edition.versions.items():
        target = out if rendered is edition.original else out / language
        target.mkdir(parents=True, exist_ok=True)
        (target / "email.html").write_text(rendered.html, encoding="utf-8")
        (target / "email.txt").write_text(rendered.text, encoding="utf-8")
        (target / "message.eml").write_bytes(sample_message(rendered, settings))
    others = [f"{language}/" for language in list(edition.versions)[1:]]
    click.echo(f"Rendered {folder.name} into {out}/ (email.html, email.txt, message.eml)"
               + (f", translations in {', '.join(others)}" if others else ""))


@click.command()
@click.argument("issue")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--open/--no-open", "open_browser", default=False, help="Open a browser tab.")
@pass_env
def preview(env: Env, issue: str, host: str, port: int, open_browser: bool) -> None:
    """Serve a live preview (desktop and phone widths) that reloads on every save."""
    import webbrowser

    from newsletter.authoring.preview import Preview, make_server

    folder = issue_folder(env, issue)
    _ = env.settings  # fail now, with a clear message, if the configuration is broken
    server = make_server(Preview(folder, lambda: Env(env.config).settings), host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    click.echo(f"Previewing {folder.name} at {url} (Ctrl-C to stop)")
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = (new, check, render, preview)
