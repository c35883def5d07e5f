"""The store on SQLite and on PostgreSQL: the same tests, the same results."""

import datetime as dt

import pytest
from sqlalchemy import text

from newsletter.errors import (
    AddressSuppressed,
    AlreadySubscribed,
    DatabaseError,
    InvalidAddress,
    InvalidValue,
    SubscriberNotFound,
)
from newsletter.store import Status, Store
from newsletter.store import database as schema
from newsletter.store.models import first_name

OUR_TABLES = {"subscribers", "consents", "suppressions", "store_meta"}


def add_active(store, email, **fields):
    return store.add(email, status=Status.ACTIVE, **fields)


def test_add_and_look_up_however_the_address_is_spelt(store):
    added = store.add(" Anna.Nowak@Policja.gov.PL ", name="  Dr. Anna   Nowak ",
                      attributes={"Organisation": "KWP Kraków", "Country ": "PL", "empty": " "},
                      tags=["Police", "training", "police"])
    assert added.id and added.status is Status.PENDING and added.source == "cli"
    found = store.get_by_email("anna.nowak@policja.gov.pl")
    assert found.id == added.id and store.get(added.id).email == "Anna.Nowak@Policja.gov.PL"
    assert found.name == "Dr. Anna Nowak" and found.first_name == "Anna"
    assert found.attributes == {"country": "PL", "organisation": "KWP Kraków"}
    assert found.tags == ["police", "training"]
    assert found.created_at.tzinfo is not None and found.confirmed_at is None
    assert store.get_by_email("someone@example.org") is None
    assert store.get(999_999) is None


def test_an_address_is_on_the_list_once(store):
    store.add("anna@example.org")
    with pytest.raises(AlreadySubscribed, match="already on the list"):
        store.add("ANNA@example.org")


@pytest.mark.parametrize("fields", [{"name": "x" * 201}, {"attributes": {"email": "x"}},
                                    {"attributes": {"note": "x" * 1001}}, {"tags": ["t" * 65]}])
def test_bad_values_are_refused(store, fields):
    with pytest.raises(InvalidValue):
        store.add("anna@example.org", **fields)
    assert store.count() == 0


def test_invalid_addresses_are_refused(store):
    with pytest.raises(InvalidAddress):
        store.add("anna@@example.org")


def test_first_name_prefers_the_attribute_then_the_name():
    assert first_name("Anna Nowak", {"first_name": " Ania "}) == "Ania"
    assert first_name("Prof. Dr. Inés García", {}) == "Inés"
    assert first_name("Vries, Jan de", {}) == "Jan"
    assert first_name("", {}) == ""


def test_double_opt_in_confirmation_records_consent(store):
    pending = store.add("anna@example.org")
    store.record_consent(pending.id, method="web form", ip="203.0.113.7",
                         evidence="Subscribe to the ASIT newsletter")
    confirmed = store.confirm(pending.id, ip="203.0.113.7")
    assert confirmed.status is Status.ACTIVE and confirmed.confirmed_at is not None
    again = store.confirm(pending.id)  # a second click changes nothing
    assert again.confirmed_at == confirmed.confirmed_at
    consents = store.personal_data("anna@example.org")["consents"]
    assert [c["method"] for c in consents] == ["web form", "confirmation link"]
    assert consents[0]["ip"] == "203.0.113.7"


@pytest.mark.parametrize("left", [Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED])
def test_who_left_stays_out_unless_resubscribed(store, left):
    anna = add_active(store, "anna@example.org")
    changed = store.set_status(anna.id, left, reason="one-click", issue="2025-04-asit")
    assert changed.status is left and changed.unsubscribed_at is not None
    assert changed.status_reason == "one-click" and changed.status_issue == "2025-04-asit"
    assert store.is_suppressed("ANNA@example.org")
    with pytest.raises(AddressSuppressed):
        store.add("anna@example.org", status=Status.ACTIVE)
    with pytest.raises(AddressSuppressed):
        store.set_status(anna.id, Status.ACTIVE, reason="oops")
    with pytest.raises(AddressSuppressed):
        store.confirm(anna.id)
    back = store.add("anna@example.org", status=Status.ACTIVE, resubscribe=True)
    assert back.id == anna.id and back.status is Status.ACTIVE and back.unsubscribed_at is None


