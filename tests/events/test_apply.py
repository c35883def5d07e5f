"""Events applied to the store (SQLite and PostgreSQL): what each one does to a subscriber, once."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from newsletter.errors import DatabaseError
from newsletter.feedback.events import Applied, Event, EventType, parse_ses_event
from newsletter.store import Status, Store, Subscriber
from newsletter.store.events import EventLog, EventRecord
from newsletter.store.ledger import Delivery
from tests.events.conftest import ISSUE, READERS, Recipient, send_issue, ses, sns_time

ANA, JAN, MARIA, ELENI = READERS


def apply(store: Store, name: str, recipient: Recipient, limit: int = 3,
          **changes: Any) -> Applied:
    document = ses(name, recipient.message_id)
    for path, value in changes.items():
        section, key = path.split("__")
        document[section][key] = value
    return EventLog(store, soft_bounce_limit=limit).apply(parse_ses_event(document))


def soon(minutes: int) -> str:
    """An SES time ``minutes`` from now: soft bounces count from when the subscriber joined."""
    return sns_time(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes))


def status_of(store: Store, email: str) -> Status:
    found = store.get_by_email(email)
    assert found is not None
    return found.status


def rows(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        return list(connection.execute(select(EventRecord).order_by(EventRecord.id)))


@pytest.mark.parametrize("shape", ["identity", "event"])
def test_a_permanent_bounce_suppresses_the_subscriber(store: Store,
                                                      sent: dict[str, Recipient],
                                                      shape: str) -> None:
    assert apply(store, f"{shape}/bounce-permanent", sent[ANA]) is Applied.APPLIED
    ana = store.get_by_email(ANA)
    assert ana is not None and ana.status is Status.BOUNCED
    assert ana.status_reason == "hard bounce" and ana.status_issue == ISSUE
    assert ana.unsubscribed_at is not None and store.is_suppressed(ANA)
    assert status_of(store, JAN) is Status.ACTIVE


@pytest.mark.parametrize("shape", ["identity", "event"])
def test_a_complaint_suppresses_the_subscriber(store: Store, sent: dict[str, Recipient],
                                               shape: str) -> None:
    apply(store, f"{shape}/complaint", sent[MARIA])
    maria = store.get_by_email(MARIA)
    assert maria is not None and maria.status is Status.COMPLAINED
    assert maria.status_reason == "spam complaint"


@pytest.mark.parametrize("name", ["identity/delivery", "event/delivery", "event/send",
                                  "event/open", "event/click", "event/reject",
                                  "event/delivery-delay", "event/rendering-failure",
                                  "event/subscription"])
def test_other_events_are_recorded_against_the_delivery_only(
        store: Store, sent: dict[str, Recipient], name: str) -> None:
    assert apply(store, name, sent[ELENI]) is Applied.APPLIED
    assert status_of(store, ELENI) is Status.ACTIVE
    [row] = rows(store)
    assert row.message_id == sent[ELENI].message_id and row.issue == ISSUE
    assert row.subscriber_id == sent[ELENI].subscriber_id and row.delivery_id


def test_soft_bounces_suppress_after_the_limit(store: Store, sent: dict[str, Recipient]) -> None:
    later = {issue: send_issue(store, [JAN], issue)[JAN] for issue in ("2025-05-a", "2025-06-b")}
    apply(store, "identity/bounce-transient", sent[JAN], bounce__timestamp=soon(1))
    apply(store, "event/bounce-transient", later["2025-05-a"], bounce__timestamp=soon(2))
    assert status_of(store, JAN) is Status.ACTIVE
    apply(store, "identity/bounce-transient", later["2025-06-b"],
          bounce__feedbackId="third", bounce__timestamp=soon(3))
    jan = store.get_by_email(JAN)
    assert jan is not None and jan.status is Status.BOUNCED
    assert jan.status_reason == "3 soft bounces in a row" and jan.status_issue == "2025-06-b"


def test_soft_bounces_of_one_message_count_once(store: Store,
                                                sent: dict[str, Recipient]) -> None:
    for n in range(3):
        apply(store, "identity/bounce-transient", sent[JAN], limit=2,
              bounce__feedbackId=f"retry-{n}", bounce__timestamp=soon(n))
    assert status_of(store, JAN) is Status.ACTIVE


def test_a_delivery_forgives_earlier_soft_bounces(store: Store,
                                                  sent: dict[str, Recipient]) -> None:
    second = send_issue(store, [JAN], "2025-05-a")[JAN]
    third = send_issue(store, [JAN], "2025-06-b")[JAN]
    apply(store, "identity/bounce-transient", sent[JAN], limit=2, bounce__timestamp=soon(1))
    apply(store, "identity/delivery", second, limit=2, delivery__timestamp=soon(2))
    apply(store, "identity/bounce-transient", third, limit=2,
          bounce__feedbackId="x", bounce__timestamp=soon(3))
    assert status_of(store, JAN) is Status.ACTIVE
    fourth = send_issue(store, [JAN], "2025-07-c")[JAN]
    apply(store, "identity/bounce-transient", fourth, limit=2,
          bounce__feedbackId="y", bounce__timestamp=soon(4))
    assert status_of(store, JAN) is Status.BOUNCED


def test_soft_bounces_from_before_a_comeback_are_forgotten(
        store: Store, sent: dict[str, Recipient]) -> None:
    apply(store, "identity/bounce-transient", sent[JAN], limit=2, bounce__timestamp=soon(-60))
    second = send_issue(store, [JAN], "2025-05-a")[JAN]
    apply(store, "identity/bounce-transient", second, limit=2, bounce__timestamp=soon(1))
    assert status_of(store, JAN) is Status.ACTIVE


def test_the_same_event_twice_changes_nothing_and_counts_once(
        store: Store, sent: dict[str, Recipient]) -> None:
    for name in ("event/open", "identity/bounce-permanent"):
        recipient = sent[ELENI] if name == "event/open" else sent[ANA]
        assert apply(store, name, recipient) is Applied.APPLIED
        before = store.get_by_email(recipient.email)
        assert apply(store, name, recipient) is Applied.DUPLICATE
        after = store.get_by_email(recipient.email)
        assert before is not None and after is not None
        assert after.status_changed_at == before.status_changed_at
    assert len(rows(store)) == 2
    summary = EventLog(store).summary(ISSUE)
    assert summary["opened"] == 1 and summary["bounced"] == 1


def test_a_subscriber_who_already_left_keeps_their_reason(store: Store,
                                                          sent: dict[str, Recipient]) -> None:
    store.set_status(sent[ANA].subscriber_id, Status.UNSUBSCRIBED, reason="unsubscribe link",
                     issue=ISSUE)
    apply(store, "identity/complaint", sent[ANA])
    ana = store.get_by_email(ANA)
    assert ana is not None and ana.status is Status.UNSUBSCRIBED
    assert ana.status_reason == "unsubscribe link"


def test_an_unknown_message_id_is_recorded_and_harmless(store: Store,
                                                        sent: dict[str, Recipient]) -> None:
    stranger = Recipient(0, "proof@example.org", "0102018f-not-ours-000000")
    assert apply(store, "identity/bounce-permanent", stranger) is Applied.UNMATCHED
    assert apply(store, "identity/bounce-permanent", stranger) is Applied.DUPLICATE
    assert store.counts_by_status()[Status.ACTIVE] == len(READERS)
    [row] = rows(store)
    assert row.delivery_id is None and row.subscriber_id is None and row.issue is None
    assert EventLog(store).summary(ISSUE)["bounced"] == 0


def test_an_erased_subscriber_s_events_resurrect_nothing(store: Store,
                                                         sent: dict[str, Recipient]) -> None:
    apply(store, "event/open", sent[ANA])
    apply(store, "event/click", sent[ANA])
    store.forget(ANA)
    for row in rows(store):  # what is left identifies nobody, and still counts
        assert row.subscriber_id is None and row.delivery_id is None
        assert "@" not in str(row.detail)
    summary = EventLog(store).summary(ISSUE)
    assert summary["opened"] == 1 and summary["clicked"] == 1
    # SES reports a late bounce and complaint for the erased address
    assert apply(store, "identity/bounce-permanent", sent[ANA]) is Applied.UNMATCHED
    assert apply(store, "event/complaint", sent[ANA]) is Applied.UNMATCHED
    assert store.get_by_email(ANA) is None and store.erasure_of(ANA) is not None
    assert store.count() == len(READERS) - 1
    for row in rows(store):
        assert "@" not in str(row.detail) and row.subscriber_id is None


def test_the_summary_of_an_issue(store: Store, sent: dict[str, Recipient]) -> None:
    for email in (ANA, JAN, MARIA, ELENI):
        apply(store, "identity/delivery", sent[email])
    apply(store, "identity/bounce-permanent", sent[ANA])
    apply(store, "identity/bounce-transient", sent[JAN])
    apply(store, "event/complaint", sent[MARIA])
    apply(store, "event/open", sent[ELENI])
    apply(store, "event/open", sent[ELENI], open__timestamp="2025-04-16T08:00:00.000Z")
    apply(store, "event/click", sent[ELENI])
    apply(store, "event/open", sent[JAN])
    store.set_status(sent[ELENI].subscriber_id, Status.UNSUBSCRIBED, reason="one-click",
                     issue=ISSUE)
    assert EventLog(store).summary(ISSUE) == {
        "delivered": 4, "bounced": 1, "soft_bounced": 1, "complained": 1, "rejected": 0,
        "unsubscribed": 1, "opened": 2, "clicked": 1}
    assert set(EventLog(store).summary("another-issue").values()) == {0}
    assert [kind for kind, _ in EventLog(store).history(sent[ELENI].message_id)] == [
        EventType.DELIVERED, EventType.OPENED, EventType.CLICKED, EventType.OPENED]


def test_a_database_failure_is_ours_and_records_nothing(store: Store,
                                                        sent: dict[str, Recipient]) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_elsewhere"))
    event = Event("k" * 64, EventType.BOUNCED, sent[ANA].message_id,
                  dt.datetime.now(dt.UTC), {})
    with pytest.raises(DatabaseError, match="could not record a bounced event"):
        EventLog(store).apply(event)
    assert status_of(store, ANA) is Status.ACTIVE
    with store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE events_elsewhere RENAME TO events"))
        assert connection.scalar(select(func.count()).select_from(EventRecord)) == 0


def test_concurrent_redeliveries_apply_once(store: Store, sent: dict[str, Recipient]) -> None:
    event = parse_ses_event(ses("identity/bounce-permanent", sent[ANA].message_id))
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: EventLog(store).apply(event), range(16)))
    assert outcomes.count(Applied.APPLIED) == 1 and outcomes.count(Applied.DUPLICATE) == 15
    assert len(rows(store)) == 1 and status_of(store, ANA) is Status.BOUNCED


def test_concurrent_soft_bounces_are_all_counted(store: Store,
                                                 sent: dict[str, Recipient]) -> None:
    messages = [sent[JAN]] + [send_issue(store, [JAN], f"2025-0{n}-x")[JAN] for n in (5, 6)]
    events = []
    for n, recipient in enumerate(messages):
        document = ses("identity/bounce-transient", recipient.message_id)
        document["bounce"] |= {"feedbackId": f"soft-{n}", "timestamp": soon(n + 1)}
        events.append(parse_ses_event(document))
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(EventLog(store, soft_bounce_limit=3).apply, events))
    assert status_of(store, JAN) is Status.BOUNCED


def unknown_delivery(store: Store, email: str) -> None:
    """``email``'s delivery as after a request that got no answer: unknown, no message id."""
    with store.writer.begin() as connection:
        connection.execute(update(Delivery).where(
            Delivery.subscriber_id == select(Subscriber.id).where(
                Subscriber.email == email).scalar_subquery()).values(
            status="unknown", message_id=None, error="no answer in time"))


