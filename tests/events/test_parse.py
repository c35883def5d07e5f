"""SES bodies (both shapes) → our Event: the mapping table, details without personal data,
stable keys, and a parser no input can crash."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import MalformedEvent
from newsletter.feedback.events import EventType, parse_ses_event, read_documents, ses_document
from tests.events.conftest import ses

MID = "0102018f-test-message-000000"


@pytest.mark.parametrize(("name", "expected"), [
    ("identity/bounce-permanent", EventType.BOUNCED),
    ("identity/bounce-transient", EventType.SOFT_BOUNCED),
    ("identity/complaint", EventType.COMPLAINED),
    ("identity/delivery", EventType.DELIVERED),
    ("identity/subscription-succeeded", EventType.UNKNOWN),
    ("event/bounce-permanent", EventType.BOUNCED),
    ("event/bounce-transient", EventType.SOFT_BOUNCED),
    ("event/complaint", EventType.COMPLAINED),
    ("event/delivery", EventType.DELIVERED),
    ("event/send", EventType.SENT),
    ("event/reject", EventType.REJECTED),
    ("event/open", EventType.OPENED),
    ("event/click", EventType.CLICKED),
    ("event/delivery-delay", EventType.DELIVERY_DELAYED),
    ("event/rendering-failure", EventType.UNKNOWN),
    ("event/subscription", EventType.UNKNOWN),
])
def test_each_fixture_maps_to_our_vocabulary(name: str, expected: EventType) -> None:
    document = ses(name)
    event = parse_ses_event(document)
    assert event.type is expected
    assert event.message_id == document.get("mail", {}).get("messageId")
    assert event.occurred_at.tzinfo is not None
    assert len(event.key) == 64


def test_details_are_in_our_words_and_hold_no_personal_data() -> None:
    bounce = parse_ses_event(ses("identity/bounce-permanent"))
    assert bounce.detail == {
        "bounce_type": "Permanent", "subtype": "General", "status": "5.1.1",
        "diagnostic": "smtp; 550 5.1.1 <<address>>: Recipient address rejected: User unknown "
                      "in virtual mailbox table"}
    assert parse_ses_event(ses("event/click")).detail == {
        "link": "https://asit-project.eu/news/twinning-visit-vilnius"}
    assert parse_ses_event(ses("event/reject")).detail == {"reason": "Bad content"}
    assert parse_ses_event(ses("event/delivery-delay")).detail == {
        "delay_type": "TransientCommunicationFailure", "expires_at": "2025-04-15T23:31:05.000Z"}
    assert parse_ses_event(ses("event/rendering-failure")).detail == {
        "provider_type": "Rendering Failure"}
    for name in ("identity/bounce-permanent", "identity/complaint", "event/open", "event/click",
                 "event/complaint", "event/delivery", "event/delivery-delay"):
        stored = json.dumps(parse_ses_event(ses(name)).detail)
        assert "@" not in stored and "192.0.2" not in stored and "Mozilla" not in stored


def test_the_event_time_is_the_event_s_own() -> None:
    event = parse_ses_event(ses("identity/bounce-transient"))
    assert event.occurred_at == dt.datetime(2025, 4, 15, 10, 2, 44, 98000, tzinfo=dt.UTC)
    document = ses("event/send")  # no time of its own: the message's
    assert parse_ses_event(document).occurred_at == dt.datetime(2025, 4, 15, 9, 31, 5,
                                                                tzinfo=dt.UTC)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00",
                                   "yesterday", "", "2025-04-15T09:31:07.412+02:00"])
def test_odd_times_fall_back_and_are_always_utc(stamp: str) -> None:
    document = ses("event/open")
    document["open"]["timestamp"] = stamp
    occurred = parse_ses_event(document).occurred_at
    assert occurred.utcoffset() == dt.timedelta(0)
    if stamp.endswith("+02:00"):
        assert occurred == dt.datetime(2025, 4, 15, 7, 31, 7, 412000, tzinfo=dt.UTC)
    else:  # the message's own time
        assert occurred == dt.datetime(2025, 4, 15, 9, 31, 5, tzinfo=dt.UTC)


def test_undetermined_bounces_are_soft_and_not_spam_reports_are_no_complaint() -> None:
    document = ses("identity/bounce-permanent")
    document["bounce"]["bounceType"] = "Undetermined"
    assert parse_ses_event(document).type is EventType.SOFT_BOUNCED
    document = ses("identity/complaint")
    document["complaint"]["complaintFeedbackType"] = "not-spam"
    assert parse_ses_event(document).type is EventType.UNKNOWN


def test_keys_are_stable_and_tell_events_apart() -> None:
    one = parse_ses_event(ses("event/open", MID))
    assert parse_ses_event(ses("event/open", MID)).key == one.key
    later = ses("event/open", MID)
    later["open"]["timestamp"] = "2025-04-15T12:00:00.000Z"
    assert parse_ses_event(later).key != one.key
    assert parse_ses_event(ses("event/click", MID)).key != one.key
    # A bounce is identified by SES's feedbackId, whatever else the two shapes carry.
    identity = ses("identity/bounce-permanent", MID)
    published = ses("event/bounce-permanent", MID)
    published["bounce"] = identity["bounce"] | {"extra": "field SES may add"}
    assert parse_ses_event(published).key == parse_ses_event(identity).key


@pytest.mark.parametrize("document", [
    None, [], "Bounce", {"mail": {}}, {"eventType": 3},
    {"notificationType": "Bounce", "mail": {"messageId": MID}},
    {"notificationType": "Bounce", "bounce": {}},
    {"eventType": "Open", "open": {}, "mail": {"messageId": ""}},
    {"eventType": "Click", "click": [], "mail": {"messageId": MID}},
])
def test_known_types_without_their_parts_are_malformed(document: Any) -> None:
    with pytest.raises(MalformedEvent):
        parse_ses_event(document)


def test_unknown_types_need_nothing() -> None:
    event = parse_ses_event({"eventType": "Telepathy"})
    assert event.type is EventType.UNKNOWN and event.message_id is None
    assert event.detail == {"provider_type": "Telepathy"}


def test_sns_envelopes_are_unwrapped_and_subscription_messages_are_no_events() -> None:
    inner = ses("identity/delivery")
    assert ses_document({"Type": "Notification", "Message": json.dumps(inner)}) == inner
    assert ses_document(inner) is inner
    assert ses_document({"Type": "SubscriptionConfirmation"}) is None
    for broken in ({"Type": "Notification"}, {"Type": "Notification", "Message": "{"},
                   {"Type": "Gossip"}):
        with pytest.raises(MalformedEvent):
            ses_document(broken)


def test_files_hold_one_document_an_array_or_json_lines() -> None:
    one, two = ses("event/open"), ses("event/click")
    assert [d for _, d in read_documents(json.dumps(one))] == [one]
    assert [d for _, d in read_documents(json.dumps([one, two]).encode())] == [one, two]
    lines = list(read_documents(f"{json.dumps(one)}\n\nnot json\n{json.dumps(two)}\n"))
    assert [where for where, _ in lines] == ["line 1", "line 3", "line 4"]
    assert isinstance(lines[1][1], MalformedEvent) and lines[2][1] == two


# ---------------------------------------------------------------- fuzzing

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
ZONES = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=14)),
                         dt.timezone(dt.timedelta(hours=-12))])
TIMES = st.datetimes(timezones=ZONES).map(dt.datetime.isoformat) | st.text(max_size=30)
WORDS = st.sampled_from(["Bounce", "Complaint", "Delivery", "Send", "Reject", "Open", "Click",
                         "DeliveryDelay", "Rendering Failure", "Subscription", "Nonsense"])
SES_LIKE = st.fixed_dictionaries(
    {"eventType": WORDS},
    optional={"mail": st.fixed_dictionaries({}, optional={
                  "messageId": st.just(MID) | JSON, "timestamp": TIMES | JSON}),
              "bounce": st.fixed_dictionaries({}, optional={
                  "bounceType": st.sampled_from(["Permanent", "Transient"]) | JSON,
                  "bouncedRecipients": JSON, "timestamp": TIMES, "feedbackId": JSON}),
              "complaint": JSON, "delivery": JSON, "send": JSON, "reject": JSON,
              "open": st.fixed_dictionaries({"timestamp": TIMES}),
              "click": st.dictionaries(st.sampled_from(["link", "timestamp"]), TIMES),
              "deliveryDelay": JSON})


@settings(max_examples=400, deadline=None)
@given(JSON | SES_LIKE)
def test_no_document_crashes_the_ses_parser(document: Any) -> None:
    try:
        event = parse_ses_event(document)
    except MalformedEvent:
        return
    assert event.type in EventType and len(event.key) == 64
    json.dumps(dict(event.detail))  # storable as it is
