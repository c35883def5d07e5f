"""The send engine against real databases (SQLite file, PostgreSQL) and real transports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
import threading

import pytest
from sqlalchemy import func, select, update

from newsletter.authoring.render import RenderedIssue
from newsletter.errors import (
    FatalTransportError,
    PermanentError,
    Throttled,
    TransientError,
    UnknownOutcome,
)
from newsletter.message import build_template
from newsletter.sending.engine import (
    Dispatcher,
    Progress,
    SendOptions,
    content_hash,
    missing_attributes,
    rehearse,
    send_issue,
    send_proofs,
)
from newsletter.sending.pacing import RateLimiter
from newsletter.store import Status, Store, Subscriber
from newsletter.store.ledger import Delivery, Ledger, Outcome, Sender
from newsletter.store.models import utcnow
from newsletter.tokens import Purpose, read_token
from newsletter.transports.base import Quota
from newsletter.transports.outbox import OutboxTransport
from tests.helpers import Recording

SLUG = "2025-04-asit-highlights"


@pytest.fixture
def rendered(asit_rendered) -> RenderedIssue:
    return asit_rendered[SLUG]


@pytest.fixture
def settings_with_key(settings):
    return settings.model_copy(update={"secret_key": "test-secret-of-some-length"})


@pytest.fixture
def store(database_url):
    with Store.open(database_url) as opened:
        yield opened


def add_people(store, count, *, tags=(), status=Status.ACTIVE, start=0):
    return [store.add(f"person{n}@example.org", name=f"Person {n}", tags=tags, status=status).id
            for n in range(start, start + count)]


def plan(store, rendered, audience=()):
    ledger = Ledger(store)
    ledger.plan(rendered.slug, rendered.subject, content_hash(rendered), audience)
    return ledger


def run(rendered, settings, ledger, transport, **options):
    options.setdefault("concurrency", 4)
    return send_issue(rendered, settings, ledger, transport, SendOptions(**options))


def test_plan_is_one_row_per_active_subscriber_once(store, rendered):
    add_people(store, 5)
    add_people(store, 2, status=Status.UNSUBSCRIBED, start=10)
    add_people(store, 3, tags=["press"], start=20)
    ledger = Ledger(store)
    assert ledger.plan(SLUG, rendered.subject, "h", ["press"]) == (3, True)
    assert ledger.plan(SLUG, rendered.subject, "h", ["press"]) == (3, False)
    assert ledger.counts(SLUG)["queued"] == 3
    assert ledger.send(SLUG).audience == ["press"]


def test_an_issue_counts_as_sent_from_its_plan_on_and_is_listed_newest_first(store):
    ledger = Ledger(store)
    assert ledger.sent_issues() == [] and not ledger.is_sent("2025-06-b")
    ledger.plan("2025-06-b", "June", "h")  # planned first, although later by name
    ledger.plan("2025-04-a", "April for {{first_name}}", "h")
    assert ledger.is_sent("2025-06-b") and not ledger.is_sent("2025-05-never")
    listed = ledger.sent_issues()
    assert [(s.issue, s.subject) for s in listed] == [
        ("2025-04-a", "April for {{first_name}}"), ("2025-06-b", "June")]
    assert listed[0].sent_at == ledger.send("2025-04-a").created_at
    assert listed[0].sent_at.utcoffset() == dt.timedelta(0)


def test_everyone_gets_it_once_and_a_rerun_sends_nothing(store, rendered, settings_with_key):
    add_people(store, 25)
    ledger = plan(store, rendered)
    transport = Recording()
    report = run(rendered, settings_with_key, ledger, transport)
    assert report.complete and report.counts["sent"] == 25
    assert transport.recipients() == sorted(f"person{n}@example.org" for n in range(25))
    again = run(rendered, settings_with_key, ledger, transport)
    assert again.progress.sent == 0 and len(transport.sent) == 25


def test_messages_are_personalised(store, rendered, settings_with_key):
    store.add("zofia@example.sk", name="Žofia Nováková", status=Status.ACTIVE)
    transport = Recording()
    run(rendered, settings_with_key, plan(store, rendered), transport)
    ((recipient, raw),) = transport.sent
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert recipient == "zofia@example.sk"
    unsubscribe = message["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://newsletter.asit-project.eu/unsubscribe/")
    token_url = unsubscribe.strip("<>").split(">")[0]
    html = message.get_body(("html",)).get_content()
    assert token_url in html and "{{" not in html


def with_organisation(rendered):
    """The issue greeting each reader's organisation, in the subject and both parts."""
    return dataclasses.replace(
        rendered, subject="{{first_name}} at {{organisation}}",
        html=rendered.html.replace("<body", "<p>For {{ organisation }}</p><body", 1),
        text="For {{organisation}}.\n" + rendered.text)


