"""The shared sending rate (SQLite and PostgreSQL): slots 1/rate apart, whoever draws them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from newsletter.store import Store
from newsletter.store.models import Base
from newsletter.store.rates import Rate, Rates


@pytest.fixture
def store(database_url):
    with Store.open(database_url) as opened:
        yield opened


def test_the_migration_builds_the_model(store):
    def ours(obj, name, type_, reflected, compare_to):
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name == "rates"

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "include_object": ours})
        assert compare_metadata(context, Base.metadata) == []


def test_grants_follow_each_other_and_idle_time_earns_no_burst(store):
    rates = Rates(store)
    first = rates.grant("ses", 10.0, 5)
    assert first.count == 5 and first.spacing == pytest.approx(0.1)
    assert first.delay < 0.05  # nothing reserved yet: now
    second = rates.grant("ses", 10.0, 5)
    assert 0.4 < second.delay <= 0.5  # after the first grant's five slots
    other = rates.grant("other", 100.0, 1)
    assert other.delay < 0.05  # each rate is its own schedule


def test_the_latest_rate_applies_to_everyone(store):
    rates = Rates(store)
    rates.grant("ses", 10.0, 1)
    rates.grant("ses", 20.0, 1)
    with store.engine.connect() as connection:
        assert connection.scalar(select(Rate.per_second).where(Rate.name == "ses")) == 20.0


def test_concurrent_grants_never_share_a_slot(store):
    """8 senders x 5 grants x 3 slots at 10/s: 12 s of schedule, back to back, no overlap."""
    rates = Rates(store)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        grants = list(pool.map(lambda _: [rates.grant("ses", 10.0, 3) for _ in range(5)],
                               range(8)))
    elapsed = time.monotonic() - started
    last = rates.grant("ses", 10.0, 1)
    assert 12.0 - elapsed - 0.2 <= last.delay <= 12.0 + 0.05
    delays = sorted(grant.delay for batch in grants for grant in batch)
    assert delays[-1] <= 12.0 - 0.3 + 0.05
