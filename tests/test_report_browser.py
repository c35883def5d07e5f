"""The report pages in headless Chromium, every request blocked: each chart is drawn (sized, not
blank, with data), nothing is fetched, the console stays clean, and at 1280 px and 375 px the
page never scrolls sideways. Screenshots are kept in $REPORT_SCREENSHOTS when set, else in the
test's tmp folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.reports.figures import issue_report, list_report
from newsletter.reports.html import render_issue_report, render_list_report
from newsletter.store import Store
from tests.reports.scenario import ISSUE, build

pytestmark = pytest.mark.browser
WIDTHS = (1280, 375)
ISSUE_CHARTS = ["funnel", "outcomes", "sending", "engagement", "unsubscribes", "links",
                "domains"]
LIST_CHARTS = ["reach", "risk", "subscribers", "joins", "leaves"]
# Per canvas: its size, the chart Chart.js made of it, and whether any pixel was painted.
DRAWN = """() => [...document.querySelectorAll('canvas')].map(canvas => {
  const chart = Chart.getChart(canvas);
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) { painted++; } }
  return {id: canvas.id, width: canvas.clientWidth, height: canvas.clientHeight,
          points: chart ? chart.data.datasets.reduce((n, set) =>
            n + set.data.filter(v => v).length, 0) : 0,
          painted: painted};
})"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("report")
    with Store.open(f"sqlite:///{folder / 'newsletter.db'}") as store:
        build(store, settings)
        issue = issue_report(store, ISSUE, rate=0.05)
        assert issue is not None
        overview = list_report(store)
    written = {"issue": folder / "issue.html", "list": folder / "list.html"}
    written["issue"].write_text(render_issue_report(issue), encoding="utf-8")
    written["list"].write_text(render_list_report(overview), encoding="utf-8")
    return written


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("REPORT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("page_name", "charts"), [("issue", ISSUE_CHARTS),
                                                   ("list", LIST_CHARTS)])
def test_every_chart_is_drawn_offline(browser, pages, screenshots, page_name, charts, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    requests: list[str] = []
    context.route("**/*", lambda route: _only_the_file(route, requests))
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"{message.type}: {message.text}")
            if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("request", lambda request: requests.append(request.url)
            if not request.url.startswith("file:") else None)
    try:
        page.goto(pages[page_name].as_uri())
        page.wait_for_function("() => typeof Chart !== 'undefined'")
        drawn = page.evaluate(DRAWN)
        assert [canvas["id"] for canvas in drawn] == [f"chart-{name}" for name in charts]
        for canvas in drawn:
            assert canvas["width"] > 100 and canvas["height"] > 100, canvas
            assert canvas["points"] > 0 and canvas["painted"] > 1000, canvas
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(screenshots / f"report-{page_name}-{width}.png"),
                        full_page=True)
        assert problems == [] and requests == []
    finally:
        context.close()


def _only_the_file(route, requests: list[str]) -> None:
    """Block every request but the page's own file."""
    if route.request.url.startswith("file:"):
        route.continue_()
    else:
        requests.append(route.request.url)
        route.abort()