def test_attributes_fill_their_placeholders(store, rendered, settings_with_key):
    store.add("anna@example.org", name="Anna Kovacs", status=Status.ACTIVE,
              attributes={"organisation": "Police <Academy> & Co"})
    store.add("jan@example.org", name="Jan Nowak", status=Status.ACTIVE)
    issue = with_organisation(rendered)
    transport = Recording()
    run(issue, settings_with_key, plan(store, issue), transport)
    messages = {recipient: email.message_from_bytes(raw, policy=email.policy.default)
                for recipient, raw in transport.sent}
    anna, jan = messages["anna@example.org"], messages["jan@example.org"]
    assert anna["Subject"] == "Anna at Police <Academy> & Co"
    assert "<p>For Police &lt;Academy&gt; &amp; Co</p>" in anna.get_body(("html",)).get_content()
    assert "For Police <Academy> & Co.\r\n" in anna.get_body(("plain",)).get_content()
    assert jan["Subject"] == "Jan at"  # a reader without the attribute gets a blank
    assert "<p>For </p>" in jan.get_body(("html",)).get_content()


def test_an_attribute_nobody_has_is_reported_before_sending(store, rendered):
    store.add("anna@example.org", status=Status.ACTIVE, tags=["police"],
              attributes={"organisation": "Police Academy"})
    store.add("jan@example.org", status=Status.ACTIVE, tags=["ngo"], attributes={"city": "Kraków"})
    store.add("old@example.org", status=Status.UNSUBSCRIBED, attributes={"region": "Sofia"})
    issue = with_organisation(rendered)
    assert missing_attributes(rendered, store) == ""  # no attribute placeholders at all
    assert missing_attributes(issue, store) == ""
    assert missing_attributes(issue, store, ["police"]) == ""
    assert missing_attributes(issue, store, ["ngo"]) == (
        "{{organisation}} would be empty for everyone: no active subscriber in the audience has "
        "that attribute (attributes on the list: city)")
    typo = dataclasses.replace(issue, text=issue.text + "{{organisaton}} {{region}}")
    assert missing_attributes(typo, store) == (
        "{{organisaton}}, {{region}} would be empty for everyone: no active subscriber has "
        "those attributes (attributes on the list: city, organisation)")


def test_unsubscribed_mid_send_are_skipped(store, rendered, settings_with_key):
    ids = add_people(store, 4)
    ledger = plan(store, rendered)
    store.set_status(ids[2], Status.UNSUBSCRIBED, reason="one-click")
    transport = Recording()
    report = run(rendered, settings_with_key, ledger, transport)
    assert report.counts["skipped"] == 1 and report.counts["sent"] == 3
    assert "person2@example.org" not in transport.recipients()


def test_throttles_and_transient_errors_are_retried_without_duplicates(
        store, rendered, settings_with_key, monkeypatch):
    monkeypatch.setattr("newsletter.sending.dispatch.backoff", lambda attempt: 0.001)
    add_people(store, 30)

    def flaky(envelope, call):
        number = int(envelope.recipient.removeprefix("person").split("@")[0])
        if call == 1 and number % 3 == 0:
            return Throttled("slow down")
        if call <= 2 and number % 5 == 0:
            return TransientError("503")
        return None

    transport = Recording(fail=flaky)
    report = run(rendered, settings_with_key, plan(store, rendered), transport)
    assert report.complete and report.counts["sent"] == 30
    assert transport.recipients() == sorted(set(transport.recipients()))


