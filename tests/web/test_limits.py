"""The in-memory rate limiter: bursts, refill, bounded memory; and the signed form tokens."""

from __future__ import annotations

import threading

from newsletter.web.limits import Limit, RateLimiter
from newsletter.web.pages import mask_address, readable_on
from newsletter.web.signing import form_token, form_token_valid, issued_at, sign, unsign


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_hourly_rate():
    clock = Clock()
    limiter = RateLimiter(Limit(burst=3, per_hour=60), clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("a") == 61
    assert limiter.allow("b")  # keys are independent
    clock.now += 60
    assert limiter.allow("a") and not limiter.allow("a")
    clock.now += 3600
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]  # full, no more


def test_memory_is_bounded_by_dropping_the_least_recently_used_key():
    limiter = RateLimiter(Limit(burst=1, per_hour=1), max_keys=100, clock=Clock())
    assert limiter.allow("first") and not limiter.allow("first")
    for n in range(1000):
        limiter.allow(f"client-{n}")
    assert len(limiter) == 100
    assert limiter.allow("first")  # forgotten: starts full again


def test_threads_never_get_more_than_the_burst():
    limiter = RateLimiter(Limit(burst=50, per_hour=0.001), clock=Clock())
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.extend(
        limiter.allow("shared") for _ in range(100))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 50


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
