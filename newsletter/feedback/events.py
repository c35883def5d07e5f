"""SES events → our Event vocabulary → the store. SES words stop here (SNS's stop in sns.py).

SES publishes two shapes. Identity notifications name their type in ``notificationType``
(Bounce, Complaint, Delivery); event publishing through a configuration set names it in
``eventType`` and adds Send, Reject, Open, Click, DeliveryDelay and more. Both carry a ``mail``
object whose ``messageId`` is the id SendEmail returned, which the delivery ledger keeps.
https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html

    SES                                          ours (newsletter.store.events.EventType)
    Bounce, bounceType Permanent                 bounced
    Bounce, bounceType Transient, Undetermined   soft_bounced
    Complaint                                    complained (feedback type "not-spam": unknown)
    Delivery                                     delivered
    Send                                         sent
    Reject                                       rejected
    DeliveryDelay                                delivery_delayed
    Open                                         opened
    Click                                        clicked
    anything else                                unknown (Rendering Failure, Subscription,
                                                 AmazonSnsSubscriptionSucceeded, ...)

Three ways in, one path to the store: ``handle_sns_request`` (the webhook; ``feedback.sns``
proves each message comes from AWS), ``ingest`` (saved notifications or raw events; the operator
vouches for the file) and ``poll_queue`` (SES → SNS → SQS; the queue's access policy vouches
for it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from newsletter.config import Settings
from newsletter.errors import (
    ConfigError,
    EventSourceUnavailable,
    MalformedEvent,
    UntrustedMessage,
)
from newsletter.feedback.sns import (
    NOTIFICATION,
    SIGNED_FIELDS,
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    SnsMessage,
    SnsVerifier,
    load_json,
    parse_message,
    parse_time,
)
from newsletter.store import Store
from newsletter.store.events import Applied, Event, EventLog, EventType
from newsletter.transports.base import ISSUE_TAG

__all__ = ["Applied", "Event", "EventType", "Tally", "apply_document", "handle_sns_request",
           "ingest", "parse_ses_event", "poll_queue", "ses_document"]

logger = logging.getLogger("newsletter.feedback.events")

# The object that details each SES event type, and the types whose meaning needs no detail.
_OBJECTS = {"Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery", "Send": "send",
            "Reject": "reject", "Open": "open", "Click": "click",
            "DeliveryDelay": "deliveryDelay"}
_SIMPLE = {"Delivery": EventType.DELIVERED, "Send": EventType.SENT, "Reject": EventType.REJECTED,
           "Open": EventType.OPENED, "Click": EventType.CLICKED,
           "DeliveryDelay": EventType.DELIVERY_DELAYED}
DETAIL_LENGTH = 500
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")


# ---------------------------------------------------------------- SES → Event


def parse_ses_event(document: object) -> Event:
    """Translate one SES notification or event record (either shape) into an Event.

    Types we do not know become ``unknown``; a known type without the parts every such event
    has (``mail.messageId``, its detail object) is MalformedEvent."""
    if not isinstance(document, dict):
        raise MalformedEvent("an SES event is a JSON object")
    word = document.get("eventType") or document.get("notificationType")
    if not isinstance(word, str):
        raise MalformedEvent("an SES event names its type in eventType or notificationType")
    mail = document.get("mail")
    mail = mail if isinstance(mail, dict) else {}
    message_id = _message_id(mail)
    name = _OBJECTS.get(word)
    if name is None:
        return Event(_key(word, message_id, document), EventType.UNKNOWN, message_id,
                     _occurred({}, mail), {"provider_type": _text(word)})
    body = document.get(name)
    if message_id is None or not isinstance(body, dict):
        raise MalformedEvent(f"SES {word[:20]} event without mail.messageId or its {name}")
    return Event(_key(word, message_id, body), _type(word, body), message_id,
                 _occurred(body, mail), _detail(word, body), _sent_as(mail))


def _type(word: str, body: Mapping[str, Any]) -> EventType:
    if word == "Bounce":
        # Only Permanent means "never again"; Undetermined is counted like Transient.
        # https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html#bounce-types
        permanent = body.get("bounceType") == "Permanent"
        return EventType.BOUNCED if permanent else EventType.SOFT_BOUNCED
    if word == "Complaint":
        # An ARF report of type "not-spam" says the opposite of a complaint (RFC 6650 §7.4).
        not_spam = body.get("complaintFeedbackType") == "not-spam"
        return EventType.UNKNOWN if not_spam else EventType.COMPLAINED
    return _SIMPLE[word]


def _detail(word: str, body: Mapping[str, Any]) -> dict[str, str]:
    """What is worth keeping, in our words: never an address, IP address or user agent."""
    if word == "Bounce":
        recipients = body.get("bouncedRecipients")
        first = recipients[0] if isinstance(recipients, list) and recipients else {}
        first = first if isinstance(first, dict) else {}
        return _clean(bounce_type=body.get("bounceType"), subtype=body.get("bounceSubType"),
                      status=first.get("status"), diagnostic=first.get("diagnosticCode"))
    if word == "Complaint":
        return _clean(feedback_type=body.get("complaintFeedbackType"),
                      subtype=body.get("complaintSubType"))
    if word == "DeliveryDelay":
        return _clean(delay_type=body.get("delayType"), expires_at=body.get("expirationTime"))
    return _clean(smtp_response=body.get("smtpResponse"), reason=body.get("reason"),
                  link=body.get("link"))


def _clean(**values: Any) -> dict[str, str]:
    return {name: _text(value) for name, value in values.items() if isinstance(value, str)}


def _text(value: str) -> str:
    """Provider text as we store it: addresses blanked out (diagnostics quote them), bounded."""
    return _ADDRESS.sub("<address>", value)[:DETAIL_LENGTH]


def _sent_as(mail: Mapping[str, Any]) -> tuple[str, str] | None:
    """(issue tag, recipient) of a message sent to one recipient with our tag (event
    publishing carries ``mail.tags``; identity notifications don't)."""
    tags, destination = mail.get("tags"), mail.get("destination")
    issue = tags.get(ISSUE_TAG) if isinstance(tags, dict) else None
    if not (isinstance(issue, list) and issue and isinstance(destination, list)
            and len(destination) == 1):
        return None
    if isinstance(issue[0], str) and isinstance(destination[0], str):
        return issue[0], destination[0]
    return None


def _message_id(mail: Mapping[str, Any]) -> str | None:
    value = mail.get("messageId")
    return value if isinstance(value, str) and 0 < len(value) <= 200 else None


def _key(word: str, message_id: str | None, body: Mapping[str, Any]) -> str:
    """The same event gets the same key whichever way it came (webhook, queue, file, retry).
    Bounces and complaints carry SES's own unique ``feedbackId``; others hash their content."""
    feedback = body.get("feedbackId")
    identity = feedback if isinstance(feedback, str) else json.dumps(
        body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{word}\0{message_id}\0{identity}".encode()).hexdigest()


def _occurred(body: Mapping[str, Any], mail: Mapping[str, Any]) -> dt.datetime:
    """When it happened: the event's own timestamp, else the message's, else now."""
    for value in (body.get("timestamp"), mail.get("timestamp")):
        moment = parse_time(value) if isinstance(value, str) else None
        if moment is not None:
            return moment
    return dt.datetime.now(dt.UTC)


def ses_document(document: object) -> object | None:
    """The SES event a document holds: the Message of an SNS Notification wrapped around it,
    or the document itself (raw message delivery, saved events). None for SNS's subscription
    messages, which are no events."""
    if not isinstance(document, dict) or "Type" not in document:
        return document
    kind = document.get("Type")
    if kind == NOTIFICATION:
        message = document.get("Message")
        if not isinstance(message, str):
            raise MalformedEvent("SNS Notification without a text Message")
        return load_json(message, "the SNS Message")
    if kind in SIGNED_FIELDS:
        return None
    raise MalformedEvent(f"unknown SNS message type {str(kind)[:40]!r}")


def apply_document(document: object, log: EventLog) -> Applied | None:
    """Apply the SES event a document holds; None when it holds none (ignored)."""
    inner = ses_document(document)
    if inner is None:
        return None
    event = parse_ses_event(inner)
    outcome = log.apply(event)
    logger.info("%s %s event for message %s", outcome, event.type, event.message_id)
    return outcome


# ---------------------------------------------------------------- the webhook


def handle_sns_request(body: bytes, settings: Settings, store: Store, *,
                       verifier: SnsVerifier | None = None) -> tuple[int, str]:
    """Answer an SNS POST to ``/webhooks/ses``: (HTTP status, short text).

    200 applied or ignored · 400 malformed · 403 not verified (signature, topic, certificate
    host, age): nothing changed · 500 our own failure, so that SNS delivers it again."""
    try:
        message = parse_message(body)
        verifier = verifier or SnsVerifier.from_settings(settings)
        verifier.verify(message)
        return 200, _act(message, verifier, settings, store)
    except MalformedEvent as error:
        logger.info("SNS message refused as malformed: %s", error)
        return 400, "malformed"
    except UntrustedMessage as error:
        logger.warning("SNS message refused (%s): %s", error.reason, error)
        return 403, f"refused: {error.reason}"
    except EventSourceUnavailable as error:
        logger.warning("SNS message not handled, SNS will retry: %s", error)
        return 500, "try again later"
    except Exception:
        logger.exception("SNS message not handled, SNS will retry")
        return 500, "internal error"


def _act(message: SnsMessage, verifier: SnsVerifier, settings: Settings, store: Store) -> str:
    if message.type == SUBSCRIPTION_CONFIRMATION:
        verifier.confirm(message)
        logger.info("confirmed the subscription to %s", message.topic_arn)
        return "subscription confirmed"
    if message.type == UNSUBSCRIBE_CONFIRMATION:
        logger.warning("%s no longer sends to us (UnsubscribeConfirmation)", message.topic_arn)
        return "ignored"
    log = EventLog(store, soft_bounce_limit=settings.soft_bounce_limit)
    outcome = apply_document(load_json(message.message, "the SNS Message"), log)
    return str(outcome or "ignored")


# ---------------------------------------------------------------- files and queues


@dataclass
class Tally:
    """What a batch of documents came to, for ``events ingest`` and ``events poll``."""

    applied: int = 0
    unmatched: int = 0
    duplicate: int = 0
    ignored: int = 0
    malformed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.applied + self.unmatched + self.duplicate + self.ignored + self.malformed

    def add(self, outcome: Applied | None) -> None:
        name = "ignored" if outcome is None else str(outcome)
        setattr(self, name, getattr(self, name) + 1)

    def refuse(self, where: str, error: MalformedEvent) -> None:
        self.malformed += 1
        self.problems.append(f"{where}: {error}")

    def __str__(self) -> str:
        return (f"{self.applied} applied, {self.unmatched} unmatched (no such message), "
                f"{self.duplicate} duplicate, {self.ignored} ignored, {self.malformed} malformed")


def ingest(data: bytes | str, settings: Settings, store: Store) -> Tally:
    """Apply every event of a file: saved SNS notifications or raw SES events, as one JSON
    document, a JSON array or JSON lines. Malformed ones are counted; the others still apply."""
    log = EventLog(store, soft_bounce_limit=settings.soft_bounce_limit)
    tally = Tally()
    for where, document in read_documents(data):
        try:
            if isinstance(document, MalformedEvent):
                raise document
            tally.add(apply_document(document, log))
        except MalformedEvent as error:
            tally.refuse(where, error)
    return tally


def read_documents(data: bytes | str) -> Iterator[tuple[str, object]]:
    """(where, document) for each JSON document of a file; a line that is not JSON comes as
    (where, MalformedEvent) so that the lines after it still count."""
    try:
        whole = json.loads(data)
    except (ValueError, RecursionError):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield f"line {number}", json.loads(line)
                except (ValueError, RecursionError) as error:
                    yield f"line {number}", MalformedEvent(f"not JSON: {str(error)[:80]}")
        return
    for number, item in enumerate(whole if isinstance(whole, list) else [whole], 1):
        yield f"document {number}", item


SQS_WAIT = 20  # seconds: the longest long poll SQS allows
SQS_BATCH = 10  # the most messages one ReceiveMessage returns or one DeleteMessageBatch takes
NO_REGION = ("no AWS region for SQS: set AWS_REGION, or use the queue's https://sqs.<region>."
             "amazonaws.com/... URL")
NO_CREDENTIALS = ("no AWS credentials for SQS: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY, or run with an instance role")


def poll_queue(settings: Settings, store: Store, queue_url: str | None = None, *,
               once: bool = False, max_messages: int | None = None, wait: int = SQS_WAIT,
               client: Any = None, tally: Tally | None = None,
               on_batch: Callable[[Tally], None] | None = None) -> Tally:
    """Long-poll an SQS queue fed by the SES topic and apply its events.

    A message is deleted only once its event is applied (or recognised as a duplicate or as no
    event); a malformed one is logged and left, so the queue's redrive policy moves it to a
    dead-letter queue. A failure of ours (the database) stops the poll with the message kept."""
    url = queue_url or settings.sqs_queue_url
    if not url:
        raise ConfigError("no SQS queue: set sqs_queue_url in newsletter.toml or pass --queue-url")
    sqs = client or sqs_client(url)
    log = EventLog(store, soft_bounce_limit=settings.soft_bounce_limit)
    tally = tally if tally is not None else Tally()
    while max_messages is None or tally.total < max_messages:
        room = SQS_BATCH if max_messages is None else min(SQS_BATCH, max_messages - tally.total)
        with _sqs_errors("cannot receive from the SQS queue"):
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=room,
                                           WaitTimeSeconds=wait).get("Messages", [])
        _delete(sqs, url, [m["ReceiptHandle"] for m in messages if _applied(m, log, tally)])
        if messages and on_batch:
            on_batch(tally)
        if once:
            break
    return tally


def _applied(message: Mapping[str, Any], log: EventLog, tally: Tally) -> bool:
    """Apply one SQS message (raw SES event or SNS-wrapped); True if it can be deleted."""
    try:
        tally.add(apply_document(load_json(message.get("Body", ""), "the SQS message"), log))
    except MalformedEvent as error:
        where = f"SQS message {message.get('MessageId')}"
        logger.warning("%s left on the queue for its redrive policy: %s", where, error)
        tally.refuse(where, error)
        return False
    return True


def _delete(sqs: Any, url: str, handles: list[str]) -> None:
    for start in range(0, len(handles), SQS_BATCH):
        entries = [{"Id": str(n), "ReceiptHandle": handle}
                   for n, handle in enumerate(handles[start:start + SQS_BATCH])]
        with _sqs_errors("cannot delete applied messages from the SQS queue"):
            answer = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        for failure in answer.get("Failed", []):
            # It comes back after its visibility timeout and is then a harmless duplicate.
            logger.warning("SQS did not delete an applied message: %s", failure.get("Message"))


def sqs_client(queue_url: str) -> Any:
    """An SQS client from boto3's own chain; the region from AWS_REGION, else the queue URL's."""
    import boto3  # only the poller needs boto3: the web app never imports it
    from botocore.exceptions import BotoCoreError

    named = re.match(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com", queue_url)
    region = os.environ.get("AWS_REGION") or (named.group(1) if named else None)
    try:
        session = boto3.session.Session(region_name=region)
        if not session.region_name:
            raise ConfigError(NO_REGION)
        if session.get_credentials() is None:
            raise ConfigError(NO_CREDENTIALS)
        return session.client("sqs")
    except BotoCoreError as error:
        raise ConfigError(f"AWS configuration for SQS: {error}") from None


@contextmanager
def _sqs_errors(what: str) -> Iterator[None]:
    """botocore's errors, where SQS is concerned, as ours."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as error:
        raise EventSourceUnavailable(f"{what}: {error}") from error
