"""Triggered issues sent by real `newsletter scheduler` processes to a fake SES over HTTP: two
schedulers at once welcome each subscriber once; a scheduler killed with SIGKILL mid-send is
taken over and nobody gets the welcome twice (SQLite and PostgreSQL)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from newsletter.store import Store
from newsletter.store.ledger import Ledger
from newsletter.subscribers.imports import ImportOptions, import_csv
from tests.fakeses import fetch, spawn
from tests.helpers import write_issue
from tests.test_crash import ledger_emails, received
from tests.test_scheduler_processes import (
    environment,
    expire_lease,
    scheduler,
    stop,
    wait_until,
)
from tests.test_triggers import WELCOME, WELCOME_TEXT


def go_live(workspace: Path, env: dict[str, str]) -> None:
    """The first pass makes the welcome issue live (and sends nobody anything)."""
    once = subprocess.run([sys.executable, "-m", "newsletter", "--config",
                           str(workspace / "newsletter.toml"), "scheduler", "--once"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert once.returncode == 0, once.stderr
    assert f"{WELCOME}: live" in once.stdout + once.stderr


def join(workspace: Path, database_url: str, count: int) -> set[str]:
    """``count`` new subscribers, imported with --welcome."""
    csv = workspace / "joined.csv"
    csv.write_text("email\n" + "".join(f"joined{n}@example.org\n" for n in range(count)))
    with Store.open(database_url) as store:
        assert import_csv(store, csv, ImportOptions(welcome=True)).welcomed == count
    return {f"joined{n}@example.org" for n in range(count)}


def settled(counts: dict[str, int]) -> int:
    return counts["sent"] + counts["unknown"]


def test_two_schedulers_welcome_everyone_once(workspace, database_url):
    write_issue(workspace, WELCOME, WELCOME_TEXT)
    with spawn("--latency", "0.005", "--max-send-rate", "1000") as url:
        env = environment(database_url, url)
        go_live(workspace, env)
        everyone = join(workspace, database_url, 300)
        runners = [scheduler(workspace, env) for _ in range(2)]
        wait_until(lambda: fetch(url, "/_fake/stats.json")["accepted"] >= len(everyone))
        results = [stop(process) for process in runners]
        arrived = received(url)
    assert [code for code, _ in results] == [0, 0], results
    assert set(arrived) == everyone and max(arrived.values()) == 1


def test_a_scheduler_killed_mid_welcome_is_taken_over_and_nobody_gets_it_twice(
        workspace, database_url):
    write_issue(workspace, WELCOME, WELCOME_TEXT)
    with spawn("--latency", "0.01", "--max-send-rate", "400") as url:
        env = environment(database_url, url)
        go_live(workspace, env)
        everyone = join(workspace, database_url, 1500)
        for kill in range(2):
            doomed = scheduler(workspace, env)
            wait_until(lambda k=kill: fetch(url, "/_fake/stats.json")["accepted"]
                       >= 200 * (k + 1), process=doomed)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(30)
            doomed.stderr.close()
            expire_lease(database_url)
        last = scheduler(workspace, env)
        with Store.open(database_url) as store:
            wait_until(lambda: settled(Ledger(store).counts(WELCOME)) == len(everyone),
                       process=last)
        code, errors = stop(last)
        arrived = received(url)
    assert code == 0, errors
    with Store.open(database_url) as store:
        counts = Ledger(store).counts(WELCOME)
        unknown = ledger_emails(store, "unknown", WELCOME)
    assert max(arrived.values()) == 1, "someone got the welcome twice"
    assert set(arrived) <= everyone and everyone - set(arrived) <= unknown
    assert counts["sent"] + counts["unknown"] == len(everyone)
    assert counts["queued"] == counts["claimed"] == counts["sending"] == 0
