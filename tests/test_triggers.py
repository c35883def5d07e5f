"""Triggered issues: a welcome mail and a sequence step, sent by the scheduler's passes on real
SQLite and PostgreSQL, each to each subscriber exactly once.

The scheduler's clock is the real one plus an offset the test moves: subscribers' join times
and the ledger's send times are real, and "three days later" is an offset, not a sleep."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from newsletter.authoring.checks import check_issue
from newsletter.errors import NewsletterError
from newsletter.sending.scheduling import Runner, schedule_issue
from newsletter.sending.triggered import language_chooser
from newsletter.store import Status, Store
from newsletter.store.ledger import Ledger
from newsletter.store.reports import ReportQueries
from newsletter.store.triggers import Rule, Triggers
from newsletter.subscribers.imports import ImportOptions, import_csv
from tests.helpers import Recording, write_issue

SECRET = "trigger-test-secret-0123456789"
WELCOME = "2025-06-welcome"
STEP = "2025-06-our-publications"

WELCOME_TEXT = """
    ---
    subject: Welcome to the ASIT newsletter, {{first_name}}
    date: 2025-06-01
    trigger: welcome
    ---

    Thank you for joining us.

    ## What ASIT is

    ASIT works against trafficking in human beings, with police academies across Europe.
    """

STEP_TEXT = """
    ---
    subject: Our publications
    date: 2025-06-02
    trigger:
      after: welcome
      delay: 3 days
    ---

    Three days ago you joined us; here is what we have published.

    ## Publications

    The training handbook and the twinning report.
    """


class Clock:
    """The real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@pytest.fixture
def settings(workspace_settings, database_url):
    return workspace_settings.model_copy(update={"secret_key": SECRET,
                                                 "database_url": database_url})


@pytest.fixture
def store(settings, workspace):
    write_issue(workspace, WELCOME, WELCOME_TEXT)
    with Store.open(settings.database_url) as opened:
        for n in range(3):
            opened.add(f"early{n}@example.org", status=Status.ACTIVE)
        yield opened


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def transport():
    return Recording()


@pytest.fixture
def scheduler(settings, store, clock, transport):
    return Runner(settings, store, lambda: transport, "runner-a", threading.Event(), clock)


def test_the_welcome_goes_to_each_subscriber_who_joins_once(scheduler, store, transport):
    first = scheduler.run_pass()
    assert f"{WELCOME}: live: goes to each subscriber as they join from now on" in first.lines
    assert transport.sent == []  # those on the list before it went live get nothing

    store.add("new@example.org", name="Nova Reader", status=Status.ACTIVE)
    pending = store.add("pending@example.org", status=Status.PENDING)
    second = scheduler.run_pass()
    assert transport.recipients() == ["new@example.org"]
    assert second.sent == [WELCOME]
    assert b"Welcome to the ASIT newsletter, Nova" in transport.sent[0][1]

    store.confirm(pending.id)  # double opt-in: welcomed once confirmed
    scheduler.run_pass()
    scheduler.run_pass()
    assert transport.recipients() == ["new@example.org", "pending@example.org"]
    assert Ledger(store).counts(WELCOME)["sent"] == 2
    # A welcome mail is no one's "last issue": the bounce and complaint alarms skip it.
    assert ReportQueries(store).latest_issues() == []


def test_an_import_welcomes_only_when_asked(scheduler, store, transport, workspace):
    scheduler.run_pass()
    plain, welcomed = workspace / "plain.csv", workspace / "welcomed.csv"
    plain.write_text("email\nplain@example.org\n")
    welcomed.write_text("email,status\nwelcomed@example.org,\nearly0@example.org,\n"
                        "left@example.org,unsubscribed\n")
    import_csv(store, plain)
    report = import_csv(store, welcomed, ImportOptions(welcome=True))
    assert report.welcomed == 1  # not the one already on the list, not the one who left
    scheduler.run_pass()
    assert transport.recipients() == ["welcomed@example.org"]


def test_backfill_reaches_those_on_the_list_before(scheduler, store, transport, settings,
                                                   clock):
    scheduler.run_pass()
    triggers = Triggers(store)
    folder = settings.issues_dir / WELCOME
    added = triggers.backfill(WELCOME, Rule(), clock(),
                              version_for=language_chooser(settings, folder))
    assert added == 3
    assert triggers.backfill(WELCOME, Rule(), clock()) == 0  # nobody twice
    scheduler.run_pass()
    assert transport.recipients() == [f"early{n}@example.org" for n in range(3)]


