"""``newsletter ses setup``: create what a newsletter needs at AWS, and only what is missing.

Each resource is looked up first and created (or, where a piece of it is missing, updated) only
when needed, so a second run changes nothing; with ``dry_run`` nothing is changed at all and the
steps say what would be. Order matters: the identity before its MAIL FROM domain, the topic
(with a policy letting SES publish) before the event destination that points at it, the queues
before the subscription that feeds them.

A webhook subscription is confirmed by ``newsletter serve`` when SNS posts the confirmation, but
only for topics in ``sns_topic_arns``: setup therefore says which lines ``newsletter.toml``
needs, and re-subscribing a subscription still pending asks SNS to send the confirmation again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from newsletter.aws import dns
from newsletter.aws.account import Account, find_subscription
from newsletter.aws.policies import allows, queue_statement, topic_statement, with_statement
from newsletter.aws.resources import (
    DEAD_LETTER_RECEIVES,
    DEAD_LETTER_RETENTION,
    DESTINATION,
    EVENTS,
    TRACKING,
    Names,
)
from newsletter.config import Settings

Route = Literal["webhook", "queue", "both"]
Action = Literal["exists", "create", "update"]
MARKS = {"exists": "=", "create": "+", "update": "~"}


@dataclass(frozen=True)
class Step:
    """One resource: already there as needed, created, or changed (``detail`` says how)."""

    action: Action
    what: str
    detail: str = ""

    def describe(self, dry_run: bool) -> str:
        verb = f"would {self.action}" if dry_run and self.action != "exists" else self.action
        detail = f": {self.detail}" if self.detail else ""
        return f"{MARKS[self.action]} {verb} {self.what}{detail}"


@dataclass
class Outcome:
    """What setup did, the DNS records to publish, and the settings newsletter.toml needs."""

    steps: list[Step] = field(default_factory=list)
    records: list[dns.Record] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # key → value for [newsletter]
    dkim_pending: bool = False  # the identity is new in a dry run: tokens are not known yet

    @property
    def changed(self) -> bool:
        return any(step.action != "exists" for step in self.steps)


def set_up(account: Account, settings: Settings, *, route: Route = "webhook",
           tracking: bool = False, dry_run: bool = False,
           on_step: Callable[[Step], None] | None = None) -> Outcome:
    """Create what is missing for ``settings``' newsletter in ``account``; see the module."""
    return _Setup(account, settings, route, tracking, dry_run, on_step).run()


