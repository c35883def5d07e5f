"""`newsletter send` and `newsletter status` as users run them (outbox transport, SQLite)."""

import email
import email.policy
import json

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from tests.fakeses import FakeSes

SLUG = "2025-04-asit-highlights"


@pytest.fixture
def run(workspace, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "cli-test-secret-0123456789")
    monkeypatch.delenv("NEWSLETTER_DATABASE_URL", raising=False)
    monkeypatch.delenv("NEWSLETTER_TRANSPORT", raising=False)

    def invoke(*args, input=None):
        return CliRunner().invoke(main, ["--config", str(workspace / "newsletter.toml"), *args],
                                  input=input, catch_exceptions=False)
    return invoke


@pytest.fixture
def subscribed(run):
    for n in range(3):
        result = run("subscribers", "add", f"reader{n}@example.org", "--name", f"Reader {n}",
                     "--confirmed")
        assert result.exit_code == 0, result.output
    return run


def outbox(workspace):
    return sorted((workspace / "outbox" / SLUG).glob("*.eml"))


def test_send_asks_first_and_a_no_sends_nothing(subscribed, workspace):
    result = subscribed("send", SLUG, input="n\n")
    assert "to 3 active subscribers through outbox?" in result.output
    assert result.exit_code == 1 and outbox(workspace) == []


def test_send_then_resend_is_a_no_op(subscribed, workspace):
    first = subscribed("send", SLUG, "--yes")
    assert first.exit_code == 0, first.output
    assert "planned 3 deliveries" in first.output and "3 sent" in first.output
    assert len(outbox(workspace)) == 3
    second = subscribed("send", SLUG, "--yes")
    assert second.exit_code == 0 and "this run: 0 sent" in second.output
    status = json.loads(subscribed("status", SLUG, "--json").output)
    assert status["state"] == "complete" and status["counts"]["sent"] == 3


def test_status_of_an_unsent_issue(subscribed):
    result = subscribed("status", SLUG)
    assert result.exit_code == 0 and f"{SLUG}: not sent" in result.output


def test_proofs_go_only_to_the_given_addresses(subscribed, workspace):
    result = subscribed("send", SLUG, "--test-to", "editor@example.org")
    assert result.exit_code == 0, result.output
    (proof,) = outbox(workspace)
    message = email.message_from_bytes(proof.read_bytes(), policy=email.policy.default)
    assert message["To"] == "editor@example.org" and message["Subject"].startswith("[Proof] ")
    assert "not sent" in subscribed("status", SLUG).output


def test_dry_run_sends_nothing(subscribed, workspace):
    result = subscribed("send", SLUG, "--dry-run")
    assert result.exit_code == 0 and "dry run: 3 messages personalised" in result.output
    assert outbox(workspace) == []


def test_an_issue_edited_mid_send_is_refused(subscribed, workspace):
    assert subscribed("send", SLUG, "--yes").exit_code == 0
    issue = workspace / "issues" / SLUG / "issue.md"
    issue.write_text(issue.read_text().replace("We're proud", "We are proud"))
    result = subscribed("send", SLUG, "--yes")
    assert result.exit_code == 1
    assert "changed since its send began (3 already sent)" in result.output


def test_an_issue_that_fails_its_checks_is_not_sent(subscribed, workspace):
    issue = workspace / "issues" / SLUG / "issue.md"
    issue.write_text(issue.read_text() + "\n[see](report.pdf)\n")
    result = subscribed("send", SLUG, "--yes")
    assert result.exit_code == 1 and "does not pass its checks" in result.output
    assert outbox(workspace) == []


