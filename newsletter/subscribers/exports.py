"""Export the list, streamed in id order: CSV in the import format, or JSON with every field.

The CSV is exactly what ``subscribers import`` reads (email, name, status, tags, language, then
one column per attribute), so export → import into a fresh database → export is the identity.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Collection
from typing import Any, TextIO

from newsletter.store import Status, Store, bulk

CSV_COLUMNS = ("email", "name", "status", "tags", "language")
JSON_COLUMNS = ("id", "email", "name", "status", "tags", "language", "attributes", "source",
                "created_at", "updated_at", "confirmed_at", "unsubscribed_at",
                "status_changed_at", "status_reason", "status_issue")
TAG_SEPARATOR = ";"


def export_csv(store: Store, out: TextIO, *, statuses: Collection[Status] = (),
               tags: Collection[str] = ()) -> int:
    """Write matching subscribers as CSV; return how many."""
    with bulk.collector_paused():
        return _export_csv(store, out, statuses, tags)


def _export_csv(store: Store, out: TextIO, statuses: Collection[Status],
                tags: Collection[str]) -> int:
    attributes = store.attribute_names(statuses=statuses, tags=tags)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *attributes])
    count = 0
    columns = ("id", "email", "name", "status", "tags", "language", "attributes")
    for rows in store.rows(columns, statuses=statuses, tags=tags):
        writer.writerows(
            [email, name, status.value, TAG_SEPARATOR.join(row_tags), language or "",
             *[values.get(name, "") for name in attributes]]
            for _id, email, name, status, row_tags, language, values in rows)
        count += len(rows)
    return count


def export_json(store: Store, out: TextIO, *, statuses: Collection[Status] = (),
                tags: Collection[str] = ()) -> int:
    """Write matching subscribers as a JSON array of objects with every field; return how many."""
    with bulk.collector_paused():
        return _export_json(store, out, statuses, tags)


def _export_json(store: Store, out: TextIO, statuses: Collection[Status],
                 tags: Collection[str]) -> int:
    count = 0
    out.write("[")
    for rows in store.rows(JSON_COLUMNS, statuses=statuses, tags=tags):
        for row in rows:
            out.write(",\n" if count else "\n")
            out.write(json.dumps(dict(zip(JSON_COLUMNS, row, strict=True)), default=_plain,
                                 ensure_ascii=False))
            count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {value!r}")
