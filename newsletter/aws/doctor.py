"""``newsletter ses doctor``: every piece a newsletter needs at AWS and in DNS, checked, with
the fix for each one that is wrong. Read-only: it only calls Get/List operations.

The order follows the mail's path: who we are, the identity and its DKIM, the account's
standing, the configuration set, the event destination and its topic, the way events reach us
(webhook subscription or SQS queue), then DNS. A check that cannot run (a refused call, a
missing resource further up) fails with what it could not read, never with a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

from newsletter.aws import dns
from newsletter.aws.account import Account, AwsError, find_subscription
from newsletter.aws.checks import FAIL, OK, WARN, Check
from newsletter.aws.policies import allows
from newsletter.aws.resources import ESSENTIAL, TRACKING, Names
from newsletter.config import Settings
from newsletter.errors import ConfigError

SETUP = "run `newsletter ses setup`"
QUOTA_WARNING = 0.9  # of the 24-hour quota used


def diagnose(settings: Settings, *, account: Account | None = None,
             resolver: Any = None) -> list[Check]:
    """Every check, in order. ``resolver`` is dnspython's (the system's by default)."""
    try:
        account = account or Account()
        caller = account.caller
    except (ConfigError, AwsError) as error:
        return [Check("credentials", FAIL, str(error),
                      "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and "
                      "AWS_REGION, as for sending")]
    doctor = _Doctor(account, settings)
    checks = [Check("credentials", OK, f"account {caller['Account']} as {caller['Arn']}, "
                    f"region {account.region}")]
    checks += doctor.run()
    checks += dns.check_dns(doctor.names.domain, dkim_tokens=doctor.dkim_tokens,
                            mail_from_domain=doctor.mail_from_domain, region=account.region,
                            resolver=resolver or dns.make_resolver())
    return checks


class _Doctor:
    def __init__(self, account: Account, settings: Settings):
        self.account, self.settings = account, settings
        self.names = Names.of(settings)

    def run(self) -> list[Check]:
        checks: list[Check] = []
        for check in (self.identity, self.dkim, self.mail_from, self.production_access,
                      self.sending, self.quota, self.suppression_list,
                      self.configuration_set, self.event_destination, self.topic_allowed,
                      self.topic_policy, *self.routes()):
            checks.extend(_guarded(check))
        return checks

    # ------------------------------------------------------------ what AWS holds

    @cached_property
    def domain_identity(self) -> dict[str, Any] | None:
        return self.account.find("sesv2", "get_email_identity", EmailIdentity=self.names.domain)

    @cached_property
    def address_identity(self) -> dict[str, Any] | None:
        return self.account.find("sesv2", "get_email_identity", EmailIdentity=self.names.sender)

    @cached_property
    def account_details(self) -> dict[str, Any]:
        return dict(self.account.call("sesv2", "get_account"))

    @cached_property
    def configuration_set_details(self) -> dict[str, Any] | None:
        name = self.settings.ses_configuration_set
        if not name:
            return None
        return self.account.find("sesv2", "get_configuration_set", ConfigurationSetName=name)

    @cached_property
    def destination(self) -> dict[str, Any] | None:
        """The configuration set's SNS event destination publishing bounces and complaints
        (enabled ones first), or any SNS destination, or None."""
        if not self.configuration_set_details:
            return None
        answer = self.account.call("sesv2", "get_configuration_set_event_destinations",
                                   ConfigurationSetName=self.settings.ses_configuration_set)
        sns = [d for d in answer.get("EventDestinations", []) if d.get("SnsDestination")]
        sns.sort(key=lambda d: (not d.get("Enabled"),
                                not set(ESSENTIAL) <= set(d.get("MatchingEventTypes", []))))
        return sns[0] if sns else None

    @property
    def topic_arn(self) -> str | None:
        return (self.destination or {}).get("SnsDestination", {}).get("TopicArn")

    @property
    def dkim_tokens(self) -> list[str]:
        return list((self.domain_identity or {}).get("DkimAttributes", {}).get("Tokens", []))

    @property
    def mail_from_domain(self) -> str | None:
        attributes = (self.domain_identity or {}).get("MailFromAttributes", {})
        return attributes.get("MailFromDomain") or None

    # ------------------------------------------------------------ the checks

    def identity(self) -> Check:
        domain, address = self.names.domain, self.names.sender
        if self.domain_identity and self.domain_identity.get("VerifiedForSendingStatus"):
            return Check("identity", OK, f"domain {domain} is verified")
        if self.domain_identity:
            return Check("identity", FAIL, f"domain {domain} is not verified (SES says "
                         f"{self.domain_identity.get('VerificationStatus', 'PENDING')})",
                         "publish the DKIM records (`newsletter ses setup` prints them); SES "
                         "verifies the domain once it finds them, usually within an hour")
        if self.address_identity and self.address_identity.get("VerifiedForSendingStatus"):
            return Check("identity", WARN, f"only the address {address} is verified, not the "
                         f"domain {domain}: mail is signed by amazonses.com, not by you",
                         f"{SETUP} to add the domain with Easy DKIM")
        return Check("identity", FAIL, f"SES has no identity for {domain} or {address}: it "
                     "refuses to send from them", SETUP)

    def dkim(self) -> Check:
        if not self.domain_identity:
            return Check("dkim", FAIL, f"no DKIM: {self.names.domain} is not an SES identity",
                         SETUP)
        attributes = self.domain_identity.get("DkimAttributes", {})
        status = attributes.get("Status", "NOT_STARTED")
        if not attributes.get("SigningEnabled"):
            return Check("dkim", FAIL, "DKIM signing is turned off: mail fails DMARC",
                         "aws sesv2 put-email-identity-dkim-attributes --email-identity "
                         f"{self.names.domain} --signing-enabled")
        if status == "SUCCESS":
            origin = attributes.get("SigningAttributesOrigin", "AWS_SES")
            kind = "Easy DKIM" if origin == "AWS_SES" else "your own DKIM key"
            return Check("dkim", OK, f"SES signs mail from {self.names.domain} ({kind})")
        return Check("dkim", FAIL, f"DKIM is {status.lower().replace('_', ' ')}: SES has not "
                     "found the DKIM records yet", "publish the DKIM CNAME records "
                     "(`newsletter ses setup` prints them), then wait for SES to see them")

    def mail_from(self) -> Check:
        attributes = (self.domain_identity or {}).get("MailFromAttributes", {})
        domain = attributes.get("MailFromDomain")
        if not domain:
            return Check("mail-from", WARN, "no custom MAIL FROM domain: SPF passes for "
                         "amazonses.com, not for your domain (optional; DKIM carries DMARC)",
                         f"{SETUP} (it sets {self.names.mail_from})")
        status = attributes.get("MailFromDomainStatus", "PENDING")
        if status == "SUCCESS":
            return Check("mail-from", OK, f"MAIL FROM domain {domain}")
        fallback = attributes.get("BehaviorOnMxFailure") != "REJECT_MESSAGE"
        return Check("mail-from", WARN if fallback else FAIL,
                     f"MAIL FROM domain {domain} is {status.lower().replace('_', ' ')}"
                     + (": SES uses amazonses.com meanwhile" if fallback else
                        ": SES refuses to send until its MX record is found"),
                     f"publish the MX and SPF records of {domain} (`newsletter ses setup` "
                     "prints them)")

    def production_access(self) -> Check:
        if self.account_details.get("ProductionAccessEnabled"):
            return Check("production-access", OK, "out of the sandbox")
        return Check("production-access", FAIL, "the account is in the SES sandbox: it only "
                     "mails verified addresses, 200 a day",
                     "request production access: SES console → Account dashboard → Request "
                     "production access (or `aws sesv2 put-account-details`)")

    def sending(self) -> Check:
        details = self.account_details
        enforcement = details.get("EnforcementStatus", "HEALTHY")
        if not details.get("SendingEnabled", True) or enforcement == "SHUTDOWN":
            return Check("sending", FAIL, f"sending is paused for the account ({enforcement})",
                         "see the SES console's reputation metrics and the message from AWS")
        if enforcement == "PROBATION":
            return Check("sending", WARN, "the account is under review (PROBATION): bounces or "
                         "complaints were too high", "see `newsletter report`; fix the list "
                         "before the next send")
        return Check("sending", OK, f"sending enabled ({enforcement.lower()})")

    def quota(self) -> Check:
        quota = self.account_details.get("SendQuota", {})
        rate, daily = quota.get("MaxSendRate", 0), quota.get("Max24HourSend", 0)
        used = quota.get("SentLast24Hours", 0)
        message = f"up to {rate:g} messages/s, {daily:,.0f} a day; {used:,.0f} sent in 24 h"
        if daily and used >= QUOTA_WARNING * daily:
            return Check("quota", WARN, message + ": nearly all of today's quota",
                         "wait, or ask AWS for a higher quota (Service Quotas console)")
        if self.settings.rate and rate and self.settings.rate > rate:
            return Check("quota", WARN, message + f"; rate = {self.settings.rate:g} in "
                         "newsletter.toml is above it: SES would throttle",
                         f"set rate to at most {rate:g}, or leave it unset")
        return Check("quota", OK, message)

    def suppression_list(self) -> Check:
        reasons = set(self.account_details.get("SuppressionAttributes", {})
                      .get("SuppressedReasons", []))
        if {"BOUNCE", "COMPLAINT"} <= reasons:
            return Check("suppression-list", OK, "SES's account suppression list holds "
                         "bounces and complaints too")
        return Check("suppression-list", WARN, "SES's account suppression list is off for "
                     f"{', '.join(sorted({'BOUNCE', 'COMPLAINT'} - reasons)).lower()}: only "
                     "this newsletter's list protects the account",
                     "aws sesv2 put-account-suppression-attributes --suppressed-reasons "
                     "BOUNCE COMPLAINT")

    def configuration_set(self) -> Check:
        name = self.settings.ses_configuration_set
        if not name:
            return Check("configuration-set", FAIL, "no ses_configuration_set in "
                         "newsletter.toml: SES publishes no bounces or complaints to us", SETUP)
        details = self.configuration_set_details
        if details is None:
            return Check("configuration-set", FAIL, f"configuration set {name} does not exist: "
                         "SES refuses every message sent through it", SETUP)
        if not details.get("SendingOptions", {}).get("SendingEnabled", True):
            return Check("configuration-set", FAIL, f"sending is paused for {name}",
                         f"aws sesv2 put-configuration-set-sending-options "
                         f"--configuration-set-name {name} --sending-enabled")
        return Check("configuration-set", OK, f"configuration set {name}")

    def event_destination(self) -> Check:
        if not self.configuration_set_details:
            return Check("event-destination", FAIL, "no configuration set to publish events",
                         SETUP)
        found = self.destination
        if found is None:
            return Check("event-destination", FAIL, "the configuration set publishes no events "
                         "to SNS: bounces and complaints never reach the list", SETUP)
        types = set(found.get("MatchingEventTypes", []))
        name = found.get("Name", "")
        if not found.get("Enabled"):
            return Check("event-destination", FAIL, f"event destination {name} is disabled",
                         SETUP)
        missing = sorted(set(ESSENTIAL) - types)
        if missing:
            return Check("event-destination", FAIL, f"event destination {name} does not "
                         f"publish {', '.join(missing).lower()}", SETUP)
        tracked = set(TRACKING) <= types
        return Check("event-destination", OK, f"{name} publishes "
                     f"{', '.join(sorted(types)).lower()} to {self.topic_arn}"
                     + ("" if tracked else "; opens and clicks are not tracked "
                        "(`newsletter ses setup --tracking` turns them on)"))

    def topic_allowed(self) -> Check:
        if not self.topic_arn:
            return Check("topic-allowed", FAIL, "no SNS topic receives the events", SETUP)
        if self.topic_arn in self.settings.sns_topic_arns:
            return Check("topic-allowed", OK, "the events' topic is in sns_topic_arns")
        return Check("topic-allowed", FAIL, f"{self.topic_arn} is not in sns_topic_arns: the "
                     "webhook refuses its messages, confirmation included",
                     f'add it to newsletter.toml: sns_topic_arns = ["{self.topic_arn}"]')

    def topic_policy(self) -> Check:
        if not self.topic_arn:
            return Check("topic-policy", FAIL, "no SNS topic receives the events", SETUP)
        found = self.account.find("sns", "get_topic_attributes", TopicArn=self.topic_arn)
        if found is None:
            return Check("topic-policy", FAIL, f"topic {self.topic_arn} does not exist", SETUP)
        if allows(found["Attributes"].get("Policy"), "ses.amazonaws.com", "SNS:Publish"):
            return Check("topic-policy", OK, "the topic's policy lets SES publish")
        return Check("topic-policy", FAIL, "the topic's policy does not let SES publish: "
                     "events are dropped", SETUP)

    def routes(self) -> Iterator[Callable[[], Check]]:
        """The webhook's subscription unless only a queue is used, then the queue's checks."""
        queue = bool(self.settings.sqs_queue_url)
        if not queue or self.webhook_subscription is not None:
            yield self.subscription
        if queue:
            yield self.queue
            yield self.dead_letter_queue

    @cached_property
    def webhook_subscription(self) -> dict[str, str] | None:
        if not self.topic_arn:
            return None
        return find_subscription(self.account, self.topic_arn, self.names.webhook)

    def subscription(self) -> Check:
        url = self.names.webhook
        found = self.webhook_subscription
        if found is None:
            return Check("subscription", FAIL, f"{url} is not subscribed to the topic: events "
                         "reach no one", f"{SETUP} (or set sqs_queue_url and use "
                         "`--events queue`)")
        if found.get("PendingConfirmation") == "true":
            return Check("subscription", FAIL, f"the subscription of {url} is not confirmed",
                         "run `newsletter serve` where that URL reaches it, with the topic in "
                         f"sns_topic_arns, then {SETUP} to have SNS send the confirmation again")
        if found.get("RawMessageDelivery") == "true":
            return Check("subscription", FAIL, f"raw message delivery is on for {url}: the "
                         "webhook needs SNS's signed envelope and refuses every message",
                         f"{SETUP}, or turn off raw message delivery on the subscription")
        if not url.startswith("https://"):
            return Check("subscription", WARN, f"{url} is confirmed, but over plain HTTP",
                         "serve the site over HTTPS and set base_url to it")
        return Check("subscription", OK, f"{url} is subscribed and confirmed")

    @cached_property
    def queue_attributes(self) -> dict[str, str] | None:
        answer = self.account.find("sqs", "get_queue_attributes",
                                   QueueUrl=self.settings.sqs_queue_url, AttributeNames=["All"])
        return None if answer is None else dict(answer.get("Attributes", {}))

    def queue(self) -> Check:
        url = self.settings.sqs_queue_url
        attributes = self.queue_attributes
        if attributes is None:
            return Check("queue", FAIL, f"no SQS queue at {url}", f"{SETUP} --events queue")
        if not allows(attributes.get("Policy"), "sns.amazonaws.com", "sqs:SendMessage"):
            return Check("queue", FAIL, "the queue's policy does not let the topic send to it",
                         f"{SETUP} --events queue")
        found = self.topic_arn and find_subscription(self.account, self.topic_arn,
                                                     attributes.get("QueueArn", ""))
        if not found:
            return Check("queue", FAIL, "the queue is not subscribed to the events' topic",
                         f"{SETUP} --events queue")
        return Check("queue", OK, f"{url} receives the events (`newsletter events poll`)")

    def dead_letter_queue(self) -> Check:
        redrive = (self.queue_attributes or {}).get("RedrivePolicy")
        if not redrive:
            return Check("dead-letter-queue", WARN, "the queue has no dead-letter queue: a "
                         "message that cannot be applied comes back forever",
                         f"{SETUP} --events queue")
        target = json.loads(redrive).get("deadLetterTargetArn", "")
        return Check("dead-letter-queue", OK, f"unreadable messages go to {target}")


def _guarded(check: Callable[[], Check]) -> list[Check]:
    """The check, or a failure saying what AWS refused."""
    try:
        return [check()]
    except AwsError as error:
        name = check.__name__.replace("_", "-")
        fix = ("allow it: `newsletter ses policy --setup` prints the policy" if error.denied
               else "try again; if it persists, check the AWS service health page")
        return [Check(name, FAIL, str(error), fix)]
