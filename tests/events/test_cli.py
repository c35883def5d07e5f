"""``newsletter events ingest`` and the events part of ``newsletter status``, as users run them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import main
from newsletter.store import Status, Store
from tests.events.conftest import ISSUE, READERS, Recipient, Sns, send_issue, ses

ANA, JAN, MARIA, ELENI = READERS
Run = Callable[..., Result]


@pytest.fixture
def run(workspace: Path) -> Run:
    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(
            main, ["--config", str(workspace / "newsletter.toml"), *args], input=input,
            env={"NEWSLETTER_DATABASE_URL": None, "NEWSLETTER_SECRET_KEY": "x" * 32},
            catch_exceptions=False)
    return invoke


@pytest.fixture
def workspace_store(workspace: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{workspace / 'subscribers' / 'newsletter.db'}") as store:
        yield store


@pytest.fixture
def sent_here(workspace_store: Store) -> dict[str, Recipient]:
    return send_issue(workspace_store, READERS)


def saved_notification(sns: Sns, document: dict[str, Any]) -> dict[str, Any]:
    """An SNS notification as saved weeks ago (its age no longer matters: the file is trusted)."""
    return sns.notification(document, timestamp="2025-04-15T09:31:08.120Z")


def test_ingest_applies_every_shape_and_reports_the_malformed(
        run: Run, sns: Sns, workspace: Path, workspace_store: Store,
        sent_here: dict[str, Recipient]) -> None:
    lines = [
        json.dumps(saved_notification(sns, ses("identity/bounce-permanent",
                                               sent_here[ANA].message_id))),
        json.dumps(ses("event/complaint", sent_here[MARIA].message_id)),
        "{this line is broken",
        json.dumps(ses("event/open", sent_here[ELENI].message_id)),
        json.dumps(ses("event/open", "0102018f-a-proof-000000")),
        json.dumps(sns.confirmation()),
        json.dumps({"eventType": "Bounce"}),
    ]
    events = workspace / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    first = run("events", "ingest", str(events))
    assert first.exit_code == 1
    assert ("3 applied, 1 unmatched (no such message), 0 duplicate, 1 ignored, 2 malformed"
            in first.stdout)
    assert "malformed: line 3: not JSON" in first.stderr
    assert "malformed: line 7: SES Bounce event without mail.messageId" in first.stderr
    assert workspace_store.is_suppressed(ANA) and workspace_store.is_suppressed(MARIA)
    assert not workspace_store.is_suppressed(ELENI)
    again = run("events", "ingest", str(events))
    assert "0 applied, 0 unmatched (no such message), 4 duplicate" in again.stdout


def test_ingest_reads_an_array_from_stdin(run: Run, sent_here: dict[str, Recipient]) -> None:
    documents = [ses("identity/delivery", r.message_id) for r in sent_here.values()]
    result = run("events", "ingest", "-", input=json.dumps(documents))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("4 applied,")


def test_status_shows_what_ses_reported(run: Run, workspace_store: Store,
                                        sent_here: dict[str, Recipient]) -> None:
    documents = [ses("identity/delivery", r.message_id) for r in sent_here.values()]
    documents += [ses("identity/bounce-permanent", sent_here[ANA].message_id),
                  ses("event/open", sent_here[ELENI].message_id),
                  ses("event/click", sent_here[ELENI].message_id)]
    assert run("events", "ingest", "-", input=json.dumps(documents)).exit_code == 0
    workspace_store.set_status(sent_here[JAN].subscriber_id, Status.UNSUBSCRIBED,
                               reason="one-click", issue=ISSUE)
    report = json.loads(run("status", ISSUE, "--json").stdout)
    assert report["events"] == {"delivered": 4, "bounced": 1, "soft_bounced": 0,
                                "complained": 0, "rejected": 0, "unsubscribed": 1,
                                "opened": 1, "clicked": 1}
    human = run("status", ISSUE).stdout
    assert ("reported since: 4 delivered, 1 bounced, 0 soft-bounced, 0 complained, "
            "0 rejected, 1 unsubscribed, 1 opened, 1 clicked") in human


def test_status_of_an_unsent_issue_has_zero_events(run: Run) -> None:
    report = json.loads(run("status", ISSUE, "--json").stdout)
    assert set(report["events"].values()) == {0}


def test_events_help(run: Run) -> None:
    result = run("events", "--help")
    assert result.exit_code == 0 and "ingest" in result.stdout and "poll" in result.stdout