def delivery_of(store: Store, email: str) -> Any:
    with store.engine.connect() as connection:
        return connection.execute(select(Delivery.status, Delivery.message_id, Delivery.error)
                                  .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                                  .where(Subscriber.email == email)).one()


def test_an_event_settles_an_unknown_delivery_by_issue_and_recipient(
        store: Store, sent: dict[str, Recipient]) -> None:
    """SES's answer never came, but its event did: the message went out after all."""
    unknown_delivery(store, ELENI)
    unknown_delivery(store, JAN)
    document = ses("event/delivery", "0102018f-late-answer-000000")
    document["mail"]["destination"] = ["Eleni.Papadopoulou@EXAMPLE.gr"]  # as SES spells it
    assert EventLog(store).apply(parse_ses_event(document)) is Applied.APPLIED
    assert tuple(delivery_of(store, ELENI)) == ("sent", "0102018f-late-answer-000000", None)
    assert delivery_of(store, JAN).status == "unknown"  # only the message the event is about
    assert EventLog(store).summary(ISSUE)["delivered"] == 1


def test_without_our_tag_an_event_settles_nothing(store: Store,
                                                  sent: dict[str, Recipient]) -> None:
    unknown_delivery(store, ELENI)
    document = ses("event/delivery", "0102018f-someone-else-000000")
    del document["mail"]["tags"]["issue"]
    assert EventLog(store).apply(parse_ses_event(document)) is Applied.UNMATCHED
    assert delivery_of(store, ELENI).status == "unknown"