def test_unsubscribe_a_batch_at_once_as_set_status_would(store):
    anna, bela, cyril = (add_active(store, f"{n}@example.org") for n in ("anna", "bela", "cyril"))
    pending = store.add("dana@example.org")
    bounced = add_active(store, "emil@example.org")
    store.set_status(bounced.id, Status.BOUNCED, reason="hard bounce", issue="2025-03")
    erased = add_active(store, "fero@example.org")
    store.forget(erased.email)
    by_page = add_active(store, "gita@example.org")
    store.set_status(by_page.id, Status.UNSUBSCRIBED, reason="unsubscribe page", issue="2025-04")
    requests = [(anna.id, "one-click", "2025-05"), (bela.id, "one-click", "2025-05"),
                (cyril.id, "unsubscribe page", None), (pending.id, "one-click", "2025-05"),
                (bounced.id, "one-click", "2025-05"), (erased.id, "one-click", "2025-05"),
                (by_page.id, "one-click", "2025-05"), (anna.id, "one-click", "2025-05"),
                (0, "one-click", None), (2**63, "one-click", None)]
    found = store.unsubscribe(requests)
    assert [getattr(f, "status", None) for f in found] == [
        Status.UNSUBSCRIBED, Status.UNSUBSCRIBED, Status.UNSUBSCRIBED, Status.UNSUBSCRIBED,
        Status.BOUNCED, None, Status.UNSUBSCRIBED, Status.UNSUBSCRIBED, None, None]
    assert found[0] == found[7] and found[0].email == "anna@example.org"
    for (subscriber_id, reason, issue), standing in zip(requests[:4], found, strict=False):
        stored = store.get(subscriber_id)
        assert (stored.status, stored.status_reason, stored.status_issue) == (
            Status.UNSUBSCRIBED, reason, issue)
        assert stored.unsubscribed_at == stored.status_changed_at == stored.updated_at
        assert stored.unsubscribed_at == standing.unsubscribed_at
        assert standing.status_reason == reason and store.is_suppressed(stored.email)
    kept = store.get(by_page.id)  # the first reason and time stay
    assert (kept.status_reason, kept.status_issue) == ("unsubscribe page", "2025-04")
    assert found[6].unsubscribed_at == kept.unsubscribed_at
    assert (store.get(bounced.id).status_reason, found[4].status_reason) == ("hard bounce",) * 2
    assert store.get(pending.id).confirmed_at is None
    assert store.unsubscribe(requests[:1]) == found[:1]  # again: nothing changes
    back = store.set_status(anna.id, Status.ACTIVE, reason="undo", resubscribe=True)
    assert back.unsubscribed_at is None


def test_an_id_no_database_holds_is_nobody_and_spoils_no_batch(store):
    anna, bela = add_active(store, "anna@example.org"), add_active(store, "bela@example.org")
    assert store.unsubscribe([]) == []
    assert store.unsubscribe([(-1, "one-click", None), (10**30, "one-click", None)]) == [None] * 2
    found = store.unsubscribe([(10**30, "one-click", None), (anna.id, "one-click", None)])
    assert found[0] is None and found[1].status is Status.UNSUBSCRIBED
    assert store.get(bela.id).status is Status.ACTIVE


def test_forget_erases_the_person_and_keeps_only_a_hash(store):
    anna = add_active(store, "anna@example.org", name="Anna", attributes={"org": "CESIE"})
    store.record_consent(anna.id, method="web form", ip="203.0.113.7")
    erasure = store.forget("Anna@Example.org")
    assert erasure.removed["name"] == "Anna" and erasure.consents == 1
    assert store.get(anna.id) is None and store.get_by_email("anna@example.org") is None
    with store.engine.connect() as connection:
        dumped = " ".join(str(row) for table in OUR_TABLES
                          for row in connection.execute(text(f"SELECT * FROM {table}")))
    assert "anna" not in dumped.lower() and "203.0.113.7" not in dumped
    assert store.is_suppressed("anna@example.org")
    data = store.personal_data("anna@example.org")
    assert data["subscriber"] is None and data["suppression"]["reason"] == "erased"
    with pytest.raises(AddressSuppressed, match="erased"):
        store.add("anna@example.org")
    assert store.add("anna@example.org", resubscribe=True).id != anna.id  # ids never reused
    assert not store.is_suppressed("anna@example.org")
    assert store.forget("anna@example.org").removed is not None


