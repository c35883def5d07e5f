"""Nothing subscriber-facing changes state on GET: link scanners and previews follow every link."""

from __future__ import annotations

from sqlalchemy import MetaData, select

from newsletter.store import Status
from newsletter.store.ledger import Ledger
from newsletter.tokens import confirm_url, preferences_url, unsubscribe_url
from tests.web.conftest import path_of

# Reflecting takes longer than reading the rows; every test database has the same schema.
_reflected: dict[str, MetaData] = {}


def snapshot(store) -> dict[str, list[tuple]]:
    """Every row of every table."""
    dialect = store.engine.dialect.name
    tables = _reflected.get(dialect)
    if tables is None:
        tables = _reflected[dialect] = MetaData()
        tables.reflect(store.engine)
    with store.engine.connect() as connection:
        return {name: sorted(map(tuple, connection.execute(select(table))), key=repr)
                for name, table in tables.tables.items()}


def test_no_get_changes_anything(client, ctx, store, add, web_settings):
    people = [add(f"{status}@example.org", status=status) for status in Status]
    erased = add("erased@example.org")
    store.forget(erased.email)
    Ledger(store).plan("2025-04-asit-highlights", "ASIT April", "hash")
    paths = ["/subscribe", "/subscribe?email=new%40example.org&name=New", "/archive/",
             "/archive/2025-04-asit-highlights/", "/archive/nope/", "/unsubscribe/",
             "/healthz", "/webhooks/ses", "/confirm/nonsense", "/unsubscribe/nonsense",
             "/preferences/", "/preferences/nonsense"]
    for person in [*people, erased]:
        unsubscribe = path_of(unsubscribe_url(web_settings, person.id, "2025-04"), web_settings)
        paths += [unsubscribe, f"{unsubscribe}/undo",
                  path_of(confirm_url(web_settings, person.id), web_settings),
                  path_of(preferences_url(web_settings, person.id), web_settings)]
    before = snapshot(store)
    codes = {}
    for path in paths:
        with client.get(path) as response:
            codes[path] = response.status_code
    ctx.signups.drain()
    assert snapshot(store) == before
    assert not web_settings.outbox_dir.exists()
    assert codes["/webhooks/ses"] == 405 and codes["/archive/2025-04-asit-highlights/"] == 200
    assert set(codes.values()) <= {200, 400, 404, 405}