def test_a_message_goes_out_only_once_its_row_is_committed_as_sending(
        store, rendered, settings_with_key):
    """The hand-over is recorded before the transport sees the message, and no more rows are
    ``sending`` than there are requests in flight: what a crash can leave ``unknown``."""
    add_people(store, 60)
    ledger = plan(store, rendered)
    seen: list[tuple[str, int]] = []

    def look(envelope, call):
        with store.engine.connect() as connection:
            row = connection.execute(select(Delivery.status).where(
                Delivery.subscriber_id == int(envelope.key))).scalar_one()
            sending = connection.scalar(select(func.count()).where(
                Delivery.issue == SLUG, Delivery.status == "sending"))
        seen.append((row, sending))
        return None

    report = run(rendered, settings_with_key, ledger, Recording(fail=look), concurrency=4)
    assert report.counts["sent"] == 60 and len(seen) == 60
    assert {status for status, _ in seen} == {"sending"}
    assert max(sending for _, sending in seen) <= 4


def test_a_message_without_an_answer_is_unknown_and_never_resent(store, rendered,
                                                                 settings_with_key):
    add_people(store, 12)

    def silent(envelope, call):
        if envelope.recipient in ("person3@example.org", "person7@example.org"):
            return UnknownOutcome("no answer in time: SES may have accepted the message")
        return None

    transport = Recording(fail=silent)
    ledger = plan(store, rendered)
    report = run(rendered, settings_with_key, ledger, transport)
    assert report.complete and report.progress.unknown == 2
    assert (report.counts["sent"], report.counts["unknown"]) == (10, 2)
    assert transport.calls["person3@example.org"] == 1  # not retried
    assert ledger.errors(SLUG, "unknown") == [
        ("no answer in time: SES may have accepted the message", 2)]
    again = run(rendered, settings_with_key, ledger, transport)
    assert again.progress.done == 0 and transport.calls["person7@example.org"] == 1
    retried = run(rendered, settings_with_key, ledger, Recording(), retry_unknown=True)
    assert retried.progress.sent == 2


def test_permanent_failures_are_recorded_and_can_be_retried(store, rendered, settings_with_key):
    add_people(store, 6)
    bad = {"person1@example.org", "person4@example.org"}
    transport = Recording(fail=lambda e, call: PermanentError("MessageRejected")
                          if e.recipient in bad and call == 1 else None)
    ledger = plan(store, rendered)
    report = run(rendered, settings_with_key, ledger, transport)
    assert (report.counts["sent"], report.counts["failed"]) == (4, 2)
    assert ledger.errors(SLUG) == [("MessageRejected", 2)]
    assert run(rendered, settings_with_key, ledger, transport).progress.sent == 0
    retried = run(rendered, settings_with_key, ledger, transport, retry_failed=True)
    assert retried.progress.sent == 2 and retried.counts["failed"] == 0
    assert len(transport.sent) == 6


def test_transient_errors_give_up_after_a_limit(store, rendered, settings_with_key, monkeypatch):
    monkeypatch.setattr("newsletter.sending.dispatch.backoff", lambda attempt: 0.001)
    add_people(store, 2)
    transport = Recording(fail=lambda e, call: TransientError("timeout")
                          if e.recipient == "person0@example.org" else None)
    report = run(rendered, settings_with_key, plan(store, rendered), transport)
    assert report.counts["failed"] == 1 and transport.calls["person0@example.org"] == 5


def test_a_fatal_error_stops_the_send_and_loses_nothing(store, rendered, settings_with_key):
    add_people(store, 40)
    suspended = threading.Event()

    def fail(envelope, call):
        if envelope.recipient == "person10@example.org":
            suspended.set()
        return FatalTransportError("AccountSuspendedException") if suspended.is_set() else None

    ledger = plan(store, rendered)
    transport = Recording(fail=fail)
    report = run(rendered, settings_with_key, ledger, transport, concurrency=1)
    assert report.stopped and "AccountSuspendedException" in report.stopped
    counts = ledger.counts(SLUG)
    assert counts["sent"] == len(transport.sent) and counts["sending"] == 0
    assert counts["sent"] + counts["queued"] == 40
    resumed = run(rendered, settings_with_key, ledger, Recording())
    assert resumed.complete and resumed.progress.sent == counts["queued"]


def test_consecutive_failures_pause_the_send(store, rendered, settings_with_key):
    add_people(store, 30)
    transport = Recording(fail=lambda e, call: PermanentError("MessageRejected"))
    report = run(rendered, settings_with_key, plan(store, rendered), transport, concurrency=1,
                 max_consecutive_failures=5)
    assert "5 consecutive failures" in report.stopped
    assert report.counts["failed"] < 30 and report.counts["queued"] > 0