def test_a_sequence_step_goes_out_after_its_delay_and_not_before(
        scheduler, store, transport, clock, workspace):
    write_issue(workspace, STEP, STEP_TEXT)
    scheduler.run_pass()  # both go live
    store.add("new@example.org", status=Status.ACTIVE)
    scheduler.run_pass()
    assert [r for r, _ in transport.sent] == ["new@example.org"]

    clock.offset = dt.timedelta(days=3) - dt.timedelta(minutes=1)
    scheduler.run_pass()
    assert len(transport.sent) == 1  # not yet
    clock.offset = dt.timedelta(days=3, minutes=1)
    report = scheduler.run_pass()
    assert STEP in report.sent
    assert [r for r, _ in transport.sent] == ["new@example.org", "new@example.org"]
    assert b"Our publications" in transport.sent[1][1]
    clock.offset = dt.timedelta(days=30)
    scheduler.run_pass()
    assert len(transport.sent) == 2


def test_a_subscriber_who_leaves_before_their_turn_is_skipped(scheduler, store, transport,
                                                             clock):
    scheduler.run_pass()
    leaving = store.add("leaving@example.org", status=Status.ACTIVE)
    triggers = Triggers(store)
    assert triggers.plan_due(triggers.get(WELCOME), Rule(), clock()) == 1  # due, queued
    store.set_status(leaving.id, Status.UNSUBSCRIBED, reason="unsubscribe link")
    scheduler.run_pass()
    assert transport.sent == []
    assert Ledger(store).counts(WELCOME)["skipped"] == 1


def test_an_edited_welcome_reaches_later_subscribers_in_its_new_version_and_is_held_if_broken(
        scheduler, store, transport, workspace, settings):
    scheduler.run_pass()
    store.add("first@example.org", status=Status.ACTIVE)
    scheduler.run_pass()
    issue = workspace / "issues" / WELCOME / "issue.md"
    issue.write_text(issue.read_text().replace("Thank you for joining us.",
                                               "Thank you for joining us, truly."))
    store.add("second@example.org", status=Status.ACTIVE)
    report = scheduler.run_pass()
    assert any("new version" in line for line in report.lines)
    assert b"truly" in transport.sent[-1][1] and b"truly" not in transport.sent[0][1]

    issue.write_text(issue.read_text() + "\n![](nowhere.png)\n")  # fails check: no such image
    store.add("third@example.org", status=Status.ACTIVE)
    held = scheduler.run_pass()
    assert WELCOME in held.held and len(transport.sent) == 2
    assert Triggers(store).get(WELCOME).note == "the edited version fails `newsletter check`"
    assert Ledger(store).counts(WELCOME)["queued"] == 1  # due, waiting

    issue.write_text(issue.read_text().replace("![](nowhere.png)", "A picture soon."))
    scheduler.run_pass()
    assert transport.recipients() == ["first@example.org", "second@example.org",
                                      "third@example.org"]
    versions = Ledger(store).versions(WELCOME)
    assert len(versions) == 3 and all(c == {"sent": 1} for c in versions.values())


