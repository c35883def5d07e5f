"""What one imported row does to the list: the merge policy of ``subscribers import``.

- A new address is added (status from the file's ``status`` column, else the import's default).
- An address that left (unsubscribed, bounced, complained) or was erased stays as it is and
  counts as *suppressed*, unless ``resubscribe`` is given.
- An address already on the list is *unchanged*, unless ``update`` is given: then a non-empty
  name replaces the name, attributes are merged (empty cells keep the old value), tags are added
  and a status given in the file is applied. A status that stops mail (unsubscribed, bounced,
  complained) is honoured even without ``update``: it can only protect people.
- A row repeating an address that an earlier row of the same file added or changed is a
  *duplicate*: ignored (and written to the rejects file), or merged in with ``update``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from newsletter.store.bulk import Batch, Existing
from newsletter.store.models import Status


class Outcome(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SUPPRESSED = "suppressed"
    DUPLICATE = "duplicates"


@dataclass(slots=True)
class Row:
    """A valid row of an import file, already in canonical form."""

    line: int
    key: str
    email: str
    name: str
    attributes: str  # a JSON object, keys sorted
    tags: str  # a JSON array, sorted
    status: Status | None  # from the file; None means "not given"
    cells: list[str]  # as read, for the rejects file


@dataclass(frozen=True)
class Policy:
    update: bool
    resubscribe: bool
    status: Status  # for new rows whose file gives none
    source: str
    stamp: dt.datetime  # updated_at of every row this import writes: marks them "touched"


@dataclass(slots=True)
class _New:
    row: Row
    status: Status


@dataclass(frozen=True)
class BatchResult:
    counts: Counter[Outcome]
    ignored: list[tuple[Row, str]]  # duplicates not applied, with the reason


def merge_batch(batch: Batch, rows: list[Row], policy: Policy) -> BatchResult:
    """Apply one batch of rows against the database, inside the batch's transaction."""
    keys = list(dict.fromkeys(row.key for row in rows))
    may_change = policy.update or policy.resubscribe or any(row.status for row in rows)
    state: dict[str, Existing | _New] = dict(batch.existing(keys, policy.stamp, full=may_change))
    erased = batch.erased([key for key in keys if key not in state])
    touched: dict[str, int] = {}  # key → line of the row that added or changed it
    counts: Counter[Outcome] = Counter()
    ignored: list[tuple[Row, str]] = []
    for row in rows:
        current = state.get(row.key)
        if current is None:  # the common case, kept short
            if row.key in erased and not policy.resubscribe:
                counts[Outcome.SUPPRESSED] += 1
            else:
                state[row.key] = _New(row, row.status or policy.status)
                touched[row.key] = row.line
                counts[Outcome.ADDED] += 1
        elif row.key in touched or (isinstance(current, Existing) and current.touched):
            counts[Outcome.DUPLICATE] += 1
            if policy.update:
                _merge(current, row, policy)
                touched.setdefault(row.key, row.line)
            else:
                first = touched.get(row.key)
                ignored.append((row, "repeats an address earlier in the file"
                                + (f" (line {first})" if first else "")))
        else:
            assert isinstance(current, Existing)
            outcome = _existing(current, row, policy)
            if outcome is Outcome.UPDATED:
                touched[row.key] = row.line
            counts[outcome] += 1
    _write(batch, state, touched, erased, policy)
    return BatchResult(counts, ignored)


def _existing(current: Existing, row: Row, policy: Policy) -> Outcome:
    if current.status.suppressed:
        comeback = row.status or policy.status
        if not policy.resubscribe or comeback.suppressed:
            return Outcome.SUPPRESSED
        _set_status(current, comeback, policy)
    elif row.status and (row.status.suppressed or policy.update):
        _set_status(current, row.status, policy)
    if policy.update:
        _update_fields(current, row)
    return Outcome.UPDATED if current.touched else Outcome.UNCHANGED


def _merge(current: Existing | _New, row: Row, policy: Policy) -> None:
    """A duplicate under ``update``: later rows win, as if imported one after the other."""
    if isinstance(current, _New):
        new = current.row
        new.name = row.name or new.name
        new.attributes = _dumps(json.loads(new.attributes) | json.loads(row.attributes))
        new.tags = _dumps(sorted(set(json.loads(new.tags)) | set(json.loads(row.tags))))
        current.status = row.status or current.status
        return
    if row.status and not (current.status.suppressed and not row.status.suppressed
                           and not policy.resubscribe):
        _set_status(current, row.status, policy)
    _update_fields(current, row)
    current.touched = True


def _update_fields(current: Existing, row: Row) -> None:
    name = row.name or current.name
    attributes = current.attributes | json.loads(row.attributes)
    tags = sorted(set(current.tags) | set(json.loads(row.tags)))
    if (name, attributes, tags) != (current.name, current.attributes, current.tags):
        current.name, current.attributes, current.tags = name, attributes, tags
        current.touched = True


def _set_status(current: Existing, status: Status, policy: Policy) -> None:
    if status == current.status:
        return
    current.status, current.status_reason = status, "import"
    current.status_changed_at = policy.stamp
    current.unsubscribed_at = policy.stamp if status.suppressed else None
    current.touched = True


def _write(batch: Batch, state: dict[str, Existing | _New], touched: dict[str, int],
           erased: set[str], policy: Policy) -> None:
    stamp, source = batch.timestamp(policy.stamp), policy.source
    reason = "import"
    new, changed = [], []
    for key in touched:
        entry = state[key]
        if isinstance(entry, _New):
            row, status = entry.row, entry.status
            new.append((row.email, key, row.name, row.attributes, row.tags, status.value,
                        reason, source, stamp, stamp, stamp,
                        stamp if status.suppressed else None))
        else:
            changed.append(_update_row(entry, policy))
    batch.lift([key for key in touched if key in erased])
    batch.insert(new)
    batch.update(changed)


def _update_row(entry: Existing, policy: Policy) -> dict[str, Any]:
    return {"b_id": entry.id, "b_name": entry.name, "b_attributes": entry.attributes,
            "b_tags": entry.tags, "b_status": entry.status,
            "b_status_reason": entry.status_reason,
            "b_status_changed_at": entry.status_changed_at, "b_updated_at": policy.stamp,
            "b_unsubscribed_at": entry.unsubscribed_at}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
