"""Commands that work on issue files: new, check, render, preview."""

from __future__ import annotations

import datetime as dt
import json
import webbrowser
from pathlib import Path

import click

from newsletter.authoring.checks import Finding, check_rendered, has_errors
from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.preview import Preview, make_server
from newsletter.authoring.render import render_issue
from newsletter.authoring.scaffold import create_issue
from newsletter.cli import EXIT_PROBLEM, Env, pass_env
from newsletter.errors import ContentError, NewsletterError, RenderError
from newsletter.message import sample_message


def issue_folder(env: Env, name: str) -> Path:
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
    path = create_issue(env.settings, title, (date or dt.datetime.now()).date())
    click.echo(f"Created {path}\nEdit it, then run: newsletter preview {path.parent.name}")


@click.command()
@click.argument("issue")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_env
def check(env: Env, issue: str, as_json: bool) -> None:
    """Validate an issue and lint the email it renders to (exit 1 on errors)."""
    folder = issue_folder(env, issue)
    findings: list[Finding] = []
    try:
        settings = env.settings
        rendered = render_issue(load_issue(folder, settings), settings)
        findings = check_rendered(rendered, settings)
    except ContentError as error:
        findings = [Finding("error", p.field, str(p)) for p in error.problems]
    except RenderError as error:
        findings = [Finding("error", "render", str(error))]
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
    """Write email.html, email.txt and a sample message.eml for an issue."""
    folder = issue_folder(env, issue)
    settings = env.settings
    rendered = render_issue(load_issue(folder, settings), settings)
    out = out or settings.root / "out" / folder.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "email.html").write_text(rendered.html, encoding="utf-8")
    (out / "email.txt").write_text(rendered.text, encoding="utf-8")
    (out / "message.eml").write_bytes(sample_message(rendered, settings))
    click.echo(f"Rendered {folder.name} into {out}/ (email.html, email.txt, message.eml)")


@click.command()
@click.argument("issue")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--open/--no-open", "open_browser", default=False, help="Open a browser tab.")
@pass_env
def preview(env: Env, issue: str, host: str, port: int, open_browser: bool) -> None:
    """Serve a live preview (desktop and phone widths) that reloads on every save."""
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