def test_thousands_who_left_before_their_turn_are_skipped_in_turns(store, rendered,
                                                                  settings_with_key):
    """Each claim of one sender at concurrency 1 takes two rows: 1,000 claims that skip
    everyone they take, one after the other, without the dispatch loop growing."""
    add_people(store, 2001)
    ledger = plan(store, rendered)
    with store.writer.begin() as connection:
        connection.execute(update(Subscriber).where(Subscriber.email != "person2000@example.org")
                           .values(status=Status.UNSUBSCRIBED))
    report = run(rendered, settings_with_key, ledger, Recording(), concurrency=1)
    assert (report.progress.skipped, report.progress.sent) == (2000, 1)


def test_a_bug_in_a_transport_stops_the_send_and_leaves_nothing_in_flight(
        store, rendered, settings_with_key):
    """A transport that raises something no DeliveryError: that message may have gone out
    (unknown); the send stops, raises the error, and nothing else is left claimed or sending."""
    add_people(store, 20)
    ledger = plan(store, rendered)

    def bug(envelope, call):
        return RuntimeError("a bug") if envelope.recipient == "person5@example.org" else None

    with pytest.raises(RuntimeError, match="a bug"):
        run(rendered, settings_with_key, ledger, Recording(fail=bug), concurrency=2)
    counts = ledger.counts(SLUG)
    assert counts["unknown"] == 1 and counts["claimed"] == counts["sending"] == 0
    assert counts["sent"] + counts["queued"] == 19


def test_a_paused_send_waits_for_an_operator(store, rendered, settings_with_key):
    """Workers join sends in progress, but not one the engine paused: someone looks first."""
    add_people(store, 30)
    ledger = plan(store, rendered)
    assert ledger.pending() == [SLUG]
    failing = Recording(fail=lambda e, call: PermanentError("MessageRejected"))
    run(rendered, settings_with_key, ledger, failing, concurrency=1, max_consecutive_failures=5)
    assert ledger.send(SLUG).note.startswith("paused: paused after 5 consecutive failures")
    assert ledger.pending() == []
    ledger.resume(SLUG)  # what `newsletter send` does
    assert ledger.pending() == [SLUG]
    assert run(rendered, settings_with_key, ledger, Recording()).complete
    assert ledger.pending() == []


def test_the_pause_is_decided_at_the_threshold_when_results_arrive_together(
        store, rendered, settings_with_key):
    """Two messages are in flight even at concurrency 1, so their failures can be counted
    together; the pause still names the threshold it stopped at."""
    template = build_template(rendered, settings_with_key)
    dispatcher = Dispatcher({"": template}, SLUG, settings_with_key, plan(store, rendered),
                            Recording(), RateLimiter(None),
                            SendOptions(concurrency=1, max_consecutive_failures=5), Progress())
    dispatcher.count([Outcome(n, "failed") for n in range(4)])
    assert not dispatcher.stopping()
    dispatcher.count([Outcome(n, "failed") for n in range(4, 6)])
    assert dispatcher.stopping() and "after 5 consecutive failures" in dispatcher.stop_reason
    assert dispatcher.progress.failed == 6


def test_daily_quota_stops_cleanly_and_resumes(store, rendered, settings_with_key):
    add_people(store, 10)
    ledger = plan(store, rendered)
    tight = Recording(quota=Quota(max_send_rate=1000, max_24_hour_send=100,
                                  sent_last_24_hours=96))
    report = run(rendered, settings_with_key, ledger, tight, concurrency=32)
    assert report.counts["sent"] == 4 and report.counts["queued"] == 6
    assert "quota" in report.stopped
    used_up = Recording(quota=Quota(1000, 100, 100))
    assert "quota is used up" in run(rendered, settings_with_key, ledger, used_up).stopped
    assert used_up.sent == []
    assert run(rendered, settings_with_key, ledger, Recording()).counts["sent"] == 10