class _Setup:
    def __init__(self, account: Account, settings: Settings, route: Route, tracking: bool,
                 dry_run: bool, on_step: Callable[[Step], None] | None):
        self.account, self.settings, self.route = account, settings, route
        self.tracking, self.dry_run, self.on_step = tracking, dry_run, on_step
        self.names = Names.of(settings)
        self.outcome = Outcome()

    def run(self) -> Outcome:
        identity = self.identity()
        mail_from = self.mail_from(identity)
        self.configuration_set()
        topic_arn = self.topic()
        self.event_destination(topic_arn)
        if self.route in ("webhook", "both"):
            self.webhook(topic_arn)
        if self.route in ("queue", "both"):
            self.queue(topic_arn)
        tokens = identity.get("DkimAttributes", {}).get("Tokens", [])
        self.outcome.dkim_pending = not tokens
        self.outcome.records = [*dns.dkim_records(self.names.domain, tokens),
                                *dns.mail_from_records(mail_from, self.account.region),
                                dns.dmarc_record(self.names.domain)]
        self.outcome.settings = self.settings_needed(topic_arn)
        return self.outcome

    # ------------------------------------------------------------ one resource each

    def identity(self) -> dict[str, Any]:
        """The domain identity with Easy DKIM (2048-bit keys): SES signs every message for the
        domain, which is what DMARC aligns on."""
        domain = self.names.domain
        found = self.account.find("sesv2", "get_email_identity", EmailIdentity=domain)
        if found is not None:
            state = "verified" if found.get("VerifiedForSendingStatus") else "not verified yet"
            self.step("exists", f"SES identity {domain}", state)
            return dict(found)
        self.step("create", f"SES identity {domain}", "with Easy DKIM; verified once the DNS "
                  "records below are published")
        if self.dry_run:
            return {}
        return dict(self.account.call(
            "sesv2", "create_email_identity", EmailIdentity=domain, Tags=self.names.tags,
            DkimSigningAttributes={"NextSigningKeyLength": "RSA_2048_BIT"}))

    def mail_from(self, identity: dict[str, Any]) -> str:
        """A custom MAIL FROM domain (``bounce.<domain>``), so that SPF passes for the sender's
        own domain; until its DNS records are published SES uses its own, so nothing breaks."""
        current = identity.get("MailFromAttributes", {}).get("MailFromDomain")
        if current:
            self.step("exists", f"custom MAIL FROM domain {current}")
            return str(current)
        what = f"custom MAIL FROM domain {self.names.mail_from}"
        self.step("create", what, "falls back to amazonses.com until its MX record is published")
        if not self.dry_run:
            self.account.call("sesv2", "put_email_identity_mail_from_attributes",
                              EmailIdentity=self.names.domain,
                              MailFromDomain=self.names.mail_from,
                              BehaviorOnMxFailure="USE_DEFAULT_VALUE")
        return self.names.mail_from

    def configuration_set(self) -> None:
        name = self.names.configuration_set
        if self.account.find("sesv2", "get_configuration_set",
                             ConfigurationSetName=name) is not None:
            self.step("exists", f"configuration set {name}")
            return
        self.step("create", f"configuration set {name}", "every message is sent through it")
        if not self.dry_run:
            self.account.call("sesv2", "create_configuration_set", ConfigurationSetName=name,
                              Tags=self.names.tags)

    def topic(self) -> str:
        """The SNS topic SES publishes events to, with a policy letting it do so."""
        arn = self.account.arn("sns", self.names.topic)
        statement = topic_statement(arn, self.account.id, self.account.arn(
            "ses", f"configuration-set/{self.names.configuration_set}"))
        found = self.account.find("sns", "get_topic_attributes", TopicArn=arn)
        if found is None:
            self.step("create", f"SNS topic {arn}", "SES may publish to it")
            if not self.dry_run:
                self.account.call("sns", "create_topic", Name=self.names.topic,
                                  Attributes={"Policy": with_statement(None, statement)},
                                  Tags=self.names.tags)
            return arn
        policy = found["Attributes"].get("Policy")
        if allows(policy, "ses.amazonaws.com", "SNS:Publish"):
            self.step("exists", f"SNS topic {arn}")
            return arn
        self.step("update", f"SNS topic {arn}", "its policy now lets SES publish")
        if not self.dry_run:
            self.account.call("sns", "set_topic_attributes", TopicArn=arn,
                              AttributeName="Policy",
                              AttributeValue=with_statement(policy, statement))
        return arn

    def event_destination(self, topic_arn: str) -> None:
        """Bounces, complaints, deliveries, rejects, rendering failures and delays (opens and
        clicks with tracking) to the topic. Event types someone added are kept."""
        name = self.names.configuration_set
        wanted = set(EVENTS) | (set(TRACKING) if self.tracking else set())
        answer = self.account.find("sesv2", "get_configuration_set_event_destinations",
                                   ConfigurationSetName=name)
        found = next((d for d in (answer or {}).get("EventDestinations", [])
                      if d.get("Name") == DESTINATION), None)
        what = f"event destination {DESTINATION} of {name}"
        wanted_types = sorted(wanted | set(found.get("MatchingEventTypes", []) if found else []))
        destination = {"Enabled": True, "MatchingEventTypes": wanted_types,
                       "SnsDestination": {"TopicArn": topic_arn}}
        if found is None:
            self.step("create", what, f"{', '.join(wanted_types).lower()} → {topic_arn}")
            operation = "create_configuration_set_event_destination"
        else:
            changes = _destination_changes(found, destination)
            if not changes:
                self.step("exists", what)
                return
            self.step("update", what, "; ".join(changes))
            operation = "update_configuration_set_event_destination"
        if not self.dry_run:
            self.account.call("sesv2", operation, ConfigurationSetName=name,
                              EventDestinationName=DESTINATION, EventDestination=destination)

    def webhook(self, topic_arn: str) -> None:
        """``base_url/webhooks/ses`` subscribed to the topic, without raw message delivery
        (the webhook checks SNS's signature, which a raw message does not carry)."""
        url = self.names.webhook
        subscription = find_subscription(self.account, topic_arn, url)
        what = f"subscription of {url}"
        protocol = url.partition(":")[0]
        if subscription is None or subscription.get("PendingConfirmation") == "true":
            pending = subscription is not None
            self.step("update" if pending else "create", what,
                      "asked SNS to send the confirmation again" if pending else
                      "`newsletter serve` confirms it once the topic is in sns_topic_arns")
            if not self.dry_run:
                self.account.call("sns", "subscribe", TopicArn=topic_arn, Protocol=protocol,
                                  Endpoint=url, ReturnSubscriptionArn=True)
            return
        if subscription.get("RawMessageDelivery") == "true":
            self.step("update", what, "raw message delivery turned off: the webhook needs "
                      "SNS's signed envelope")
            if not self.dry_run:
                self.account.call("sns", "set_subscription_attributes",
                                  SubscriptionArn=subscription["SubscriptionArn"],
                                  AttributeName="RawMessageDelivery", AttributeValue="false")
            return
        self.step("exists", what, "confirmed")

    def queue(self, topic_arn: str) -> None:
        """An SQS queue subscribed to the topic, with a dead-letter queue for what cannot be
        applied, and a policy letting the topic (only) send to it."""
        dead_arn = self.ensure_queue(self.names.dead_letter_queue, {
            "MessageRetentionPeriod": str(DEAD_LETTER_RETENTION)})
        queue_arn = self.account.arn("sqs", self.names.queue)
        self.ensure_queue(self.names.queue, {
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn,
                                         "maxReceiveCount": str(DEAD_LETTER_RECEIVES)}),
            "Policy": with_statement(None, queue_statement(queue_arn, topic_arn))})
        subscription = find_subscription(self.account, topic_arn, queue_arn)
        what = f"subscription of the queue {self.names.queue}"
        if subscription is not None:
            self.step("exists", what)
            return
        self.step("create", what)
        if not self.dry_run:
            self.account.call("sns", "subscribe", TopicArn=topic_arn, Protocol="sqs",
                              Endpoint=queue_arn, ReturnSubscriptionArn=True)

    def ensure_queue(self, name: str, attributes: dict[str, str]) -> str:
        """The queue's ARN; created with ``attributes``, or the missing ones set."""
        arn = self.account.arn("sqs", name)
        found = self.account.find("sqs", "get_queue_url", QueueName=name)
        if found is None:
            self.step("create", f"SQS queue {name}")
            if not self.dry_run:
                self.account.call("sqs", "create_queue", QueueName=name, Attributes=attributes,
                                  tags=self.names.tag_map)
            return arn
        current = self.account.call("sqs", "get_queue_attributes", QueueUrl=found["QueueUrl"],
                                    AttributeNames=["All"])["Attributes"]
        missing = {key: value for key, value in attributes.items()
                   if not _queue_attribute_ok(key, current.get(key))}
        if not missing:
            self.step("exists", f"SQS queue {name}")
            return arn
        if "Policy" in missing and current.get("Policy"):  # keep what else it allows
            missing["Policy"] = with_statement(current["Policy"],
                                               json.loads(missing["Policy"])["Statement"][0])
        self.step("update", f"SQS queue {name}", f"set {', '.join(sorted(missing))}")
        if not self.dry_run:
            self.account.call("sqs", "set_queue_attributes", QueueUrl=found["QueueUrl"],
                              Attributes=missing)
        return arn

    # ------------------------------------------------------------ helpers

    def step(self, action: Action, what: str, detail: str = "") -> None:
        step = Step(action, what, detail)
        self.outcome.steps.append(step)
        if self.on_step:
            self.on_step(step)

    def settings_needed(self, topic_arn: str) -> dict[str, Any]:
        """The [newsletter] keys whose value must change for what was set up to be used."""
        needed: dict[str, Any] = {}
        if self.settings.ses_configuration_set != self.names.configuration_set:
            needed["ses_configuration_set"] = self.names.configuration_set
        if topic_arn not in self.settings.sns_topic_arns:
            needed["sns_topic_arns"] = [*self.settings.sns_topic_arns, topic_arn]
        if self.route in ("queue", "both"):
            url = self.queue_url()
            if self.settings.sqs_queue_url != url:
                needed["sqs_queue_url"] = url
        return needed

    def queue_url(self) -> str:
        found = (None if self.dry_run else
                 self.account.find("sqs", "get_queue_url", QueueName=self.names.queue))
        if found:
            return str(found["QueueUrl"])
        return (f"https://sqs.{self.account.region}.amazonaws.com/{self.account.id}/"
                f"{self.names.queue}")


def _destination_changes(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    changes = []
    if not found.get("Enabled"):
        changes.append("enabled")
    missing = set(wanted["MatchingEventTypes"]) - set(found.get("MatchingEventTypes", []))
    if missing:
        changes.append(f"publishes {', '.join(sorted(missing)).lower()} too")
    topic = found.get("SnsDestination", {}).get("TopicArn")
    if topic != wanted["SnsDestination"]["TopicArn"]:
        changes.append(f"to {wanted['SnsDestination']['TopicArn']} instead of {topic or 'none'}")
    return changes


def _queue_attribute_ok(key: str, current: str | None) -> bool:
    if current is None:
        return False
    if key == "Policy":
        return allows(current, "sns.amazonaws.com", "sqs:SendMessage")
    if key == "RedrivePolicy":
        return "deadLetterTargetArn" in current
    return True  # MessageRetentionPeriod: whatever the owner chose
