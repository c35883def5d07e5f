"""Several sender processes on one issue (SQLite and PostgreSQL, fake SES in its own process):
one rate for all of them, every row to one of them, and a dead one's share to the others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from newsletter.authoring.content import find_issue
from newsletter.authoring.render import render_edition
from newsletter.config import load_settings
from newsletter.sending.engine import SendOptions, plan_send
from newsletter.sending.workers import work_once
from newsletter.store import Store
from newsletter.store.ledger import Ledger
from tests.fakeses import fetch, spawn
from tests.test_crash import SECRET, SLUG, aws_env, ledger_emails, make_list, received

CONCURRENCY = 8


def command(workspace, *arguments):
    return [sys.executable, "-m", "newsletter", "--config", str(workspace / "newsletter.toml"),
            *arguments]


def environment(database_url, url):
    return {**os.environ, **aws_env(url), "NEWSLETTER_SECRET_KEY": SECRET,
            "NEWSLETTER_DATABASE_URL": database_url}


def plan(workspace, database_url, count):
    settings = load_settings(workspace / "newsletter.toml", env={})
    edition = render_edition(find_issue(settings, SLUG), settings)
    with Store.open(database_url) as store:
        make_list(store, workspace, count)
        plan_send(edition, settings, Ledger(store))


def test_three_workers_one_killed_nobody_twice_nobody_lost(workspace, database_url):
    count, rate = 3000, 600
    plan(workspace, database_url, count)
    with spawn("--latency", "0.02", "--max-send-rate", "5000", "--seed", "11") as url:
        env = environment(database_url, url)
        workers = [subprocess.Popen(command(workspace, "worker", "--once", "--transport", "ses",
                                            "--rate", str(rate), "--concurrency",
                                            str(CONCURRENCY)),
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                   for _ in range(3)]
        deadline = time.monotonic() + 60
        while fetch(url, "/_fake/stats.json")["accepted"] < 600:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        for survivor in workers[1:]:
            _, errors = survivor.communicate(timeout=300)
            assert survivor.returncode == 0, errors.decode()
        workers[0].stderr.close()
        arrived = received(url)
        most_in_a_second = fetch(url, "/_fake/stats.json")["max_per_second"]
    everyone = {f"reader{n}@example.org" for n in range(count)}
    with Store.open(database_url) as store:
        counts = Ledger(store).counts(SLUG)
        unknown, sent = ledger_emails(store, "unknown"), ledger_emails(store, "sent")
    assert max(arrived.values()) == 1, "someone got the issue twice"
    assert everyone - set(arrived) <= unknown, "someone was skipped without a record"
    assert sent <= set(arrived) and sent | unknown == everyone
    assert counts["queued"] == counts["claimed"] == counts["sending"] == 0
    assert len(unknown) <= CONCURRENCY  # what the killed worker had in flight
    assert most_in_a_second <= rate  # one rate for the three of them


def test_send_with_workers_shares_the_send_and_the_rate(workspace, database_url):
    count, rate = 2400, 400
    with Store.open(database_url) as store:
        make_list(store, workspace, count)
    with spawn("--latency", "0.02", "--max-send-rate", "5000", "--seed", "12") as url:
        done = subprocess.run(command(workspace, "send", SLUG, "--yes", "--transport", "ses",
                                      "--workers", "3", "--rate", str(rate)),
                              env=environment(database_url, url), capture_output=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        arrived = received(url)
        most_in_a_second = fetch(url, "/_fake/stats.json")["max_per_second"]
    with Store.open(database_url) as store, store.engine.connect() as connection:
        counts = Ledger(store).counts(SLUG)
        senders = connection.exec_driver_sql(
            "SELECT COUNT(DISTINCT sender) FROM deliveries").scalar()
    assert len(arrived) == count and max(arrived.values()) == 1
    assert counts["sent"] == count and f"{count} sent" in done.stdout.decode()
    assert senders >= 2  # the helpers took shares (all three, unless one started very late)
    assert most_in_a_second <= rate


def test_a_worker_sends_only_the_content_that_was_planned(workspace, database_url):
    settings = load_settings(workspace / "newsletter.toml", env={
        "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_DATABASE_URL": database_url})
    with Store.open(database_url) as store:
        make_list(store, workspace, 5)
        ledger = Ledger(store)
        ledger.plan(SLUG, "An older version", "0" * 64)
        done = work_once(settings, store, SendOptions(concurrency=2), transport="outbox")
        assert done.reports == [] and done.skipped == [
            f"{SLUG}: the issue changed since its send was planned"]
        assert ledger.counts(SLUG)["queued"] == 5
