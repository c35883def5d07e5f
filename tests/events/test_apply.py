"""Events applied to the store (SQLite and PostgreSQL): what each one does to a subscriber, once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select, text

from newsletter.errors import DatabaseError
from newsletter.events import Applied, Event, EventType, parse_ses_event
from newsletter.store import Status, Store
from newsletter.store.events import EventLog, EventRecord
from tests.events.conftest import ISSUE, READERS, Recipient, send_issue, ses

ANA, JAN, MARIA, ELENI = READERS


def apply(store: Store, name: str, recipient: Recipient, limit: int = 3,
          **changes: Any) -> Applied:
    document = ses(name, recipient.message_id)
    for path, value in changes.items():
        section, key = path.split("__")
        document[section][key] = value
    return EventLog(store, soft_bounce_limit=limit).apply(parse_ses_event(document))


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
    later = {}
    for n, issue in enumerate(("2025-05-a", "2025-06-b")):
        later[issue] = send_issue(store, [JAN], issue)[JAN]
    apply(store, "identity/bounce-transient", sent[JAN])
    apply(store, "event/bounce-transient", later["2025-05-a"])
    assert status_of(store, JAN) is Status.ACTIVE
    apply(store, "identity/bounce-transient", later["2025-06-b"],
          bounce__feedbackId="third", bounce__timestamp="2025-06-15T10:00:00.000Z")
    jan = store.get_by_email(JAN)
    assert jan is not None and jan.status is Status.BOUNCED
    assert jan.status_reason == "3 soft bounces in a row" and jan.status_issue == "2025-06-b"


def test_soft_bounces_of_one_message_count_once(store: Store,
                                                sent: dict[str, Recipient]) -> None:
    for n in range(3):
        apply(store, "identity/bounce-transient", sent[JAN], limit=2,
              bounce__feedbackId=f"retry-{n}")
    assert status_of(store, JAN) is Status.ACTIVE


def test_a_delivery_forgives_earlier_soft_bounces(store: Store,
                                                  sent: dict[str, Recipient]) -> None:
    second = send_issue(store, [JAN], "2025-05-a")[JAN]
    third = send_issue(store, [JAN], "2025-06-b")[JAN]
    apply(store, "identity/bounce-transient", sent[JAN], limit=2)  # 2025-04-15
    apply(store, "identity/delivery", second, limit=2,
          delivery__timestamp="2025-05-15T09:00:00.000Z")
    apply(store, "identity/bounce-transient", third, limit=2,
          bounce__feedbackId="x", bounce__timestamp="2025-06-15T09:00:00.000Z")
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