def test_dead_senders_rows_become_unknown_and_are_not_resent(store, rendered,
                                                               settings_with_key):
    """What it handed over may have gone out (unknown); what it only reserved goes back."""
    add_people(store, 5)
    ledger = plan(store, rendered)
    ghost = Sender(id="elsewhere:1:dead", host="elsewhere", pid=1,
                   heartbeat_at=utcnow().replace(year=2020))
    with store.writer.begin() as connection:
        connection.execute(Sender.__table__.insert().values(
            id=ghost.id, host=ghost.host, pid=ghost.pid, heartbeat_at=ghost.heartbeat_at))
    claims, _ = ledger.claim(SLUG, ghost.id, 4)
    handed, _, _ = ledger.advance(SLUG, ghost.id, hand_over=[c.delivery_id for c in claims[:2]])
    assert handed == [c.delivery_id for c in claims[:2]]  # then the sender "died"
    transport = Recording()
    report = run(rendered, settings_with_key, ledger, transport)
    assert report.recovered_unknown == 2
    assert (report.counts["unknown"], report.counts["sent"]) == (2, 3)
    assert {c.email for c in claims[:2]}.isdisjoint(transport.recipients())
    assert {c.email for c in claims[2:]} <= set(transport.recipients())
    retried = run(rendered, settings_with_key, ledger, transport, retry_unknown=True)
    assert retried.progress.sent == 2 and len(transport.sent) == 5


def test_a_live_senders_rows_are_left_alone(store, rendered, settings_with_key):
    add_people(store, 3)
    ledger = plan(store, rendered)
    live = ledger.register_sender()
    claims, _ = ledger.claim(SLUG, live, 2)
    ledger.advance(SLUG, live, hand_over=[claims[0].delivery_id])
    report = run(rendered, settings_with_key, ledger, Recording())
    assert report.recovered_unknown == 0
    assert (report.counts["sending"], report.counts["claimed"], report.counts["sent"]) == (1, 1, 1)
    ledger.unregister_sender(live)


def test_outbox_transport_end_to_end(store, rendered, settings_with_key, tmp_path):
    add_people(store, 3)
    outbox = OutboxTransport(tmp_path / "outbox")
    report = run(rendered, settings_with_key, plan(store, rendered), outbox)
    files = sorted((tmp_path / "outbox" / SLUG).glob("*.eml"))
    assert report.counts["sent"] == 3 and len(files) == 3
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == rendered.subject


def test_every_message_links_its_readers_own_preferences_page(store, rendered,
                                                              settings_with_key, tmp_path):
    """Through the outbox: each reader's footer links a preferences page that names them,
    in both parts, next to Unsubscribe."""
    people = dict(zip(add_people(store, 3), (f"person{n}@example.org" for n in range(3)),
                      strict=True))
    run(rendered, settings_with_key, plan(store, rendered), OutboxTransport(tmp_path / "outbox"))
    found = {}
    for file in (tmp_path / "outbox" / SLUG).glob("*.eml"):
        message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        links = re.findall(r'<a href="(https://newsletter\.asit-project\.eu/preferences/[^"]+)"'
                           r"[^>]*>Manage your preferences</a>", html)
        assert len(links) == 1 and f"Manage your preferences: {links[0]}\r\n" in text
        assert "{{" not in html + text and "Unsubscribe</a> ·" in html
        claim = read_token(settings_with_key, links[0].rpartition("/")[2], Purpose.PREFERENCES)
        found[claim.subscriber_id] = message["To"].addresses[0].addr_spec
    assert found == people


def test_proofs_and_rehearsal_leave_the_ledger_alone(store, rendered, settings_with_key):
    add_people(store, 3)
    transport = Recording()
    sent = send_proofs(rendered, settings_with_key, transport, ["editor@example.org"])
    assert [address for address, _ in sent] == ["editor@example.org"]
    message = email.message_from_bytes(transport.sent[0][1], policy=email.policy.default)
    assert message["Subject"] == f"[Proof] {rendered.subject}"
    assert "https://newsletter.asit-project.eu/preferences/proof" in message.get_body(
        ("plain",)).get_content()
    count, size, problems = rehearse(rendered, settings_with_key, store)
    assert (count, problems) == (3, []) and size > 3 * 10_000
    assert Ledger(store).send(SLUG) is None


def test_proofs_show_where_attributes_go(rendered, settings_with_key):
    transport = Recording()
    send_proofs(with_organisation(rendered), settings_with_key, transport, ["editor@example.org"])
    message = email.message_from_bytes(transport.sent[0][1], policy=email.policy.default)
    assert message["Subject"] == "[Proof] friend at [organisation]"
    assert "For [organisation].\r\n" in message.get_body(("plain",)).get_content()


def test_content_hash_changes_with_content(rendered):
    assert content_hash(rendered) == content_hash(dataclasses.replace(rendered))
    assert content_hash(rendered) != content_hash(dataclasses.replace(rendered, text="x"))
