"""The one-click write path: one UPDATE per batch, every request answered after its commit."""

from __future__ import annotations

import threading
import time

import pytest

from newsletter.store import Status
from newsletter.web.leaving import Leaving


def run_together(leaving, calls):
    """Queue ``calls`` (id, reason, issue) while the writer's turn is held, then let them go:
    they must be written as one batch. Returns each call's result (or exception)."""
    results: list[object] = [None] * len(calls)

    def call(n, subscriber_id, reason, issue):
        try:
            results[n] = leaving.unsubscribe(subscriber_id, reason=reason, issue=issue)
        except Exception as error:
            results[n] = error

    threads = [threading.Thread(target=call, args=(n, *c)) for n, c in enumerate(calls)]
    with leaving._turn:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(leaving._queue) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.005)
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_a_batch_is_one_transaction_with_the_right_answer_for_each(store, add, monkeypatch):
    people = [add(f"p{n}@example.org") for n in range(6)]
    store.set_status(people[3].id, Status.BOUNCED, reason="hard bounce")
    store.forget(people[4].email)
    leaving = Leaving(store)
    writes = []
    real_write = Leaving._write
    monkeypatch.setattr(Leaving, "_write", lambda self, b: writes.append(len(b)) or
                        real_write(self, b))
    calls = [(people[0].id, "one-click", "issue-a"), (people[1].id, "one-click", "issue-b"),
             (people[2].id, "unsubscribe page", None), (people[3].id, "one-click", "issue-a"),
             (people[4].id, "one-click", "issue-a"), (people[0].id, "one-click", "issue-a"),
             (10**30, "one-click", None)]
    results = run_together(leaving, calls)
    assert writes == [6]  # everything but the impossible id, at once
    assert [getattr(r, "status", r) for r in results] == [
        Status.UNSUBSCRIBED, Status.UNSUBSCRIBED, Status.UNSUBSCRIBED, Status.BOUNCED, None,
        Status.UNSUBSCRIBED, None]
    assert results[0] == results[5]
    for person, reason, issue in [(people[0], "one-click", "issue-a"),
                                  (people[1], "one-click", "issue-b"),
                                  (people[2], "unsubscribe page", None)]:
        found = store.get(person.id)
        assert (found.status, found.status_reason, found.status_issue) == (
            Status.UNSUBSCRIBED, reason, issue)
    assert store.get(people[3].id).status is Status.BOUNCED
    assert store.get(people[5].id).status is Status.ACTIVE


def test_a_failed_transaction_fails_every_request_in_it(store, add, monkeypatch):
    people = [add(f"p{n}@example.org") for n in range(3)]
    leaving = Leaving(store)

    def broken(*_args):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr("newsletter.store.store._leave", broken)
    results = run_together(leaving, [(p.id, "one-click", None) for p in people])
    assert all(isinstance(r, RuntimeError) for r in results)
    monkeypatch.undo()
    assert all(store.get(p.id).status is Status.ACTIVE for p in people)
    assert leaving.unsubscribe(people[0].id, reason="one-click", issue=None) is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failure_answers_500_and_changes_nothing(client, web_settings, subscriber, store,
                                                   monkeypatch):
    from newsletter.tokens import unsubscribe_url
    from tests.web.conftest import path_of

    monkeypatch.setattr("newsletter.store.store._leave", lambda *a: 1 / 0)
    response = client.post(path_of(unsubscribe_url(web_settings, subscriber.id), web_settings))
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.get_data(as_text=True)
    assert store.get(subscriber.id).status is Status.ACTIVE


def test_many_threads_lose_nothing(store, add):
    people = [add(f"p{n}@example.org") for n in range(60)]
    leaving = Leaving(store)
    threads = [threading.Thread(target=leaving.unsubscribe, args=(p.id,),
                                kwargs={"reason": "one-click", "issue": "x"}) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert store.count(statuses=[Status.UNSUBSCRIBED]) == 60
