"""``newsletter events poll`` against a real moto server: SES → SNS → SQS, both body shapes,
deletion only after applying, malformed messages left to the redrive policy."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from newsletter.cli import main
from newsletter.store import Store
from tests.events.conftest import READERS, Recipient, Sns, send_issue, ses

ANA, JAN, MARIA, ELENI = READERS
Run = Callable[..., Result]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A real ``moto_server`` process on a loopback port (skipped, or failed under CI, without
    moto[server])."""
    if not all(importlib.util.find_spec(name) for name in ("moto", "flask")):
        reason = "moto[server] is not installed: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/moto-api/data.json", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"moto_server did not start at {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, moto_url: str, tmp_path: Path) -> Any:
    """Dummy credentials and moto as SQS endpoint, through boto3's own chain as in production."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                        "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "eu-west-1",
                        "AWS_ENDPOINT_URL_SQS": moto_url}.items():
        monkeypatch.setenv(name, value)
    urllib.request.urlopen(urllib.request.Request(moto_url + "/moto-api/reset", method="POST"),
                           timeout=10).close()
    client = boto3.session.Session(region_name="eu-west-1").client("sqs")
    yield client
    client.close()


def make_queue(sqs: Any, *, redrive_after: int | None = None) -> str:
    attributes = {"VisibilityTimeout": "0"} if redrive_after else {}
    if redrive_after:
        dead = sqs.create_queue(QueueName="ses-events-dead")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn,
                                                  "maxReceiveCount": str(redrive_after)})
    return str(sqs.create_queue(QueueName="ses-events", Attributes=attributes)["QueueUrl"])


def waiting(sqs: Any, url: str) -> int:
    """Messages still on the queue, visible or in flight."""
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(found["ApproximateNumberOfMessages"]) + int(
        found["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def run(workspace: Path) -> Run:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(
            main, ["--config", str(workspace / "newsletter.toml"), *args],
            env={"NEWSLETTER_DATABASE_URL": None}, catch_exceptions=False)
    return invoke


@pytest.fixture
def store(workspace: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{workspace / 'subscribers' / 'newsletter.db'}") as opened:
        yield opened


@pytest.fixture
def sent(store: Store) -> dict[str, Recipient]:
    return send_issue(store, READERS)


def test_poll_applies_both_shapes_and_deletes_only_what_it_applied(
        aws: Any, run: Run, store: Store, sns: Sns, sent: dict[str, Recipient]) -> None:
    url = make_queue(aws)
    bodies = [
        json.dumps(sns.notification(ses("identity/bounce-permanent", sent[ANA].message_id))),
        json.dumps(ses("event/complaint", sent[MARIA].message_id)),  # raw message delivery
        json.dumps(sns.notification(ses("event/click", sent[ELENI].message_id))),
        json.dumps(sns.confirmation()),  # a cross-account subscription's: no event
        "this is not an SES event",
    ]
    for message in bodies:
        aws.send_message(QueueUrl=url, MessageBody=message)
    result = run("events", "poll", "--queue-url", url, "--once", "--wait", "0")
    assert result.exit_code == 1  # one was malformed
    assert "3 applied, 0 unmatched (no such message), 0 duplicate, 1 ignored, 1 malformed" in (
        result.stdout)
    assert "malformed, left on the queue: SQS message" in result.stderr
    assert store.is_suppressed(ANA) and store.is_suppressed(MARIA)
    assert not store.is_suppressed(ELENI)
    assert waiting(aws, url) == 1  # only the malformed one, in flight until it times out


def test_a_malformed_message_ends_in_the_dead_letter_queue(
        aws: Any, run: Run, sent: dict[str, Recipient]) -> None:
    url = make_queue(aws, redrive_after=1)
    aws.send_message(QueueUrl=url, MessageBody="{broken")
    assert run("events", "poll", "--queue-url", url, "--once", "--wait", "0").exit_code == 1
    again = run("events", "poll", "--queue-url", url, "--once", "--wait", "0")
    assert again.exit_code == 0 and again.stdout.strip().endswith("0 malformed")
    dead = aws.get_queue_url(QueueName="ses-events-dead")["QueueUrl"]
    assert waiting(aws, url) == 0 and waiting(aws, dead) == 1


def test_poll_stops_after_max_messages_and_redeliveries_are_duplicates(
        aws: Any, run: Run, store: Store, sns: Sns, sent: dict[str, Recipient]) -> None:
    url = make_queue(aws)
    opened = json.dumps(sns.notification(ses("event/open", sent[ELENI].message_id)))
    for _ in range(3):  # SNS delivered it three times
        aws.send_message(QueueUrl=url, MessageBody=opened)
    for email in (ANA, JAN, MARIA):
        aws.send_message(QueueUrl=url, MessageBody=json.dumps(
            ses("identity/delivery", sent[email].message_id)))
    result = run("events", "poll", "--queue-url", url, "--max-messages", "6", "--wait", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("4 applied, 0 unmatched")
    assert "2 duplicate" in result.stdout and waiting(aws, url) == 0


def test_a_database_failure_stops_the_poll_and_keeps_the_message(
        aws: Any, run: Run, store: Store, sent: dict[str, Recipient]) -> None:
    url = make_queue(aws)
    aws.send_message(QueueUrl=url, MessageBody=json.dumps(
        ses("identity/bounce-permanent", sent[ANA].message_id)))
    with store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_elsewhere"))
    result = run("events", "poll", "--queue-url", url, "--once", "--wait", "0")
    assert result.exit_code == 1 and "could not record a bounced event" in result.output
    assert waiting(aws, url) == 1 and not store.is_suppressed(ANA)


def test_poll_needs_a_queue(run: Run) -> None:
    result = run("events", "poll", "--once")
    assert result.exit_code == 3 and "sqs_queue_url" in result.output