def test_forgetting_an_unknown_address_still_suppresses_it(store):
    assert store.forget("nobody@example.org").removed is None
    assert store.is_suppressed("nobody@example.org")
    with pytest.raises(SubscriberNotFound):
        store.personal_data("someone-else@example.org")


def test_ids_are_never_reused(store):
    first = add_active(store, "a@example.org")
    store.forget("a@example.org")
    assert add_active(store, "b@example.org").id > first.id


def test_audience_streams_active_subscribers_in_id_order(store):
    people = [add_active(store, f"p{n}@example.org", tags=["police"] if n % 2 else ["ngo"])
              for n in range(25)]
    store.add("pending@example.org", tags=["police"])
    store.set_status(people[3].id, Status.BOUNCED, reason="hard bounce")
    batches = list(store.audience(batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 4]
    ids = [r.id for b in batches for r in b]
    assert ids == sorted(ids) and people[3].id not in ids
    police = [r.email for b in store.audience(["Police"], batch_size=7) for r in b]
    assert police == [f"p{n}@example.org" for n in range(25) if n % 2 and n != 3]
    assert [r.id for b in store.audience(["ngo", "police"], after_id=ids[19]) for r in b] \
        == ids[20:]
    assert store.count(statuses=[Status.ACTIVE], tags=["police"]) == len(police)
    assert store.counts_by_status()[Status.PENDING] == 1
    with store.engine.connect() as connection:
        planned = connection.execute(store.audience_ids(["ngo"])).scalars().all()
    assert planned == [p.id for n, p in enumerate(people) if n % 2 == 0]


def test_count_those_lacking_an_attribute(store):
    add_active(store, "a@example.org", attributes={"organisation": "Europol", "city": "Den Haag"},
               tags=["police"])
    add_active(store, "b@example.org", attributes={"city": "Sofia"}, tags=["police"])
    add_active(store, "c@example.org", tags=["ngo"])
    store.add("d@example.org")  # pending
    active = [Status.ACTIVE]
    assert store.count(statuses=active, lacking="organisation") == 2
    assert store.count(statuses=active, tags=["police"], lacking="organisation") == 1
    assert store.count(statuses=active, lacking="city") == 1
    assert store.count(lacking="nope") == 4
    assert store.attribute_names(statuses=active, tags=["police"]) == ["city", "organisation"]


def test_recipients_know_their_first_name(store):
    add_active(store, "anna@example.org", name="Anna Nowak")
    (recipient,), = store.audience()
    assert recipient.first_name == "Anna" and recipient.name == "Anna Nowak"


def test_an_outdated_or_foreign_database_is_refused(database_url):
    engine = schema.make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE other_app (id INTEGER)"))
        with pytest.raises(DatabaseError, match="no newsletter schema version"):
            Store.open(database_url)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE other_app"))
        schema.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        if schema.head_revision() != "0001":
            with pytest.raises(DatabaseError, match="db upgrade"):
                Store.open(database_url)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(DatabaseError, match="upgrade newsletter itself"):
            Store.open(database_url)
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url):
    with Store.open(sqlite_url) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_an_unreachable_server_is_a_clear_error():
    with pytest.raises(DatabaseError, match="cannot open the database"):
        Store.open("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")


def test_timestamps_are_utc(store):
    anna = add_active(store, "anna@example.org")
    assert anna.created_at.utcoffset() == dt.timedelta(0)
    assert store.get(anna.id).status_changed_at.utcoffset() == dt.timedelta(0)
