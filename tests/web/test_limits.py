"""The sign-up rate limits: shared token buckets in the database (SQLite and PostgreSQL), the
web side's memory of refusals, and the signed form tokens."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from newsletter.store import Store
from newsletter.store.limits import Bucket, Buckets
from newsletter.web.limits import Limit, RateLimiter
from newsletter.web.pages import mask_address, readable_on
from newsletter.web.signing import form_token, form_token_valid, issued_at, sign, unsign

T0 = 1_000_000.0  # a clock of the test's own (seconds), instead of the database's


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rows(store: Store) -> list[tuple[str, float, int]]:
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            select(Bucket.key, Bucket.full_at, Bucket.refused).order_by(Bucket.key))]


def count(store: Store) -> int:
    with store.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Bucket)) or 0


def test_a_burst_then_the_hourly_rate(store):
    buckets = Buckets(store)

    def take(value: str, now: float) -> float:
        return buckets.take("address", value, burst=3, per_hour=60, now=now)

    assert [take("a", T0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(60.0)]
    assert take("a", T0 + 1) == pytest.approx(59.0)  # refused: nothing taken, nothing moved
    assert take("b", T0) == 0.0  # keys are independent
    assert take("a", T0 + 60) == 0.0 and take("a", T0 + 60) == pytest.approx(60.0)
    assert [take("a", T0 + 3660) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(60.0)]
    assert buckets.take("client", "a", burst=1, per_hour=1, now=T0) == 0.0  # scopes apart
    [(_, full_at, refused)] = [row for row in rows(store) if row[0].startswith("address:")
                               and row[2]]
    assert full_at == pytest.approx(T0 + 3660 + 180) and refused == 1


def test_the_database_clock_decides(store):
    buckets = Buckets(store)
    answers = [buckets.take("client", "192.0.2.1", burst=2, per_hour=1) for _ in range(3)]
    assert answers[:2] == [0.0, 0.0] and 3599 < answers[2] <= 3600


def test_keys_hold_no_address_and_are_the_same_in_every_process(database_url):
    with Store.open(database_url) as one, Store.open(database_url) as two:
        first, second = Buckets(one), Buckets(two)
        first.take("address", "anna.kowalska@example.org", burst=3, per_hour=6)
        first.take("client", "192.0.2.45", burst=20, per_hour=60)
        keys = [key for key, _, _ in rows(one)]
        assert sorted(keys) == sorted([first.key("address", "anna.kowalska@example.org"),
                                       first.key("client", "192.0.2.45")])
        assert first.key("client", "192.0.2.45") == second.key("client", "192.0.2.45")
        for key in keys:
            scope, _, digest = key.partition(":")
            assert scope in ("address", "client") and len(digest) == 32
            int(digest, 16)  # hex digits only: no part of an address or a dotted IP fits
            assert "anna" not in key and "example" not in key
        # Not the suppression hash either: the two tables cannot be joined on the address.
        assert one.suppression_hash("anna.kowalska@example.org")[:32] not in "".join(keys)
        assert first.key("client", "x") != first.key("address", "x")


@pytest.mark.parametrize("scope", ["client", "address"])
def test_two_stores_on_one_database_share_every_bucket(database_url, scope):
    """Two Store instances, as two `serve` processes have: one burst between them."""
    with Store.open(database_url) as one, Store.open(database_url) as two:
        pair = (Buckets(one), Buckets(two))
        answers = [pair[n % 2].take(scope, "shared", burst=3, per_hour=6) for n in range(6)]
        assert [answer == 0 for answer in answers] == [True] * 3 + [False] * 3


def test_concurrent_attempts_through_two_stores_never_exceed_the_burst(database_url):
    with Store.open(database_url) as one, Store.open(database_url) as two:
        pair = (Buckets(one), Buckets(two))
        allowed: list[bool] = []
        lock = threading.Lock()

        def attempts(buckets: Buckets) -> None:
            mine = [buckets.take("client", "198.51.100.7", burst=30, per_hour=0.01) == 0
                    for _ in range(12)]
            with lock:
                allowed.extend(mine)

        threads = [threading.Thread(target=attempts, args=(pair[n % 2],)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(allowed) == 72 and allowed.count(True) == 30


def test_the_table_stays_bounded(store):
    """One attempt each from 2,000 clients, 10 a second, each bucket full again after 1 s: the
    table holds the last second's buckets plus at most ``cleanup_every`` rows."""
    buckets = Buckets(store, cleanup_every=50)
    sizes = []
    for n in range(2000):
        buckets.take("client", f"10.0.{n // 256}.{n % 256}", burst=1, per_hour=3600,
                     now=T0 + n / 10)
        if n % 100 == 99:
            sizes.append(count(store))
    assert max(sizes) <= 11 + 50
    buckets.cleanup(now=T0 + 2000 / 10 + 1)  # a second after the last attempt: all full
    assert count(store) == 0