def test_two_runners_at_once_send_each_welcome_once(settings, store, clock, workspace):
    """Two runners passing at the same instant (each believing it holds the lease, as after a
    lease expired mid-pass): the ledger alone keeps everyone to one message."""
    transports = [Recording(), Recording()]
    runners = [Runner(settings, store, lambda t=t: t, f"runner-{n}", threading.Event(), clock)
               for n, t in enumerate(transports)]
    runners[0].run_pass()
    for n in range(40):
        store.add(f"joined{n}@example.org", status=Status.ACTIVE)
    barrier = threading.Barrier(2)

    def pass_now(runner):
        runner.schedules.acquire = lambda *args: True  # both act, as if the lease had lapsed
        barrier.wait()
        runner.run_pass()

    threads = [threading.Thread(target=pass_now, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    sent = transports[0].recipients() + transports[1].recipients()
    assert sorted(sent) == sorted(f"joined{n}@example.org" for n in range(40))


def test_send_and_schedule_refuse_a_triggered_issue_and_proofs_go(settings, store, workspace):
    with pytest.raises(NewsletterError, match="triggered issue"):
        schedule_issue(settings, store, settings.issues_dir / WELCOME, "2030-01-01 09:00 UTC")
    env = {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_DATABASE_URL": settings.database_url,
           "PATH": "/usr/bin:/bin"}
    refused = newsletter(workspace, env, "send", WELCOME, "--yes")
    assert refused.returncode == 1
    assert "triggered issue (welcome (when a subscriber joins))" in refused.stderr
    proof = newsletter(workspace, env, "send", WELCOME, "--test-to", "editor@example.org")
    assert proof.returncode == 0, proof.stderr
    assert "proof (en) sent to editor@example.org" in proof.stdout


def newsletter(workspace: Path, env: dict[str, str], *arguments: str):
    return subprocess.run([sys.executable, "-m", "newsletter", "--config",
                           str(workspace / "newsletter.toml"), *arguments],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("trigger", "problem"), [
    ("trigger:\n  after: 2025-01-nothing\n  delay: 1 day", "no issue '2025-01-nothing'"),
    ("trigger:\n  after: welcome\n  delay: 1 day", "no issue has 'trigger: welcome'"),
    ("trigger:\n  after: 2025-06-step\n  delay: 1 day", "goes round in a circle"),
])
def test_check_reports_a_sequence_that_cannot_run(workspace, workspace_settings, trigger,
                                                  problem):
    for slug, follows in (("2025-06-step", "2025-06-other"), ("2025-06-other", None)):
        text = STEP_TEXT.replace("trigger:\n      after: welcome\n      delay: 3 days",
                                 trigger.replace("\n", "\n    ") if follows is None else
                                 f"trigger:\n      after: {follows}\n      delay: 2 days")
        write_issue(workspace, slug, text)
    findings = check_issue(workspace_settings.issues_dir / "2025-06-other", workspace_settings)
    errors = [str(f) for f in findings if f.severity == "error"]
    assert len(errors) == 1 and problem in errors[0], errors
    assert "issue.md:5: trigger.after:" in errors[0]


@pytest.mark.parametrize(("front_matter", "problem"), [
    ("trigger: weekly", "issue.md:4: trigger: expected 'welcome'"),
    ("trigger:\n  after: welcome\n  delay: soon", "trigger.delay: expected a duration"),
    ("trigger: welcome\nsend_at: 2030-01-01 09:00 UTC", "remove send_at or trigger"),
])
def test_a_broken_trigger_names_its_file_line_and_field(workspace, workspace_settings,
                                                        front_matter, problem):
    text = WELCOME_TEXT.replace("trigger: welcome", front_matter.replace("\n", "\n    "))
    folder = write_issue(workspace, "2025-06-broken", text)
    errors = [str(f) for f in check_issue(folder, workspace_settings) if f.severity == "error"]
    assert any(problem in error for error in errors), errors


def test_a_live_issue_whose_front_matter_breaks_is_held(scheduler, store, transport,
                                                        workspace):
    scheduler.run_pass()
    issue = workspace / "issues" / WELCOME / "issue.md"
    good = issue.read_text()
    issue.write_text(good.replace("subject: Welcome", "subject: [Welcome"))
    store.add("new@example.org", status=Status.ACTIVE)
    report = scheduler.run_pass()
    assert report.held == [WELCOME] and transport.sent == []
    assert "its front matter does not load" in " ".join(report.lines)
    issue.write_text(good)
    scheduler.run_pass()
    assert transport.recipients() == ["new@example.org"]


def test_the_triggers_commands(workspace, tmp_path):
    env = {"NEWSLETTER_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin",
           "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox")}
    write_issue(workspace, WELCOME, WELCOME_TEXT)
    write_issue(workspace, STEP, STEP_TEXT)
    assert "not live yet" in newsletter(workspace, env, "triggers").stdout
    before = newsletter(workspace, env, "subscribers", "add", "before@example.org",
                        "--confirmed")
    assert before.returncode == 0, before.stderr
    once = newsletter(workspace, env, "scheduler", "--once")
    assert once.returncode == 0, once.stderr
    newsletter(workspace, env, "subscribers", "add", "after@example.org", "--confirmed")

    listed = newsletter(workspace, env, "triggers").stdout
    assert f"{WELCOME}: welcome (when a subscriber joins)" in listed
    assert f"{STEP}: 3 days after welcome" in listed
    assert "due now: 1" in listed  # after@, not before@

    assert newsletter(workspace, env, "triggers", "pause", WELCOME).returncode == 0
    newsletter(workspace, env, "scheduler", "--once")
    assert not (tmp_path / "outbox" / WELCOME).exists()
    assert newsletter(workspace, env, "triggers", "resume", WELCOME).returncode == 0
    backfilled = newsletter(workspace, env, "triggers", "backfill", WELCOME, "--yes")
    assert "2 queued" in backfilled.stdout, backfilled.stderr  # before@ and after@
    newsletter(workspace, env, "scheduler", "--once")
    assert len(list((tmp_path / "outbox" / WELCOME).glob("*.eml"))) == 2

    status = newsletter(workspace, env, "status", WELCOME).stdout
    assert "triggered, live" in status and "by version: " in status and "(2 sent)" in status
    listed = newsletter(workspace, env, "triggers").stdout
    assert ": 2 sent" in listed and "due now: 0" in listed
    missing = newsletter(workspace, env, "triggers", "pause", "2025-04-asit-highlights")
    assert missing.returncode == 1 and "has no trigger" in missing.stderr
