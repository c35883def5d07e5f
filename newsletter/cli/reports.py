"""``newsletter report``: what happened to an issue, or to every issue and the list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from newsletter.cli import Env, pass_env
from newsletter.errors import NewsletterError

NOT_SENT = ("{slug} has not been sent, so there is nothing to report yet (`newsletter status "
            "{slug}` shows where it stands)")


@click.command()
@click.argument("issue", required=False)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write (default: out/<issue>/report.html, or "
                   "out/report.html without ISSUE).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in a browser.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead.")
@pass_env
def report(env: Env, issue: str | None, out: Path | None, open_page: bool,
           as_json: bool) -> None:
    """Write a report as one self-contained HTML page: what happened to ISSUE (who it reached,
    rates against SES's thresholds, charts over time, links, domains, errors), or without
    ISSUE every issue side by side and the list over time."""
    slug = _slug(env, issue) if issue else None
    figures, html = _report(env, slug, as_json)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    path = out or Path("out") / (slug or "") / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    click.echo(f"wrote {path}")
    for verdict in figures.get("verdicts", []):
        if verdict["level"] != "ok":
            click.echo(f"{verdict['level']}: {verdict['message']}", err=True)
    if open_page:
        _open(path)


def _report(env: Env, slug: str | None, figures_only: bool) -> tuple[dict[str, Any], str]:
    """(the figures, the page: "" with ``figures_only``) of ``slug``, or of every issue."""
    from newsletter.reports.figures import issue_report, list_report
    from newsletter.reports.html import render_issue_report, render_list_report
    from newsletter.store import Store

    with Store.open(env.settings.database_url) as store:
        if slug is None:
            overview = list_report(store)
            return overview.as_dict(), "" if figures_only else render_list_report(overview)
        found = issue_report(store, slug, env.settings.rate)
    if found is None:
        raise NewsletterError(NOT_SENT.format(slug=slug))
    return found.as_dict(), "" if figures_only else render_issue_report(found)


def _slug(env: Env, name: str) -> str:
    """The issue's slug: its folder's name, or (a folder since removed) the name as given."""
    from newsletter.authoring.content import find_issue

    try:
        return find_issue(env.settings, name).name
    except NewsletterError:
        return Path(name.rstrip("/")).name


def _open(path: Path) -> None:
    import webbrowser

    if not webbrowser.open(path.resolve().as_uri()):
        click.echo(f"no browser to open it with: open {path} yourself", err=True)


COMMANDS = (report,)
