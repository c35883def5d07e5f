"""The ledger's promise, tested the hard way: kill -9 mid-send, faults on the wire.

A sender process is killed with SIGKILL at random moments, then resumed; a fake SES in its own
process counts what really arrived. Nobody may get the issue twice, nobody may be skipped, and
the only gaps allowed are the rows the ledger recorded as ``unknown``: at most the requests in
flight at each kill (the concurrency), at most the requests that got no answer on the wire.
Several senders started at the same instant plan the issue once and share it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import render_issue
from newsletter.sending.engine import SendOptions, content_hash, send_issue
from newsletter.store import Store, Subscriber
from newsletter.store.ledger import Delivery, Ledger
from newsletter.subscribers.imports import import_csv
from newsletter.transports.ses import SesTransport
from tests.fakeses import fetch, spawn

SLUG = "2025-04-asit-highlights"
SECRET = "crash-test-secret-key-0123456789"
CONCURRENCY = 8


def make_list(store: Store, folder: Path, count: int) -> None:
    csv = folder / "list.csv"
    csv.write_text("email,name\n" + "".join(f"reader{n}@example.org,Reader {n}\n"
                                            for n in range(count)))
    report = import_csv(store, csv)
    assert report.added == count


def received(url: str) -> Counter[str]:
    return Counter(m["recipient"] for m in fetch(url, "/_fake/messages.json"))


def aws_env(url: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_SESV2": url}


def sender(workspace: Path, env: dict[str, str], rate: int = 500) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "newsletter", "--config", str(workspace / "newsletter.toml"),
               "send", SLUG, "--transport", "ses", "--yes", "--rate", str(rate),
               "--concurrency", str(CONCURRENCY)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_progress(url: str, beyond: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while fetch(url, "/_fake/stats.json")["accepted"] <= beyond:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the sender made no progress"
        time.sleep(0.05)


def ledger_emails(store: Store, status: str, issue: str = SLUG) -> set[str]:
    with store.engine.connect() as connection:
        return set(connection.execute(select(Subscriber.email).join(
            Delivery, Delivery.subscriber_id == Subscriber.id).where(
            Delivery.issue == issue, Delivery.status == status)).scalars())


@pytest.mark.parametrize("kills", [4])
def test_kill_minus_nine_then_resume_mails_everyone_at_most_once(workspace, database_url,
                                                                 kills):
    count = 5000
    env = {**os.environ, **aws_env(""), "NEWSLETTER_SECRET_KEY": SECRET,
           "NEWSLETTER_DATABASE_URL": database_url}
    with Store.open(database_url) as store:
        make_list(store, workspace, count)
    rng = random.Random(20251006)
    with spawn("--latency", "0.005", "--seed", "7") as url:
        env["AWS_ENDPOINT_URL_SESV2"] = url
        for _ in range(kills):
            process = sender(workspace, env)
            wait_for_progress(url, sum(received(url).values()) + 20, process)
            time.sleep(rng.uniform(0.0, 1.0))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            process.stderr.close()
            with Store.open(database_url) as store:  # what the next run will call unknown
                assert 0 < Ledger(store).counts(SLUG)["sending"] <= CONCURRENCY
        final = sender(workspace, env)
        _, errors = final.communicate(timeout=300)
        assert final.returncode == 0, errors.decode()
        arrived = received(url)

    everyone = {f"reader{n}@example.org" for n in range(count)}
    with Store.open(database_url) as store:
        counts = Ledger(store).counts(SLUG)
        unknown, sent = ledger_emails(store, "unknown"), ledger_emails(store, "sent")
    assert max(arrived.values()) == 1, "someone got the issue twice"
    assert set(arrived) <= everyone
    assert everyone - set(arrived) <= unknown, "someone was skipped without a record"
    assert sent <= set(arrived), "recorded as sent but never arrived"
    assert counts["sent"] + counts["unknown"] == count
    assert counts["queued"] == counts["claimed"] == counts["sending"] == counts["failed"] == 0
    assert len(unknown) <= kills * CONCURRENCY  # bounded by the requests in flight at each kill


def test_faults_on_the_wire_never_mail_anyone_twice(workspace_settings, database_url,
                                                   monkeypatch):
    """Throttles and 5xx answers are retried; a request that got no answer is ``unknown``
    whether SES took it (a late answer, a reset connection) or not (a timeout): never resent."""
    count = 1000
    for name, value in aws_env("").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("newsletter.sending.dispatch.backoff", lambda attempt: 0.01 * attempt)
    settings = workspace_settings.model_copy(update={"secret_key": SECRET, "ses_timeout": 0.5})
    rendered = render_issue(load_issue(find_issue(settings, SLUG), settings), settings)
    with spawn("--latency", "0.01", "--throttle", "0.1", "--error5xx", "0.02",
               "--timeout", "0.01", "--timeout-after", "0.3", "--late", "0.01",
               "--late-after", "1.0", "--lost", "0.01", "--max-send-rate", "2000",
               "--seed", "3") as url, \
            Store.open(database_url) as store:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", url)
        make_list(store, workspace_settings.root, count)
        ledger = Ledger(store)
        ledger.plan(SLUG, rendered.subject, content_hash(rendered))
        with SesTransport.from_settings(settings) as transport:
            report = send_issue(rendered, settings, ledger, transport,
                                SendOptions(rate=None, concurrency=16))
        arrived = received(url)
        answered = {m["recipient"] for m in fetch(url, "/_fake/messages.json")
                    if m["answer"] == "ok"}
        outcomes = fetch(url, "/_fake/stats.json")["outcomes"]
        unknown, sent = ledger_emails(store, "unknown"), ledger_emails(store, "sent")
    everyone = {f"reader{n}@example.org" for n in range(count)}
    assert report.complete, report.stopped
    assert max(arrived.values()) == 1, "someone got the issue twice"
    assert sent == answered and sent | unknown == everyone and not sent & unknown
    assert everyone - set(arrived) <= unknown  # timed out: never arrived, yet not resent
    assert report.counts["unknown"] == len(unknown) == count - len(answered)
    assert {"TooManyRequestsException", "timeout", "late", "lost"} <= set(outcomes)
    assert {"InternalFailure", "ServiceUnavailable"} & set(outcomes)


@pytest.mark.parametrize("senders", [2, 3])
def test_senders_started_together_plan_once_and_share_the_send(workspace, database_url,
                                                                senders):
    """Nothing planned yet: every process races to plan; one does, all send; none fails."""
    count = 3000
    with Store.open(database_url) as store:
        make_list(store, workspace, count)
    env = {**os.environ, **aws_env(""), "NEWSLETTER_SECRET_KEY": SECRET,
           "NEWSLETTER_DATABASE_URL": database_url}
    with spawn("--latency", "0.01", "--max-send-rate", "5000", "--seed", "5") as url:
        env["AWS_ENDPOINT_URL_SESV2"] = url
        processes = [sender(workspace, env, rate=2000) for _ in range(senders)]
        for process in processes:
            _, errors = process.communicate(timeout=300)
            assert process.returncode == 0, errors.decode()
        arrived = received(url)
    with Store.open(database_url) as store, store.engine.connect() as connection:
        counts = Ledger(store).counts(SLUG)
        workers = connection.execute(select(Delivery.sender).distinct().where(
            Delivery.issue == SLUG)).scalars().all()
    assert len(arrived) == count and max(arrived.values()) == 1
    assert counts["sent"] == count
    assert len(workers) >= 2  # the work was shared
