"""``newsletter ses setup`` and ``ses doctor`` against AWS look-alikes over real HTTP.

SNS, SQS and STS are a moto server (in this process, on a loopback port, so that a test can put
a subscription in the state moto never reaches by itself: pending confirmation). SES v2's
account calls, which moto lacks, are ``tests/fakesesaccount.py``. DNS is ``tests/fakedns.py``.
boto3 reaches them through the AWS_ENDPOINT_URL_* variables, as it would reach AWS.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from newsletter.aws import dns
from newsletter.aws.account import Account
from newsletter.aws.checks import Check
from newsletter.aws.doctor import diagnose
from newsletter.aws.setup import Outcome, set_up
from newsletter.config import Settings, load_settings
from tests.fakedns import FakeDns
from tests.fakesesaccount import FakeSesAccount

REGION = "eu-west-1"
ACCOUNT = "123456789012"
DOMAIN = "asit-project.eu"
WEBHOOK = "https://newsletter.asit-project.eu/webhooks/ses"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:asit-newsletter-events"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def ses(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeSesAccount]:
    """An empty account: moto reset, a fresh SES fake, boto3 pointed at both."""
    urllib.request.urlopen(urllib.request.Request(moto_url + "/moto-api/reset", method="POST"),
                           timeout=10).close()
    with FakeSesAccount() as fake:
        for name, value in aws_environment(moto_url, fake.url, tmp_path).items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield fake


def aws_environment(moto_url: str, ses_url: str, home: Path) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL_SESV2": ses_url, "AWS_ENDPOINT_URL_SNS": moto_url,
            "AWS_ENDPOINT_URL_SQS": moto_url, "AWS_ENDPOINT_URL_STS": moto_url,
            "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-never-printed",
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials")}


def configured(settings: Settings, outcome: Outcome) -> Settings:
    """The settings after the lines setup asked for were added to newsletter.toml."""
    return settings.model_copy(update=outcome.settings)


def published(outcome: Outcome) -> FakeDns:
    """A DNS server holding exactly the records setup printed."""
    zone: dict[tuple[str, str], list[str]] = {}
    for record in outcome.records:
        zone.setdefault((record.name, record.type), []).append(record.value)
    return FakeDns(zone)


def by_id(checks: list[Check]) -> dict[str, Check]:
    ids = [check.id for check in checks]
    assert len(ids) == len(set(ids)), ids
    return {check.id: check for check in checks}


def sns() -> Any:
    return boto3.session.Session(region_name=REGION).client("sns")


def sqs() -> Any:
    return boto3.session.Session(region_name=REGION).client("sqs")


def moto_state() -> dict[str, Any]:
    """Every topic, queue and subscription moto holds, with their attributes."""
    topics = [t["TopicArn"] for t in sns().list_topics()["Topics"]]
    queues = sqs().list_queues().get("QueueUrls", [])
    return {
        "topics": {arn: sns().get_topic_attributes(TopicArn=arn)["Attributes"] for arn in topics},
        "queues": {url: sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
                   ["Attributes"] for url in queues},
        "subscriptions": sns().list_subscriptions()["Subscriptions"],
    }


# ---------------------------------------------------------------- setup


def test_setup_on_an_empty_account_then_doctor_finds_everything_in_place(
        ses: FakeSesAccount, settings: Settings) -> None:
    outcome = set_up(Account(), settings, route="both", tracking=True)

    assert [(step.action, step.what) for step in outcome.steps] == [
        ("create", f"SES identity {DOMAIN}"),
        ("create", f"custom MAIL FROM domain bounce.{DOMAIN}"),
        ("create", "configuration set asit-newsletter"),
        ("create", f"SNS topic {TOPIC}"),
        ("create", "event destination newsletter-events of asit-newsletter"),
        ("create", f"subscription of {WEBHOOK}"),
        ("create", "SQS queue asit-newsletter-events-dead-letters"),
        ("create", "SQS queue asit-newsletter-events"),
        ("create", "subscription of the queue asit-newsletter-events"),
    ]
    identity = ses.identity(DOMAIN)
    assert {"Key": "created-by", "Value": "newsletter ses setup"} in identity["Tags"]
    tokens = identity["DkimAttributes"]["Tokens"]
    assert {(r.name, r.type, r.value) for r in outcome.records} >= {
        *((f"{t}._domainkey.{DOMAIN}", "CNAME", f"{t}.dkim.amazonses.com") for t in tokens),
        (f"bounce.{DOMAIN}", "MX", f"10 feedback-smtp.{REGION}.amazonses.com"),
        (f"bounce.{DOMAIN}", "TXT", "v=spf1 include:amazonses.com ~all"),
        (f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=none;")}
    assert outcome.settings["ses_configuration_set"] == "asit-newsletter"
    assert outcome.settings["sns_topic_arns"] == [TOPIC]
    assert outcome.settings["sqs_queue_url"].endswith(f"{ACCOUNT}/asit-newsletter-events")
    destination = ses.state.destinations["asit-newsletter"]["newsletter-events"]
    assert destination["Enabled"] and destination["SnsDestination"] == {"TopicArn": TOPIC}
    assert {"BOUNCE", "COMPLAINT", "DELIVERY", "OPEN", "CLICK"} <= set(
        destination["MatchingEventTypes"])
    state = moto_state()
    assert "ses.amazonaws.com" in state["topics"][TOPIC]["Policy"]
    queue = next(a for url, a in state["queues"].items() if url.endswith("-events"))
    assert "dead-letters" in json.loads(queue["RedrivePolicy"])["deadLetterTargetArn"]
    assert "sns.amazonaws.com" in queue["Policy"]

    ses.verify(DOMAIN)  # what SES does once the DKIM records are published
    writes, state = list(ses.writes), moto_state()
    with published(outcome) as nameserver:
        checks = by_id(diagnose(configured(settings, outcome),
                                resolver=dns.make_resolver(nameserver.address)))
    assert {c.id: c.status for c in checks.values() if c.status != "ok"} == {}, checks
    assert (ses.writes, moto_state()) == (writes, state)  # the doctor only reads
    assert "opens and clicks" not in checks["event-destination"].message


def test_setup_twice_creates_nothing_new(ses: FakeSesAccount, settings: Settings) -> None:
    first = set_up(Account(), settings, route="both")
    writes, state = list(ses.writes), moto_state()

    again = set_up(Account(), configured(settings, first), route="both")

    assert not again.changed, [s for s in again.steps if s.action != "exists"]
    assert {step.action for step in again.steps} == {"exists"}
    assert ses.writes == writes
    assert moto_state() == state
    assert again.settings == {}


def test_a_dry_run_changes_nothing_and_says_what_it_would_do(
        ses: FakeSesAccount, settings: Settings) -> None:
    outcome = set_up(Account(), settings, route="queue", dry_run=True)

    assert ses.writes == []
    assert moto_state() == {"topics": {}, "queues": {}, "subscriptions": []}
    assert {step.action for step in outcome.steps} == {"create"}
    assert outcome.steps[0].describe(dry_run=True).startswith("+ would create SES identity")
    assert outcome.dkim_pending
    assert [r.type for r in outcome.records] == ["MX", "TXT", "TXT"]  # no tokens yet


def test_setup_completes_what_someone_started_by_hand(ses: FakeSesAccount,
                                                      settings: Settings) -> None:
    """A topic without a policy for SES and a destination publishing bounces only are
    completed, not duplicated; the event types someone chose are kept."""
    topic = sns().create_topic(Name="asit-newsletter-events")["TopicArn"]
    ses_client = boto3.session.Session(region_name=REGION).client("sesv2")
    ses_client.create_configuration_set(ConfigurationSetName="asit-newsletter")
    ses_client.create_configuration_set_event_destination(
        ConfigurationSetName="asit-newsletter", EventDestinationName="newsletter-events",
        EventDestination={"Enabled": False, "MatchingEventTypes": ["BOUNCE", "SEND"],
                          "SnsDestination": {"TopicArn": topic}})

    outcome = set_up(Account(), settings)

    actions = {step.what: (step.action, step.detail) for step in outcome.steps}
    assert actions[f"SNS topic {topic}"] == ("update", "its policy now lets SES publish")
    assert actions["configuration set asit-newsletter"][0] == "exists"
    action, detail = actions["event destination newsletter-events of asit-newsletter"]
    assert action == "update" and "enabled" in detail and "complaint" in detail
    destination = ses.state.destinations["asit-newsletter"]["newsletter-events"]
    assert destination["Enabled"] and "SEND" in destination["MatchingEventTypes"]
    assert "ses.amazonaws.com" in sns().get_topic_attributes(TopicArn=topic)["Attributes"][
        "Policy"]


# ---------------------------------------------------------------- doctor


@pytest.fixture
def set_up_account(ses: FakeSesAccount, settings: Settings) -> tuple[Settings, Outcome]:
    """An account set up and verified, with the settings setup asked for."""
    outcome = set_up(Account(), settings)
    ses.verify(DOMAIN)
    return configured(settings, outcome), outcome


def doctor(settings: Settings, outcome: Outcome) -> dict[str, Check]:
    with published(outcome) as nameserver:
        return by_id(diagnose(settings, resolver=dns.make_resolver(nameserver.address)))


def test_doctor_reports_an_unverified_identity(ses: FakeSesAccount, settings: Settings) -> None:
    outcome = set_up(Account(), settings)
    checks = doctor(configured(settings, outcome), outcome)
    assert checks["identity"].status == "fail"
    assert "not verified" in checks["identity"].message
    assert "DKIM records" in checks["identity"].fix
    assert checks["dkim"].status == "fail" and "pending" in checks["dkim"].message


def test_doctor_reports_a_missing_event_destination(
        ses: FakeSesAccount, set_up_account: tuple[Settings, Outcome]) -> None:
    settings, outcome = set_up_account
    ses.state.destinations["asit-newsletter"].clear()
    checks = doctor(settings, outcome)
    assert checks["event-destination"].status == "fail"
    assert "bounces and complaints never reach the list" in checks["event-destination"].message
    assert checks["event-destination"].fix == "run `newsletter ses setup`"


def test_doctor_reports_a_topic_missing_from_sns_topic_arns(
        set_up_account: tuple[Settings, Outcome]) -> None:
    settings, outcome = set_up_account
    checks = doctor(settings.model_copy(update={"sns_topic_arns": ()}), outcome)
    assert checks["topic-allowed"].status == "fail"
    assert checks["topic-allowed"].fix == f'add it to newsletter.toml: sns_topic_arns = ["{TOPIC}"]'


def test_doctor_reports_an_unconfirmed_subscription(
        set_up_account: tuple[Settings, Outcome]) -> None:
    from moto.sns.models import sns_backends

    settings, outcome = set_up_account
    backend = sns_backends[ACCOUNT][REGION]
    (subscription,) = [s for s in backend.subscriptions.values() if s.endpoint == WEBHOOK]
    subscription.attributes["PendingConfirmation"] = "true"  # moto confirms at once; SNS doesn't

    checks = doctor(settings, outcome)

    assert checks["subscription"].status == "fail"
    assert "not confirmed" in checks["subscription"].message
    assert "newsletter serve" in checks["subscription"].fix
    again = set_up(Account(), settings)  # asks SNS for the confirmation again
    assert [s.detail for s in again.steps if s.action != "exists"] == [
        "asked SNS to send the confirmation again"]


def test_doctor_reports_raw_delivery_on_the_webhook_and_setup_turns_it_off(
        set_up_account: tuple[Settings, Outcome]) -> None:
    settings, outcome = set_up_account
    (subscription,) = [s for s in sns().list_subscriptions()["Subscriptions"]
                       if s["Endpoint"] == WEBHOOK]
    sns().set_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"],
                                      AttributeName="RawMessageDelivery", AttributeValue="true")

    checks = doctor(settings, outcome)
    assert checks["subscription"].status == "fail"
    assert "raw message delivery" in checks["subscription"].message

    set_up(Account(), settings)
    assert doctor(settings, outcome)["subscription"].status == "ok"


def test_doctor_reports_the_account_standing(ses: FakeSesAccount,
                                             set_up_account: tuple[Settings, Outcome]) -> None:
    settings, outcome = set_up_account
    ses.account.update(ProductionAccessEnabled=False, EnforcementStatus="PROBATION",
                       SuppressionAttributes={"SuppressedReasons": ["BOUNCE"]})
    ses.account["SendQuota"]["SentLast24Hours"] = 49_000.0
    checks = doctor(settings.model_copy(update={"rate": 50.0}), outcome)
    assert checks["production-access"].status == "fail"
    assert "sandbox" in checks["production-access"].message
    assert checks["sending"].status == "warn" and "PROBATION" in checks["sending"].message
    assert checks["suppression-list"].status == "warn"
    assert "complaint" in checks["suppression-list"].message
    assert checks["quota"].status == "warn" and "49,000 sent" in checks["quota"].message


def test_doctor_reports_a_missing_configuration_set_and_a_refused_call(
        ses: FakeSesAccount, set_up_account: tuple[Settings, Outcome]) -> None:
    settings, outcome = set_up_account
    ses.deny("GetAccount")
    checks = doctor(settings.model_copy(update={"ses_configuration_set": "gone"}), outcome)
    assert checks["configuration-set"].status == "fail"
    assert "refuses every message" in checks["configuration-set"].message
    assert checks["production-access"].status == "fail"
    assert "ses:GetAccount" in checks["production-access"].message
    assert "newsletter ses policy --setup" in checks["production-access"].fix


def test_doctor_reports_a_queue_without_its_subscription(
        ses: FakeSesAccount, settings: Settings) -> None:
    outcome = set_up(Account(), settings, route="queue")
    ses.verify(DOMAIN)
    settings = configured(settings, outcome)
    for item in sns().list_subscriptions()["Subscriptions"]:
        sns().unsubscribe(SubscriptionArn=item["SubscriptionArn"])
    checks = doctor(settings, outcome)
    assert "subscription" not in checks  # the queue is the route: no webhook asked for
    assert checks["queue"].status == "fail"
    assert "not subscribed" in checks["queue"].message
    assert checks["dead-letter-queue"].status == "ok"


def test_doctor_without_credentials_says_what_to_set(
        ses: FakeSesAccount, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    (check,) = diagnose(settings)
    assert check.id == "credentials" and check.status == "fail"
    assert "AWS_PROFILE" in check.message


# ---------------------------------------------------------------- the commands


def run(workspace: Path, env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "newsletter", *arguments], cwd=workspace,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_the_commands_end_to_end(ses: FakeSesAccount, workspace: Path, moto_url: str,
                                 tmp_path: Path) -> None:
    env = aws_environment(moto_url, ses.url, tmp_path)
    config = (workspace / "newsletter.toml").read_text()

    dry = run(workspace, env, "ses", "setup", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ would create SES identity asit-project.eu" in dry.stdout
    assert ses.writes == []

    done = run(workspace, env, "ses", "setup")
    assert done.returncode == 0, done.stderr
    assert re.search(r"\._domainkey\.asit-project\.eu\. +3600 +IN +CNAME +\w+\.dkim\.amazonses"
                     r"\.com\.", done.stdout), done.stdout
    assert f'sns_topic_arns = ["{TOPIC}"]' in done.stdout
    assert (workspace / "newsletter.toml").read_text() == config  # not without asking

    failing = run(workspace, env, "ses", "doctor", "--json", "--nameserver", "127.0.0.1:9")
    assert failing.returncode == 1, failing.stderr
    report = json.loads(failing.stdout)
    assert report["ok"] is False
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert statuses["configuration-set"] == "fail"  # newsletter.toml does not name it yet
    assert all(set(c) == {"id", "status", "message", "fix"} for c in report["checks"])

    policy = run(workspace, env, "ses", "policy")
    document = json.loads(policy.stdout)
    actions = {a for s in document["Statement"] for a in s["Action"]}
    assert {"ses:SendEmail", "ses:SendRawEmail", "ses:GetAccount"} <= actions
    assert f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{DOMAIN}" in document["Statement"][0][
        "Resource"]
    setup_policy = json.loads(run(workspace, env, "ses", "policy", "--setup").stdout)
    assert "sns:CreateTopic" in {a for s in setup_policy["Statement"] for a in s["Action"]}

    for output in (dry, done, failing, policy):
        assert "testing-secret-never-printed" not in output.stdout + output.stderr


# Runs `newsletter ARGS` on a pseudo-terminal and answers "y" to its question.
ANSWER_YES = textwrap.dedent("""
    import os, pty, sys
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "newsletter", *sys.argv[1:]])
    out = b""
    while b"Write them" not in out:
        out += os.read(fd, 4096)
    os.write(fd, b"y\\n")
    try:
        while chunk := os.read(fd, 4096):
            out += chunk
    except OSError:  # the terminal closed with the child
        pass
    os.waitpid(pid, 0)
    sys.stdout.write(out.decode())
""")


def test_setup_writes_the_settings_only_when_asked(
        ses: FakeSesAccount, workspace: Path, moto_url: str, tmp_path: Path) -> None:
    """On a terminal setup asks; a yes writes the lines, keeping the file's comments."""
    env = aws_environment(moto_url, ses.url, tmp_path)
    answer = subprocess.run([sys.executable, "-c", ANSWER_YES, "ses", "setup"], cwd=workspace,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=120)
    assert "Wrote ses_configuration_set, sns_topic_arns" in answer.stdout, answer.stdout
    written = load_settings(workspace / "newsletter.toml")
    assert written.ses_configuration_set == "asit-newsletter"
    assert written.sns_topic_arns == (TOPIC,)
    assert "# The ASIT project's newsletter." in (workspace / "newsletter.toml").read_text()
