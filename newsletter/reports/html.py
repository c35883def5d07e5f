"""Reports as one self-contained HTML page: styles, data and Chart.js inline, nothing fetched.

The page opens from a mail attachment or a file share: its Content-Security-Policy forbids
every request (``default-src 'none'``), so a report can never call home. The funnel, rates,
links, domains and errors are tables too, for readers without JavaScript; a chart with nothing
to draw is a sentence instead of an empty frame.

Chart.js 4.6.1 (MIT), vendored from npm in ``vendor/`` (see vendor/README.md): ~210 kB
inline, ~70 kB gzipped, no Python dependency.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from newsletter.reports.figures import IssueReport, ListReport
from newsletter.reports.series import Series
from newsletter.reports.thresholds import METRICS, percent

HERE = Path(__file__).parent
CHART_JS = HERE / "vendor" / "chart.umd.min.js"
CHART_JS_VERSION = "4.6.1"
COLOURS = {"planned": "#6b7280", "sent": "#2563eb", "delivered": "#16a34a",
           "opened": "#7c3aed", "clicked": "#d97706", "failed": "#dc2626",
           "bounced": "#b91c1c", "soft bounced": "#f59e0b", "complained": "#db2777",
           "unsubscribed": "#0d9488", "configured rate": "#6b7280", "unique": "#2563eb",
           "total": "#93c5fd"}
PALETTE = ["#2563eb", "#16a34a", "#7c3aed", "#d97706", "#dc2626", "#0d9488", "#db2777",
           "#6b7280"]
LABEL_LENGTH = 48  # characters of a link shown on a chart axis; the table has it whole


@functools.cache
def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(HERE / "templates"),
                              autoescape=select_autoescape(["html"]), trim_blocks=True,
                              lstrip_blocks=True)
    environment.filters["percent"] = lambda rate: "–" if rate is None else percent(rate)
    environment.filters["count"] = lambda n: "–" if n is None else f"{n:,}"
    return environment


@functools.cache
def chart_js() -> str:
    """The library, safe inside a <script> element."""
    return re.sub(r"</(script)", r"<\\/\1", CHART_JS.read_text("utf-8"), flags=re.IGNORECASE)


def render_issue_report(report: IssueReport) -> str:
    return _render("issue.html", report, issue_charts(report))


def render_list_report(report: ListReport) -> str:
    return _render("overview.html", report, list_charts(report))


def _render(template: str, report: IssueReport | ListReport,
            charts: dict[str, dict[str, Any] | None]) -> str:
    drawn = {name: spec for name, spec in charts.items() if spec is not None}
    return _environment().get_template(template).render(
        report=report, metrics=METRICS, charts=drawn, chart_js=chart_js(),
        version=CHART_JS_VERSION)


# ---------------------------------------------------------------- chart specs


def chart(kind: str, labels: list[str], datasets: dict[str, list[Any]], *,
          percent: bool = False, dashed: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """A chart for the page's script (kind: bar, hbar, line, stacked), or None when every
    value is 0 (the page says so in words instead of drawing an empty frame)."""
    if not labels or not any(any(values) for values in datasets.values()):
        return None
    bars = len(labels) * max(1.0, len(datasets) / 1.5)
    height = min(720, 70 + int(26 * bars)) if kind == "hbar" else 280
    return {"kind": kind, "labels": labels, "percent": percent, "height": height, "datasets": [
        {"label": name, "data": values, "dashed": name in dashed,
         "color": COLOURS.get(name, PALETTE[index % len(PALETTE)])}
        for index, (name, values) in enumerate(datasets.items())]}


def series_chart(series: Series, kind: str = "line") -> dict[str, Any] | None:
    labels = [label.replace("T", " ") + (":00" if series.unit == "hour" else "")
              for label in series.labels]
    return chart(kind, labels, series.datasets, dashed=("configured rate",))


def issue_charts(report: IssueReport) -> dict[str, dict[str, Any] | None]:
    funnel = {name: n for name, n in report.funnel.items() if n is not None}
    outcomes = {name.replace("_", " "): n for name, n in report.outcomes.items()
                if name != "in_progress"}
    links = report.links
    domains = report.domains
    return {
        "funnel": chart("hbar", list(funnel), {"messages": list(funnel.values())}),
        "outcomes": chart("hbar", list(outcomes), {"messages": list(outcomes.values())}),
        "sending": series_chart(report.sending),
        "engagement": series_chart(report.engagement),
        "unsubscribes": series_chart(report.unsubscribes, "bar"),
        "links": chart("hbar", [_short(link.url) for link in links],
                       {"unique": [link.unique for link in links],
                        "total": [link.total for link in links]}),
        "domains": chart("hbar", [d.domain for d in domains], {
            name: [getattr(d, name) for d in domains]
            for name in ("delivered", "bounced", "complained", "opened")}),
    }


def list_charts(report: ListReport) -> dict[str, dict[str, Any] | None]:
    issues = list(reversed(report.issues))  # oldest first, left to right
    names = [line.issue for line in issues]

    def rates(*keys: str) -> dict[str, list[float | None]]:
        return {key: [line.rates[key] for line in issues] for key in keys}

    weeks = report.weeks
    joined = {name.removeprefix("joined: "): values for name, values in weeks.datasets.items()
              if name.startswith("joined: ")}
    left = {name.removeprefix("left: "): values for name, values in weeks.datasets.items()
            if name.startswith("left: ")}
    return {
        "reach": chart("bar", names, rates("delivery", "open", "click"), percent=True),
        "risk": chart("bar", names, rates("bounce", "complaint", "unsubscribe"), percent=True),
        "subscribers": chart("line", weeks.labels,
                             {"subscribers": weeks.datasets.get("subscribers", [])}),
        "joins": chart("stacked", weeks.labels, joined),
        "leaves": chart("stacked", weeks.labels, left),
    }


def _short(url: str) -> str:
    text = url.removeprefix("https://").removeprefix("http://")
    return text if len(text) <= LABEL_LENGTH else text[:LABEL_LENGTH - 1] + "…"

