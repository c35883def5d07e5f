"""Alarms: thresholds and verdicts, `send` and `status` warnings, and the scheduler's hold on the
next issue after a complaint rate at SES's pause threshold (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.authoring.content import find_issue
from newsletter.cli import main
from newsletter.reports.alarms import Alarm, hold_reason, last_issue_alarm
from newsletter.reports.thresholds import BOUNCE, COMPLAINT, judge, percent
from newsletter.sending.scheduling import Runner, schedule_issue
from newsletter.store import Store
from newsletter.store.schedules import Schedules
from tests.helpers import Recording
from tests.reports.scenario import ISSUE, build

NEXT = "2025-05-twinning-and-training"
SECRET = "alarm-test-secret-0123456789"


@pytest.mark.parametrize(("metric", "count", "sent", "level", "threshold"), [
    (BOUNCE, 0, 100, "ok", None),
    (BOUNCE, 499, 10_000, "ok", None),
    (BOUNCE, 500, 10_000, "warning", "SES review"),
    (BOUNCE, 999, 10_000, "warning", "SES review"),
    (BOUNCE, 1000, 10_000, "danger", "SES pause"),
    (COMPLAINT, 9, 10_000, "ok", None),
    (COMPLAINT, 10, 10_000, "warning", "SES review"),
    (COMPLAINT, 30, 10_000, "warning", "Gmail limit"),
    (COMPLAINT, 49, 10_000, "warning", "Gmail limit"),
    (COMPLAINT, 50, 10_000, "danger", "SES pause"),
    (COMPLAINT, 0, 0, "ok", None),
])
def test_verdicts_at_each_threshold(metric, count, sent, level, threshold):
    verdict = judge(metric, count, sent)
    assert verdict.level == level
    assert (verdict.crossed.name if verdict.crossed else None) == threshold
    assert verdict.pauses is (threshold == "SES pause")


def test_verdicts_say_it_plainly():
    assert judge(COMPLAINT, 3, 1000).message == (
        "complaint rate 0.3% (3 of 1000 messages): at or over 0.3%, above Gmail's limit for "
        "bulk senders, which may reject or junk the mail")
    assert judge(BOUNCE, 1, 1000).message == (
        "bounce rate 0.1% (1 of 1000 messages): fine, below the 5% at which Amazon SES places "
        "the account under review")
    assert judge(BOUNCE, 0, 0).message == "bounce rate: nothing sent yet"
    assert [percent(r) for r in (0.001, 0.05, 0.0525, 1 / 3)] == ["0.1%", "5%", "5.25%",
                                                                  "33.33%"]


def test_only_a_complaint_rate_at_the_pause_threshold_holds():
    gmail = Alarm(ISSUE, (judge(COMPLAINT, 3, 1000),))
    bounces = Alarm(ISSUE, (judge(BOUNCE, 200, 1000),))
    pause = Alarm(ISSUE, (judge(COMPLAINT, 5, 1000),))
    assert not gmail.holds and not bounces.holds and pause.holds
    assert hold_reason(gmail, NEXT) == "" and hold_reason(None, NEXT) == ""
    assert f"newsletter schedule {NEXT} --confirm-risk" in hold_reason(pause, NEXT)


# ---------------------------------------------------------------- with a database


@pytest.fixture
def settings(workspace_settings, database_url):
    return workspace_settings.model_copy(update={"secret_key": SECRET,
                                                 "database_url": database_url})


@pytest.fixture
def store(settings):
    with Store.open(settings.database_url) as opened:
        yield opened


@pytest.fixture
def run(settings, workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    monkeypatch.chdir(workspace)

    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(main, ["--config", str(workspace / "newsletter.toml"), *args],
                                  input=input)
    return invoke


def test_the_last_issue_s_alarm(store, settings):
    assert last_issue_alarm(store) is None  # nothing sent
    build(store, settings)  # 2 hard bounces and 1 complaint in 10 messages
    alarm = last_issue_alarm(store)
    assert alarm is not None and alarm.issue == ISSUE and alarm.holds
    assert [(v.metric.key, v.level) for v in alarm.verdicts] == [("bounce", "danger"),
                                                                 ("complaint", "danger")]
    assert last_issue_alarm(store, exclude=ISSUE) is None


def test_send_and_status_warn_of_the_last_issue(store, settings, run, workspace):
    build(store, settings)
    sent = run("send", NEXT, "--yes")
    assert sent.exit_code == 0, sent.output
    assert (f"warning: the last issue, {ISSUE}: bounce rate 20% (2 of 10 messages): at or over "
            "10%, Amazon SES may pause the account's sending") in sent.output
    assert f"warning: the last issue, {ISSUE}: complaint rate 10%" in sent.output
    assert len(list((workspace / "outbox" / NEXT).glob("*.eml"))) == 8  # a warning, no stop

    status = run("status", NEXT)
    assert status.exit_code == 0
    assert f"warning: the last issue, {NEXT}" not in status.output  # its own rates are fine
    assert f"warning: the last issue, {ISSUE}" not in status.output  # no longer the last one
    old = json.loads(run("status", ISSUE, "--json").output)
    assert old["alarms"] == []


def test_status_warns_while_the_issue_is_the_last(store, settings, run):
    build(store, settings)
    status = run("status", ISSUE)
    assert f"warning: the last issue, {ISSUE}: complaint rate 10%" in status.output
    report = json.loads(run("status", ISSUE, "--json").output)
    assert [(a["issue"], a["metric"], a["level"]) for a in report["alarms"]] == [
        (ISSUE, "bounce", "danger"), (ISSUE, "complaint", "danger")]


def test_the_scheduler_holds_the_next_issue_until_the_risk_is_confirmed(store, settings, run):
    build(store, settings)
    row = schedule_issue(settings, store, find_issue(settings, NEXT),
                         "2025-10-06 09:00 Europe/Sofia",
                         now=dt.datetime(2025, 10, 1, tzinfo=dt.UTC))
    transport = Recording()
    runner = Runner(settings, store, lambda: transport, "runner-a", threading.Event(),
                    lambda: row.send_at)
    report = runner.run_pass()
    assert report.held == [NEXT] and transport.sent == []
    held = Schedules(store).get(NEXT)
    assert held.state == "held"
    assert held.note.startswith(f"the last issue, {ISSUE}, has a complaint rate 10%")
    assert f"`newsletter schedule {NEXT} --confirm-risk`" in held.note
    assert runner.run_pass().lines == ["nothing due"]  # held stays held

    confirmed = run("schedule", NEXT, "--confirm-risk")
    assert confirmed.exit_code == 0, confirmed.output
    assert "risk confirmed" in confirmed.output
    assert Schedules(store).get(NEXT).risk_confirmed_at is not None
    assert runner.run_pass().sent == [NEXT] and len(transport.sent) == 8


def test_a_schedule_confirmed_in_advance_is_not_held(store, settings, run):
    build(store, settings)
    result = run("schedule", NEXT, "--at", "2099-10-06 09:00 Europe/Sofia", "--confirm-risk")
    assert result.exit_code == 0, result.output
    row = Schedules(store).get(NEXT)
    assert row.state == "scheduled" and row.risk_confirmed_at is not None
    runner = Runner(settings, store, Recording, "runner-a", threading.Event(),
                    lambda: row.send_at)
    assert runner.run_pass().sent == [NEXT]


def test_rescheduling_forgets_a_confirmation(store, settings):
    build(store, settings)
    folder = find_issue(settings, NEXT)
    now = dt.datetime(2025, 10, 1, tzinfo=dt.UTC)
    schedule_issue(settings, store, folder, "2025-10-06 09:00 Europe/Sofia", now=now,
                   confirm_risk=True)
    assert Schedules(store).get(NEXT).risk_confirmed_at is not None
    schedule_issue(settings, store, folder, "2025-10-07 09:00 Europe/Sofia", now=now)
    assert Schedules(store).get(NEXT).risk_confirmed_at is None