def test_the_clean_up_deletes_only_buckets_that_are_full_again(store):
    buckets = Buckets(store)
    for value in ("gone", "kept"):
        buckets.take("address", value, burst=3, per_hour=6, now=T0)
    buckets.take("address", "kept", burst=3, per_hour=6, now=T0 + 1000)  # full at T0 + 2200
    assert buckets.cleanup(now=T0 + 1500) == 1  # "gone" was full again at T0 + 600
    assert [key for key, _, _ in rows(store)] == [buckets.key("address", "kept")]
    # A deleted bucket answers as the full one it was; the kept one still counts its attempts.
    assert buckets.take("address", "gone", burst=1, per_hour=1, now=T0 + 1500) == 0.0
    answers = [buckets.take("address", "kept", burst=3, per_hour=6, now=T0 + 1500)
               for _ in range(3)]
    assert answers[:2] == [0.0, 0.0] and answers[2] > 0


def test_a_bucket_needs_a_burst_and_a_rate(store):
    for burst, per_hour in ((0, 6), (3, 0)):
        with pytest.raises(ValueError, match="burst"):
            Buckets(store).take("client", "x", burst=burst, per_hour=per_hour)


class Counting(Buckets):
    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.calls = 0

    def take(self, *args: Any, **kwargs: Any) -> float:
        self.calls += 1
        return super().take(*args, **kwargs)


def test_a_refusal_is_remembered_until_it_expires(store):
    clock, buckets = Clock(), Counting(store)
    limiter = RateLimiter(buckets, "client", Limit(burst=2, per_hour=1), clock=clock)
    assert [limiter.take("a") for _ in range(2)] == [0, 0]
    refused = limiter.take("a")
    assert 3590 < refused <= 3601 and buckets.calls == 3
    clock.now += 600
    assert 2990 < limiter.take("a") <= 3001 and buckets.calls == 3  # no database write
    assert limiter.take("b") == 0 and buckets.calls == 4
    clock.now += 3001
    limiter.take("a")
    assert buckets.calls == 5  # expired: the database decides again


def test_a_refusal_made_by_another_process_holds_here(database_url):
    with Store.open(database_url) as one, Store.open(database_url) as two:
        here = RateLimiter(Buckets(one), "address", Limit(burst=1, per_hour=1), clock=Clock())
        there = RateLimiter(Buckets(two), "address", Limit(burst=1, per_hour=1), clock=Clock())
        assert there.take("anna@example.org") == 0
        assert here.take("anna@example.org") > 3000


def test_remembered_refusals_are_bounded(store):
    limiter = RateLimiter(Buckets(store), "client", Limit(burst=1, per_hour=1), max_keys=10,
                          clock=Clock())
    for n in range(30):
        limiter.take(f"client-{n}")
        assert limiter.take(f"client-{n}") > 0
    assert len(limiter) == 10
    assert limiter.take("client-0") > 0  # forgotten here, still refused by the database


def test_form_tokens_are_bound_to_the_client_and_to_the_key(settings):
    keyed = settings.model_copy(update={"secret_key": "k" * 20})
    token = form_token(keyed, "192.0.2.1")
    assert form_token_valid(keyed, token, "192.0.2.1")
    assert not form_token_valid(keyed, token, "192.0.2.2")
    assert not form_token_valid(keyed, token + "x", "192.0.2.1")
    rotated = keyed.model_copy(update={"secret_key": "n" * 20, "previous_secret_keys": ("k" * 20,)})
    assert form_token_valid(rotated, token, "192.0.2.1")
    assert not form_token_valid(settings.model_copy(update={"secret_key": "n" * 20}), token,
                                "192.0.2.1")


def test_signed_values_carry_their_purpose_and_time(settings):
    keyed = settings.model_copy(update={"secret_key": "k" * 20})
    token = sign(keyed, "undo", "7:123")
    assert unsign(keyed, "undo", token, 60) == "7:123"
    assert unsign(keyed, "form", token, 60) is None
    assert unsign(keyed, "undo", "ünïcode", 60) is None
    assert isinstance(issued_at(token), int) and issued_at("garbage") is None


def test_masked_addresses_and_readable_colours():
    assert mask_address("anna.kowalska@kwp-krakow.example.org") == "a•••a@k•••e.org"
    assert mask_address("jo@x.eu") == "j•••@x•••.eu"
    assert mask_address("a@localhost") == "a•••@l•••t"
    assert readable_on("#17365d") == "#ffffff" and readable_on("#f5d90a") == "#111111"
    assert readable_on("#fff") == "#111111"
