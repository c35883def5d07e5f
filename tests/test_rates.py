"""The shared sending rate (SQLite and PostgreSQL): slots 1/rate apart, whoever draws them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from newsletter.store import Store
from newsletter.store.rates import Rate, Rates


@pytest.fixture
def store(database_url):
    with Store.open(database_url) as opened:
        yield opened


def test_grants_follow_each_other_and_idle_time_earns_no_burst(store):
    rates = Rates(store)
    first = rates.grant("ses", 10.0, 5, now=1000.0)
    assert (first.start, first.count) == (1000.0, 5) and first.spacing == pytest.approx(0.1)
    second = rates.grant("ses", 10.0, 5, now=1000.1)
    assert second.start == pytest.approx(1000.5)  # after the first grant's five slots
    later = rates.grant("ses", 10.0, 1, now=2000.0)
    assert later.start == 2000.0  # an idle hour earns no burst
    other = rates.grant("other", 100.0, 1, now=1000.0)
    assert other.start == 1000.0  # each rate is its own schedule


def test_the_latest_rate_is_kept(store):
    rates = Rates(store)
    rates.grant("ses", 10.0, 1, now=1000.0)
    rates.grant("ses", 20.0, 1, now=1000.0)
    with store.engine.connect() as connection:
        assert connection.scalar(select(Rate.per_second).where(Rate.name == "ses")) == 20.0


def test_concurrent_grants_never_share_a_slot(store):
    """8 senders x 5 grants x 3 slots at 10/s, all asked at once: 12 s of schedule, back to
    back, each slot in one grant only."""
    rates = Rates(store)
    with ThreadPoolExecutor(8) as pool:
        grants = [grant for batch in pool.map(
            lambda _: [rates.grant("ses", 10.0, 3, now=1000.0) for _ in range(5)], range(8))
            for grant in batch]
    starts = sorted(grant.start for grant in grants)
    assert starts == pytest.approx([1000.0 + 0.3 * n for n in range(40)])
