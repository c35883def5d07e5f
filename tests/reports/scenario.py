"""A sent issue with real SES event payloads, built through the library's own paths.

Thirteen subscribers on four domains are planned; ten messages are sent, one fails, one gets
no answer (``unknown``) and one reader leaves before their turn (``skipped``). SES then reports,
in the payload shapes of tests/events/fixtures (event publishing, and one identity
notification), applied through ``newsletter.feedback.events.ingest``:

    reader                       events
    g1@gmail.com                 delivered, opened twice, clicked A twice, clicked B
    g2@gmail.com                 delivered, opened, clicked A
    g3@gmail.com                 delivered, complained
    g4@gmail.com                 hard bounce
    o1@example.org               delivered, opened
    o2@example.org               soft bounce
    o3@example.org               delivered (then unsubscribes from the issue)
    m1@outlook.com               delivered, opened, clicked B
    m2@outlook.com               hard bounce
    e1@example.gr                delivered (identity notification)

The send's clock is set to fixed instants (planned 09:30:00 UTC on 15 April 2025, one message
settled every 20 s from 09:30:10), so every figure of the report is known in advance.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update

from newsletter.config import Settings
from newsletter.feedback.events import ingest
from newsletter.store import Status, Store
from newsletter.store.ledger import Delivery, Ledger, Outcome, Send

ISSUE = "2025-04-asit-highlights"
FIXTURES = Path(__file__).resolve().parents[1] / "events" / "fixtures"
PLANNED_AT = dt.datetime(2025, 4, 15, 9, 30, tzinfo=dt.UTC)
LINK_A = "https://asit-project.eu/news/twinning-visit-vilnius"
LINK_B = "https://asit-project.eu/training/2025-handbook"
SENT = ["g1@gmail.com", "g2@gmail.com", "g3@gmail.com", "g4@gmail.com", "o1@example.org",
        "o2@example.org", "o3@example.org", "m1@outlook.com", "m2@outlook.com",
        "e1@example.gr"]
FAILED, UNKNOWN, SKIPPED = "f1@example.org", "u1@gmail.com", "s1@example.org"
FAILURE = "554 Message rejected: Email address is not verified."
NO_ANSWER = "no answer from the provider within 30 s"


def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return PLANNED_AT.replace(hour=hour, minute=minute, second=second)


# (recipient, fixture, when, link or None): the SES events of the scenario.
EVENTS = [
    ("g1@gmail.com", "event/delivery", at(9, 30, 12), None),
    ("g2@gmail.com", "event/delivery", at(9, 30, 32), None),
    ("g3@gmail.com", "event/delivery", at(9, 30, 52), None),
    ("o1@example.org", "event/delivery", at(9, 31, 40), None),
    ("o3@example.org", "event/delivery", at(9, 32, 20), None),
    ("m1@outlook.com", "event/delivery", at(9, 32, 40), None),
    ("e1@example.gr", "identity/delivery", at(9, 33, 20), None),
    ("g4@gmail.com", "event/bounce-permanent", at(9, 31, 15), None),
    ("m2@outlook.com", "event/bounce-permanent", at(9, 33, 5), None),
    ("o2@example.org", "event/bounce-transient", at(11, 40), None),
    ("g3@gmail.com", "event/complaint", at(10, 15), None),
    ("g1@gmail.com", "event/open", at(10, 5), None),
    ("g1@gmail.com", "event/open", at(12, 50), None),
    ("g2@gmail.com", "event/open", at(10, 40), None),
    ("o1@example.org", "event/open", at(11, 2), None),
    ("m1@outlook.com", "event/open", at(13, 15), None),
    ("g1@gmail.com", "event/click", at(10, 6), LINK_A),
    ("g1@gmail.com", "event/click", at(12, 51), LINK_A),
    ("g1@gmail.com", "event/click", at(12, 52), LINK_B),
    ("g2@gmail.com", "event/click", at(10, 41), LINK_A),
    ("m1@outlook.com", "event/click", at(13, 16), LINK_B),
]


@dataclass(frozen=True)
class Scenario:
    message_ids: dict[str, str]  # recipient -> SES message id
    subscriber_ids: dict[str, int]


def build(store: Store, settings: Settings) -> Scenario:
    """Plan, 'send' and report on ISSUE as described in the module docstring."""
    everyone = [*SENT, FAILED, UNKNOWN, SKIPPED]
    ids = {email: store.add(email, status=Status.ACTIVE, source="cli").id for email in everyone}
    ledger = Ledger(store)
    ledger.plan(ISSUE, "ASIT highlights: April 2025", "0" * 64)
    store.set_status(ids[SKIPPED], Status.UNSUBSCRIBED, reason="unsubscribe link")
    sender = ledger.register_sender()
    claims, skipped = ledger.claim(ISSUE, sender, 100)
    assert skipped == 1 and len(claims) == 12
    message_ids = {c.email: f"0102018f{uuid.uuid4().hex[:24]}-000000" for c in claims}
    ledger.record([_outcome(c.delivery_id, c.email, message_ids[c.email]) for c in claims])
    ledger.unregister_sender(sender)
    _set_the_clock(store, {c.delivery_id: c.email for c in claims})
    tally = ingest("\n".join(json.dumps(_payload(email, message_ids[email], name, when, link))
                             for email, name, when, link in EVENTS), settings, store)
    assert (tally.applied, tally.malformed) == (len(EVENTS), 0), str(tally)
    store.unsubscribe([(ids["o3@example.org"], "unsubscribe link", ISSUE)])
    return Scenario(message_ids, ids)


def _outcome(delivery_id: int, email: str, message_id: str) -> Outcome:
    if email == FAILED:
        return Outcome(delivery_id, "failed", error=FAILURE, attempts=1)
    if email == UNKNOWN:
        return Outcome(delivery_id, "unknown", error=NO_ANSWER, attempts=1)
    return Outcome(delivery_id, "sent", message_id=message_id, attempts=1)


def _set_the_clock(store: Store, emails: dict[int, str]) -> None:
    """Planned at PLANNED_AT, the leaver skipped at 09:30:05, the n-th message of SENT (then
    FAILED, UNKNOWN) settled at 09:30:10 + 20 n seconds."""
    order = [*SENT, FAILED, UNKNOWN]
    with store.writer.begin() as connection:
        connection.execute(update(Send).where(Send.issue == ISSUE).values(created_at=PLANNED_AT))
        connection.execute(update(Delivery).where(
            Delivery.issue == ISSUE, Delivery.status == "skipped").values(
            finished_at=PLANNED_AT + dt.timedelta(seconds=5)))
        for delivery_id, email in emails.items():
            settled = PLANNED_AT + dt.timedelta(seconds=10 + 20 * order.index(email))
            connection.execute(update(Delivery).where(Delivery.id == delivery_id).values(
                claimed_at=settled - dt.timedelta(seconds=1), finished_at=settled))


def ses_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _payload(email: str, message_id: str, name: str, when: dt.datetime,
             link: str | None) -> dict[str, Any]:
    """A fixture payload about ``message_id`` to ``email``, happening at ``when``."""
    document: dict[str, Any] = copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))
    mail = document["mail"]
    mail["messageId"], mail["destination"] = message_id, [email]
    mail["timestamp"] = ses_time(PLANNED_AT)
    if "commonHeaders" in mail:
        mail["commonHeaders"]["messageId"], mail["commonHeaders"]["to"] = message_id, [email]
    body = document[{"Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery",
                     "Open": "open", "Click": "click"}[document.get("eventType")
                                                       or document["notificationType"]]]
    body["timestamp"] = ses_time(when)
    if "feedbackId" in body:
        body["feedbackId"] = f"0102018f{uuid.uuid4().hex[:24]}-000000"
    for key in ("bouncedRecipients", "complainedRecipients"):
        if key in body:
            body[key][0]["emailAddress"] = email
    if link is not None:
        body["link"] = link
    return document