def test_an_attribute_placeholder_nobody_can_fill_stops_the_send(subscribed, workspace):
    subscribed("subscribers", "add", "anna@example.org", "--attr", "Organisation=Europol",
               "--confirmed")
    for name in ("issue.md", "issue.es.md"):  # the translation says what the original says
        issue = workspace / "issues" / SLUG / name
        issue.write_text(issue.read_text() + "\nGreetings to {{organization}}.\n")
    result = subscribed("send", SLUG, "--yes")
    assert result.exit_code == 1, result.output
    assert "{{organization}} would be empty for everyone" in result.output
    assert "attributes on the list: organisation" in result.output
    assert outbox(workspace) == []
    for name in ("issue.md", "issue.es.md"):
        issue = workspace / "issues" / SLUG / name
        issue.write_text(issue.read_text().replace("{{organization}}", "{{organisation}}"))
    sent = subscribed("send", SLUG, "--yes")
    assert sent.exit_code == 0 and "{{organisation}} is blank for 3 of 4 recipients" in sent.output
    texts = [email.message_from_bytes(m.read_bytes(), policy=email.policy.default)
             .get_body(("plain",)).get_content() for m in outbox(workspace)]
    assert sorted("Greetings to Europol." in text for text in texts) == [False] * 3 + [True]
    assert sum("Greetings to ." in text for text in texts) == 3  # the others: a blank


def test_no_secret_key_is_a_configuration_error(subscribed, monkeypatch, workspace):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    result = subscribed("send", SLUG, "--yes")
    assert result.exit_code == 3 and "NEWSLETTER_SECRET_KEY" in result.output
    assert outbox(workspace) == []
    assert f"{SLUG}: not sent" in subscribed("status", SLUG).output  # nothing planned either


def test_an_unwritable_outbox_stops_with_exit_1_and_loses_nothing(subscribed, workspace):
    (workspace / "outbox").write_text("a file where the folder should be")
    result = subscribed("send", SLUG, "--yes")
    assert result.exit_code == 1 and "stopped: the transport refused to go on" in result.output
    status = json.loads(subscribed("status", SLUG, "--json").output)
    assert status["counts"]["queued"] == 3 and status["counts"]["sending"] == 0


def test_unanswered_messages_are_unknown_until_retried_on_purpose(subscribed, workspace,
                                                                  monkeypatch):
    """SES took them but answered after ``ses_timeout``: unknown, shown, resent only when
    asked for."""
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace("[newsletter]\n",
                                                 "[newsletter]\nses_timeout = 0.3\n"))
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    with FakeSes(late=1.0, late_after=1.0, max_send_rate=100) as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", fake.url)
        sent = subscribed("send", SLUG, "--yes", "--transport", "ses")
        assert sent.exit_code == 0, sent.output
        assert "3 messages got no answer" in sent.output and "--retry-unknown" in sent.output
        status = subscribed("status", SLUG)
        assert "3 unknown: they may or may not have gone out" in status.output
        assert "3 × no answer in time: SES may have accepted the message" in status.output
        reported = json.loads(subscribed("status", SLUG, "--json").output)
        assert reported["counts"]["unknown"] == 3 and reported["state"] == "complete"
        assert reported["unknown"][0]["count"] == 3
        assert subscribed("send", SLUG, "--yes", "--transport", "ses").exit_code == 0
        assert len(fake.messages()) == 3  # a rerun leaves them alone
        fake.configure(late=0.0)
        retried = subscribed("send", SLUG, "--yes", "--transport", "ses", "--retry-unknown")
        assert retried.exit_code == 0 and "this run: 3 sent" in retried.output
        assert sorted(fake.counts().values()) == [2, 2, 2]  # asked for: they got it twice


def test_a_worker_joins_a_send_and_leaves_edited_content_alone(subscribed, workspace, caplog):
    from newsletter.config import load_settings
    from newsletter.store import Store
    from newsletter.store.ledger import Ledger

    settings = load_settings(workspace / "newsletter.toml", env={})
    with Store.open(settings.database_url) as store:
        Ledger(store).plan(SLUG, "An older version", "0" * 64)
    left = subscribed("worker", "--once")
    assert left.exit_code == 1 and outbox(workspace) == []
    assert f"left alone: {SLUG}: the issue changed since its send was planned" in caplog.text
    with Store.open(settings.database_url) as store, store.writer.begin() as connection:
        connection.exec_driver_sql("DELETE FROM sends")
    assert subscribed("send", SLUG, "--yes", "--workers", "2").exit_code == 0
    assert len(outbox(workspace)) == 3
    assert subscribed("worker", "--once").exit_code == 0  # nothing left: nothing to do
    assert len(outbox(workspace)) == 3
