"""`newsletter report`: every figure of an issue's report and of the overview, on SQLite and
PostgreSQL, from real SES payloads applied through the library's ingest path (tests/reports)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from newsletter.cli import main
from newsletter.config import Settings
from newsletter.reports.figures import TRACKING_ADVICE, issue_report
from newsletter.store import Status, Store, Subscriber
from tests.reports.scenario import (
    FAILURE,
    ISSUE,
    LINK_A,
    LINK_B,
    NO_ANSWER,
    build,
)

SECOND = "2025-05-twinning-and-training"


@pytest.fixture
def store(database_url: str):
    with Store.open(database_url) as opened:
        yield opened


@pytest.fixture
def run(workspace: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    """The CLI on the workspace's configuration and the test's database."""
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "report-test-secret-0123456789")
    monkeypatch.chdir(workspace)

    def invoke(*args: str):
        return CliRunner().invoke(main, ["--config", str(workspace / "newsletter.toml"), *args])
    return invoke


def figures(run, *args: str) -> dict:
    result = run("report", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_figure_of_an_issue(store: Store, settings: Settings, run) -> None:
    scenario = build(store, settings)
    report = figures(run, ISSUE)

    assert report["issue"] == ISSUE and report["subject"] == "ASIT highlights: April 2025"
    assert report["planned_at"] == "2025-04-15T09:30:00+00:00"
    assert (report["first_sent"], report["last_sent"]) == ("2025-04-15T09:30:10+00:00",
                                                          "2025-04-15T09:33:10+00:00")
    assert report["funnel"] == {"planned": 13, "sent": 10, "delivered": 7, "opened": 4,
                                "clicked": 3}
    assert report["outcomes"] == {"failed": 1, "skipped": 1, "unknown": 1, "in_progress": 0,
                                  "bounced": 2, "soft_bounced": 1, "complained": 1,
                                  "rejected": 0, "delayed": 0, "unsubscribed": 1}
    assert report["rates"] == pytest.approx({
        "delivery": 7 / 10, "bounce": 2 / 10, "soft_bounce": 1 / 10, "complaint": 1 / 10,
        "open": 4 / 7, "click": 3 / 7, "unsubscribe": 1 / 7})
    bounce, complaint = report["verdicts"]
    assert (bounce["metric"], bounce["count"], bounce["sent"], bounce["level"],
            bounce["threshold"]) == ("bounce", 2, 10, "danger", "SES pause")
    assert (complaint["metric"], complaint["count"], complaint["level"],
            complaint["threshold"]) == ("complaint", 1, "danger", "SES pause")
    assert complaint["message"] == ("complaint rate 10% (1 of 10 messages): at or over 0.5%, "
                                    "Amazon SES may pause the account's sending")
    assert report["tracking"] is True and report["notes"] == []

    assert report["sending"] == {"unit": "minute", "labels": [
        "2025-04-15T09:30", "2025-04-15T09:31", "2025-04-15T09:32", "2025-04-15T09:33"],
        "datasets": {"sent": [3, 3, 3, 1]}}
    assert report["engagement"] == {"unit": "hour", "labels": [
        "2025-04-15T09", "2025-04-15T10", "2025-04-15T11", "2025-04-15T12", "2025-04-15T13"],
        "datasets": {"delivered": [7, 0, 0, 0, 0], "opened": [0, 2, 1, 1, 1],
                     "clicked": [0, 2, 0, 2, 1]}}
    left = store.get(scenario.subscriber_ids["o3@example.org"])
    assert report["unsubscribes"] == {"unit": "day", "datasets": {"unsubscribed": [1]},
                                      "labels": [f"{left.status_changed_at:%Y-%m-%d}"]}

    assert report["links"] == [{"url": LINK_A, "unique": 2, "total": 3},
                               {"url": LINK_B, "unique": 2, "total": 2}]
    assert report["domains"] == [
        {"domain": "gmail.com", "sent": 4, "delivered": 3, "bounced": 1, "complained": 1,
         "opened": 2},
        {"domain": "example.org", "sent": 3, "delivered": 2, "bounced": 0, "complained": 0,
         "opened": 1},
        {"domain": "outlook.com", "sent": 2, "delivered": 1, "bounced": 1, "complained": 0,
         "opened": 1},
        {"domain": "example.gr", "sent": 1, "delivered": 1, "bounced": 0, "complained": 0,
         "opened": 0}]
    assert report["errors"] == [{"error": FAILURE, "count": 1}]
    assert report["unknown"]["count"] == 1
    assert report["unknown"]["reasons"] == [{"reason": NO_ANSWER, "count": 1}]
    assert f"newsletter send {ISSUE} --retry-unknown" in report["unknown"]["advice"]


def test_the_configured_rate_is_drawn_beside_the_measured_one(store: Store,
                                                              settings: Settings) -> None:
    build(store, settings)
    report = issue_report(store, ISSUE, rate=14)
    assert report is not None
    assert report.sending.datasets == {"sent": [3, 3, 3, 1], "configured rate": [840] * 4}


def test_the_page_is_written_and_the_danger_said(store: Store, settings: Settings, run,
                                                 workspace: Path) -> None:
    build(store, settings)
    result = run("report", ISSUE)
    assert result.exit_code == 0, result.output
    page = workspace / "out" / ISSUE / "report.html"
    assert f"wrote {Path('out') / ISSUE / 'report.html'}" in result.output
    assert "danger: complaint rate 10% (1 of 10 messages)" in result.output
    html = page.read_text("utf-8")
    assert "default-src 'none'" in html and "Chart.js v4.6.1" in html
    assert LINK_A in html and "gmail.com" in html and FAILURE in html
    other = workspace / "elsewhere" / "april.html"
    assert run("report", ISSUE, "--out", str(other)).exit_code == 0 and other.exists()


def test_report_help_loads_no_library_beyond_click(tmp_path: Path) -> None:
    from tests.test_cli_imports import NOT_FOR_HELP, run_newsletter

    output, loaded = run_newsletter(tmp_path, "report", "--help")
    assert "self-contained HTML page" in output
    assert not loaded & NOT_FOR_HELP, f"loaded {sorted(loaded & NOT_FOR_HELP)}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_issue_never_sent_is_a_clear_error(store: Store, run) -> None:
    for name in (ISSUE, "no-such-issue"):
        result = run("report", name)
        assert result.exit_code == 1
        assert f"{name} has not been sent, so there is nothing to report yet" in result.output
        assert "Traceback" not in result.output


def test_without_tracking_the_report_says_how_to_turn_it_on(store: Store, settings: Settings,
                                                           run, workspace: Path) -> None:
    build(store, settings)
    with store.writer.begin() as connection:  # the same send, as if tracking were off
        connection.exec_driver_sql("DELETE FROM events WHERE type IN ('opened', 'clicked')")
    report = figures(run, ISSUE)
    assert report["tracking"] is False and report["notes"] == [TRACKING_ADVICE]
    assert report["funnel"]["opened"] is None and report["funnel"]["clicked"] is None
    assert report["rates"]["open"] is None and report["links"] == []
    assert list(report["engagement"]["datasets"]) == ["delivered"]
    assert "newsletter ses setup --tracking" in TRACKING_ADVICE
    assert run("report", ISSUE).exit_code == 0
    html = (workspace / "out" / ISSUE / "report.html").read_text("utf-8")
    assert "newsletter ses setup --tracking" in html and 'id="chart-links"' not in html


def test_every_issue_side_by_side_and_the_list_over_time(store: Store, settings: Settings,
                                                        run) -> None:
    build(store, settings)
    _second_issue(store, settings)
    imported = [store.add(f"i{n}@example.net", status=Status.ACTIVE, source="import:a.csv")
                for n in range(3)]
    store.add("web@example.net", status=Status.ACTIVE, source="web")
    store.add("waiting@example.net", source="web")  # pending: not on the list yet
    store.forget("i2@example.net")
    three_weeks_ago = dt.datetime.now(dt.UTC) - dt.timedelta(weeks=3)
    with store.writer.begin() as connection:  # the first imported reader joined earlier
        connection.execute(update(Subscriber).where(Subscriber.id == imported[0].id).values(
            created_at=three_weeks_ago, confirmed_at=three_weeks_ago))

    report = figures(run)
    assert [line["issue"] for line in report["issues"]] == [SECOND, ISSUE]  # newest first
    second, first = report["issues"]
    assert (second["planned"], second["sent"]) == (2, 2)
    assert second["rates"] == pytest.approx({
        "delivery": 1.0, "bounce": 0.0, "soft_bounce": 0.0, "complaint": 0.0, "open": 0.5,
        "click": 0.0, "unsubscribe": 0.0})
    assert [v["level"] for v in second["verdicts"]] == ["ok", "ok"]
    assert first["rates"] == pytest.approx({
        "delivery": 0.7, "bounce": 0.2, "soft_bounce": 0.1, "complaint": 0.1, "open": 4 / 7,
        "click": 3 / 7, "unsubscribe": 1 / 7})
    assert report["subscribers"] == {"active": 13, "bounced": 2, "complained": 1,
                                     "pending": 1, "unsubscribed": 2}

    weeks = report["weeks"]
    assert len(weeks["labels"]) == 4 and weeks["unit"] == "week"
    monday = dt.date.fromisoformat(weeks["labels"][0])
    assert monday.weekday() == 0 and weeks["labels"][-1] == str(
        dt.date.today() - dt.timedelta(days=dt.date.today().weekday()))
    data = weeks["datasets"]
    assert data["joined: import"] == [1, 0, 0, 1]
    assert data["joined: sign-up"] == [0, 0, 0, 1]
    assert data["joined: added"] == [0, 0, 0, 15]  # the scenario's 13 and the second's 2
    assert data["left: unsubscribed"] == [0, 0, 0, 2]
    assert data["left: bounced"] == [0, 0, 0, 2]
    assert data["left: complained"] == [0, 0, 0, 1]
    assert data["left: erased"] == [0, 0, 0, 1]
    assert data["subscribers"] == [1, 1, 1, 13]  # 18 joined, 5 left; the erased one in neither


def _second_issue(store: Store, settings: Settings) -> None:
    """SECOND sent to two new readers (its audience): both delivered, one opened."""
    from newsletter.feedback.events import ingest
    from newsletter.store.ledger import Ledger, Outcome
    from tests.reports.scenario import PLANNED_AT, _payload

    for email in ("n1@example.com", "n2@example.com"):
        store.add(email, status=Status.ACTIVE, source="cli", tags=["second"])
    ledger = Ledger(store)
    ledger.plan(SECOND, "Twinning and training", "1" * 64, audience=("second",))
    sender = ledger.register_sender()
    claims, _ = ledger.claim(SECOND, sender, 100)
    ids = {c.email: f"0102018f-second-{c.delivery_id}" for c in claims}
    ledger.record([Outcome(c.delivery_id, "sent", message_id=ids[c.email], attempts=1)
                   for c in claims])
    ledger.unregister_sender(sender)
    later = PLANNED_AT + dt.timedelta(days=30)
    documents = [_payload(email, ids[email], "event/delivery", later, None) for email in ids]
    documents.append(_payload("n1@example.com", ids["n1@example.com"], "event/open",
                              later + dt.timedelta(hours=1), None))
    tally = ingest("\n".join(json.dumps(d) for d in documents), settings, store)
    assert tally.applied == 3, str(tally)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_report_reads_events_and_deliveries_through_their_indexes(
        store: Store, settings: Settings) -> None:
    """On a database that never ran ANALYZE (no newsletter's does), SQLite's plan for every
    query of the report searches the events and the deliveries by index, never scans them:
    what keeps a report on millions of events in seconds (bench/report.py measures it)."""
    from sqlalchemy import event

    build(store, settings)
    statements: list[tuple[str, object]] = []

    def capture(_connection, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        assert issue_report(store, ISSUE) is not None
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    plans = []
    with store.engine.connect() as connection:
        for statement, parameters in statements:
            cursor = connection.connection.driver_connection.execute(
                "EXPLAIN QUERY PLAN " + statement, parameters)
            plans.append(" / ".join(row[-1] for row in cursor))
    touching = [plan for plan in plans if " events " in plan + " " or " deliveries " in plan]
    assert len(touching) >= 8, plans
    for plan in touching:
        assert "SCAN events" not in plan and "SCAN deliveries" not in plan, plan
    assert any("COVERING INDEX ix_events_timeline" in plan for plan in plans)
    assert any("COVERING INDEX ix_events_report" in plan for plan in plans)
    assert any("COVERING INDEX ix_deliveries_report" in plan for plan in plans)
