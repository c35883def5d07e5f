"""Real scheduler processes: two at once send a due issue once; a killed one is taken over."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

from sqlalchemy import update

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import render_issue
from newsletter.config import load_settings
from newsletter.sending.engine import content_hash
from newsletter.store import Store
from newsletter.store.ledger import Ledger
from newsletter.store.schedules import Lease, Schedules
from tests.fakeses import fetch, spawn
from tests.test_crash import aws_env, ledger_emails, make_list, received

SLUG = "2025-05-twinning-and-training"
SECRET = "scheduler-process-secret-0123456789"


def due_soon(workspace, database_url, count, seconds=1.0):
    settings = load_settings(workspace / "newsletter.toml", env={})
    rendered = render_issue(load_issue(find_issue(settings, SLUG), settings), settings)
    with Store.open(database_url) as store:
        make_list(store, workspace, count)
        Schedules(store).put(SLUG, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds),
                             "UTC", content_hash(rendered))


def scheduler(workspace, env):
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(workspace / "newsletter.toml"),
         "scheduler", "--interval", "0.5"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)


def environment(database_url, url):
    return {**os.environ, **aws_env(url), "NEWSLETTER_SECRET_KEY": SECRET,
            "NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_TRANSPORT": "ses"}


def wait_until(condition, timeout=120.0, process=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the scheduler exited: {process.stderr.read().decode()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def stop(process):
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=60)
    return process.returncode, errors.decode()


def expire_lease(database_url):
    """A dead runner's lease would hold the successor off for up to 90 s: expire it now rather
    than make the test wait (the expiry itself is tested in test_scheduling)."""
    with Store.open(database_url) as store, store.writer.begin() as connection:
        connection.execute(update(Lease).values(
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))


def test_two_schedulers_one_due_issue_everyone_once(workspace, database_url):
    count = 300
    due_soon(workspace, database_url, count)
    with spawn("--latency", "0.005", "--max-send-rate", "1000") as url:
        env = environment(database_url, url)
        runners = [scheduler(workspace, env) for _ in range(2)]
        wait_until(lambda: fetch(url, "/_fake/stats.json")["accepted"] >= count)
        time.sleep(1.0)  # give a duplicate, if any, the time to arrive
        results = [stop(process) for process in runners]
        arrived = received(url)
    assert [code for code, _ in results] == [0, 0], results
    assert len(arrived) == count and max(arrived.values()) == 1
    logs = "".join(errors for _, errors in results)
    assert "holds the lease" in logs  # the second runner saw the first and stood by
    with Store.open(database_url) as store:
        assert Schedules(store).get(SLUG).state == "sent"


def test_a_killed_scheduler_is_taken_over_and_the_send_completes(workspace, database_url):
    count = 2000
    due_soon(workspace, database_url, count)
    with spawn("--latency", "0.01", "--max-send-rate", "400") as url:
        env = environment(database_url, url)
        first = scheduler(workspace, env)
        wait_until(lambda: fetch(url, "/_fake/stats.json")["accepted"] >= 200, process=first)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        first.stderr.close()
        expire_lease(database_url)
        second = scheduler(workspace, env)
        with Store.open(database_url) as store:
            wait_until(lambda: Schedules(store).get(SLUG).state == "sent")
        code, errors = stop(second)
        arrived = received(url)
    assert code == 0, errors
    with Store.open(database_url) as store:
        counts = Ledger(store).counts(SLUG)
        unknown = ledger_emails(store, "unknown", SLUG)
    everyone = {f"reader{n}@example.org" for n in range(count)}
    assert max(arrived.values()) == 1, "someone got the issue twice"
    assert everyone - set(arrived) <= unknown
    assert counts["sent"] + counts["unknown"] == count and counts["queued"] == 0
