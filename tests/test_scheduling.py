"""The scheduler's decisions, with a clock the test controls (real databases, no sleeping)."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import render_issue
from newsletter.errors import NewsletterError
from newsletter.sending.engine import content_hash
from newsletter.sending.scheduling import Runner, local, schedule_issue
from newsletter.store import Status, Store
from newsletter.store.ledger import Ledger
from newsletter.store.schedules import Schedules
from tests.helpers import Recording

SLUG = "2025-05-twinning-and-training"
SECRET = "scheduler-test-secret-0123456789"
UTC = dt.UTC


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def settings(workspace_settings, database_url):
    return workspace_settings.model_copy(update={"secret_key": SECRET,
                                                 "database_url": database_url})


@pytest.fixture
def store(settings):
    with Store.open(settings.database_url) as opened:
        for n in range(5):
            opened.add(f"reader{n}@example.org", status=Status.ACTIVE)
        yield opened


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def put(settings, store, when: str, now: str = "2025-01-01T00:00+00:00"):
    return schedule_issue(settings, store, find_issue(settings, SLUG), when, now=at(now))


def runner(settings, store, clock, transport=None, holder="runner-a", stop=None):
    transport = transport or Recording()
    return Runner(settings, store, lambda: transport, holder, stop or threading.Event(),
                  clock), transport


@pytest.mark.parametrize(("when", "utc"), [
    ("2025-10-25 09:00 Europe/Sofia", "2025-10-25T06:00+00:00"),  # summer time, +03:00
    ("2025-10-27 09:00 Europe/Sofia", "2025-10-27T07:00+00:00"),  # after the change, +02:00
    ("2025-11-01 09:00 America/New_York", "2025-11-01T13:00+00:00"),
    ("2025-11-03 09:00 America/New_York", "2025-11-03T14:00+00:00"),
    ("2025-03-31 09:00 Europe/Sofia", "2025-03-31T06:00+00:00"),  # after spring forward
    ("2025-10-06T09:00+03:00", "2025-10-06T06:00+00:00"),
])
def test_wall_clock_times_across_dst_in_two_zones(settings, store, when, utc):
    row = put(settings, store, when)
    assert row.send_at == at(utc) and row.state == "scheduled"
    assert local(row).strftime("%H:%M") == "09:00"


@pytest.mark.parametrize("when", ["2025-03-30 03:30 Europe/Sofia",
                                  "2025-03-09 02:30 America/New_York"])
def test_a_time_the_clocks_skip_is_refused(settings, store, when):
    with pytest.raises(NewsletterError, match="does not exist"):
        put(settings, store, when)


def test_past_times_and_missing_times_are_refused(settings, store):
    with pytest.raises(NewsletterError, match="has passed"):
        put(settings, store, "2024-06-01 09:00 Europe/Sofia")
    with pytest.raises(NewsletterError, match="has no send_at"):
        schedule_issue(settings, store, find_issue(settings, SLUG), None, now=at(
            "2025-01-01T00:00+00:00"))


def test_front_matter_send_at_is_used(settings, store, workspace):
    issue = workspace / "issues" / SLUG / "issue.md"
    issue.write_text(issue.read_text().replace("date: 2025-05-20",
                                               "date: 2025-05-20\nsend_at: 2025-05-21 10:00 "
                                               "Europe/Brussels"))
    row = schedule_issue(settings, store, find_issue(settings, SLUG), None,
                         now=at("2025-05-01T00:00+00:00"))
    assert row.send_at == at("2025-05-21T08:00+00:00") and row.zone == "Europe/Brussels"


def test_not_yet_due_then_due(settings, store):
    put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    clock = Clock(at("2025-10-06T05:59+00:00"))
    scheduler, transport = runner(settings, store, clock)
    assert scheduler.run_pass().lines == ["nothing due"] and transport.sent == []
    clock.now = at("2025-10-06T06:00+00:00")
    report = scheduler.run_pass()
    assert report.sent == [SLUG] and len(transport.sent) == 5
    assert Schedules(store).get(SLUG).state == "sent"
    assert scheduler.run_pass().lines == ["nothing due"] and len(transport.sent) == 5


@pytest.mark.parametrize(("late", "sent"), [(dt.timedelta(hours=23), True),
                                            (dt.timedelta(hours=25), False)])
def test_overdue_is_sent_only_within_the_grace_period(settings, store, late, sent):
    row = put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    scheduler, transport = runner(settings, store, Clock(row.send_at + late))
    report = scheduler.run_pass()
    assert (report.sent == [SLUG]) is sent and (report.missed == [SLUG]) is not sent
    assert len(transport.sent) == (5 if sent else 0)
    if not sent:
        assert Schedules(store).get(SLUG).state == "missed"
        assert "beyond the 24.0 h grace period" in Schedules(store).get(SLUG).note


def test_edited_after_scheduling_is_held_until_rescheduled(settings, store, workspace):
    row = put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    issue = workspace / "issues" / SLUG / "issue.md"
    issue.write_text(issue.read_text().replace("Stay informed", "Keep informed"))
    scheduler, transport = runner(settings, store, Clock(row.send_at))
    report = scheduler.run_pass()
    assert report.held == [SLUG] and transport.sent == []
    assert "edited after it was scheduled" in Schedules(store).get(SLUG).note
    assert scheduler.run_pass().lines == ["nothing due"]  # held stays held
    put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    assert scheduler.run_pass().sent == [SLUG] and len(transport.sent) == 5


def test_an_issue_failing_its_check_is_held(settings, store, workspace):
    issue = workspace / "issues" / SLUG / "issue.md"
    issue.write_text(issue.read_text() + "\n[the report](report.pdf)\n")
    with pytest.raises(NewsletterError, match="does not pass"):
        put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    rendered = render_issue(load_issue(find_issue(settings, SLUG), settings), settings)
    send_at = at("2025-10-06T06:00+00:00")
    Schedules(store).put(SLUG, send_at, "Europe/Sofia", content_hash(rendered))
    scheduler, transport = runner(settings, store, Clock(send_at))
    assert scheduler.run_pass().held == [SLUG] and transport.sent == []
    assert "fails `newsletter check`" in Schedules(store).get(SLUG).note


def test_an_attribute_nobody_has_is_refused_then_held(settings, store, workspace):
    issue = workspace / "issues" / SLUG / "issue.md"
    issue.write_text(issue.read_text() + "\nGreetings to {{organisation}}.\n")
    with pytest.raises(NewsletterError, match=r"\{\{organisation\}\} would be empty"):
        put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    reader = store.add("europol@example.org", status=Status.ACTIVE,
                       attributes={"organisation": "Europol"})
    row = put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    store.set_status(reader.id, Status.UNSUBSCRIBED, reason="left")  # the only one who had it
    scheduler, transport = runner(settings, store, Clock(row.send_at))
    assert scheduler.run_pass().held == [SLUG] and transport.sent == []
    assert "{{organisation}} would be empty for everyone" in Schedules(store).get(SLUG).note


def test_one_lease_one_runner_until_it_expires(settings, store):
    row = put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    clock = Clock(row.send_at - dt.timedelta(seconds=30))
    first, _ = runner(settings, store, clock, holder="runner-a")
    second, transport = runner(settings, store, clock, holder="runner-b")
    assert first.run_pass().lines == ["nothing due"]
    clock.now = row.send_at
    report = second.run_pass()
    assert report.lease_held_by == "runner-a" and transport.sent == []
    clock.now = row.send_at + dt.timedelta(seconds=91)  # runner-a went quiet: lease expired
    assert second.run_pass().sent == [SLUG] and len(transport.sent) == 5


def test_a_stop_request_leaves_the_rest_queued_and_the_next_pass_resumes(settings, store):
    row = put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    stop = threading.Event()

    def stop_after_two(envelope, call):
        if len(transport.sent) >= 2:
            stop.set()

    transport = Recording(fail=stop_after_two)
    scheduler, _ = runner(settings, store, Clock(row.send_at), transport, stop=stop)
    report = scheduler.run_pass()
    assert report.waiting == [SLUG] and Schedules(store).get(SLUG).state == "sending"
    sent_first = len(transport.sent)
    assert 2 <= sent_first < 5 and Ledger(store).counts(SLUG)["queued"] == 5 - sent_first
    again, _ = runner(settings, store, Clock(row.send_at + dt.timedelta(hours=30)), transport)
    assert again.run_pass().sent == [SLUG]  # interrupted sends resume even past the grace
    assert sorted(transport.recipients()) == [f"reader{n}@example.org" for n in range(5)]


def test_unschedule_and_listing(settings, store):
    put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    assert [r.issue for r in Schedules(store).all()] == [SLUG]
    assert Schedules(store).remove(SLUG) and Schedules(store).all() == []


def test_zone_names_round_trip(settings, store):
    row = put(settings, store, "2025-12-24 18:00 America/New_York")
    assert local(row) == dt.datetime(2025, 12, 24, 18, 0, tzinfo=ZoneInfo("America/New_York"))


def test_status_shows_the_schedule(settings, store, workspace, monkeypatch):
    from click.testing import CliRunner

    from newsletter.cli import main

    put(settings, store, "2025-10-06 09:00 Europe/Sofia")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(main, ["--config", str(workspace / "newsletter.toml"),
                                       "status", SLUG])
    assert "schedule: scheduled for 2025-10-06 09:00 EEST" in result.output
