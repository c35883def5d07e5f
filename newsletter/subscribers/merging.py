"""What one imported row does to the list: the merge policy of ``subscribers import``.

- A new address is added (status from the file's ``status`` column, else the import's default).
- An address that left (unsubscribed, bounced, complained) or was erased stays as it is and
  counts as *suppressed*, unless ``resubscribe`` is given.
- An address already on the list is *unchanged*, unless ``update`` is given: then a non-empty
  name replaces the name, a language replaces the language, attributes are merged (empty cells
  keep the old value), tags are added and a status given in the file is applied. A status that
  stops mail (unsubscribed, bounced, complained) is honoured even without ``update``: it can
  only protect people.
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
from newsletter.subscribers.importfile import INSERTED, Row
from newsletter.values import SUPPRESSED, Status


class Outcome(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SUPPRESSED = "suppressed"
    DUPLICATE = "duplicates"


# Addresses already on the list are looked up and merged this many at a time.
PRESENT_SLICE = 10_000


@dataclass(frozen=True)
class Policy:
    update: bool
    resubscribe: bool
    status: Status  # for new rows whose file gives none
    source: str
    stamp: dt.datetime  # updated_at of every row this import writes: marks them "touched"


@dataclass(frozen=True)
class BatchResult:
    counts: Counter[Outcome]
    ignored: list[tuple[Row, str]]  # duplicates not applied, with the reason


def merge_batch(batch: Batch, rows: list[Row], policy: Policy) -> BatchResult:
    """Apply one batch of rows against the database, inside the batch's transaction.

    New addresses go in first and the database reports those it already had: its unique index
    checks every key anyway, so an address new to the list costs no lookup of its own. Only the
    addresses already there are looked up and merged row by row.
    """
    first: dict[str, Row] = {}  # the first row of each address, in file order
    repeats: dict[str, list[Row]] = {}  # the later ones
    for row in rows:
        if first.setdefault(row.key, row) is not row:
            repeats.setdefault(row.key, []).append(row)
    erased = batch.erased(first)
    blocked = erased if not policy.resubscribe else set()
    if blocked or (repeats and policy.update):
        fresh = [_merged(row, repeats.get(key), policy) for key, row in first.items()
                 if key not in blocked]
    else:  # the common case: nothing to merge or leave out
        fresh = list(first.values())
    present = batch.insert_new(*_insertable(batch, fresh, policy))
    batch.lift([key for key in erased if key not in blocked and key not in present])
    counts: Counter[Outcome] = Counter()
    counts[Outcome.ADDED] = len(fresh) - len(present)
    ignored: list[tuple[Row, str]] = []
    for key, later in repeats.items():
        if key not in present and key not in blocked:  # added just now: the rest repeat it
            counts[Outcome.DUPLICATE] += len(later)
            if not policy.update:
                ignored += [(row, _repeat(first[key].line)) for row in later]
    for key in blocked:
        counts[Outcome.SUPPRESSED] += 1 + len(repeats.get(key, ()))
    groups = [(first[key], repeats.get(key)) for key in present]
    for start in range(0, len(groups), PRESENT_SLICE):  # bounds the memory of full lookups
        _merge_present(batch, groups[start:start + PRESENT_SLICE], policy, counts, ignored)
    ignored.sort(key=lambda pair: pair[0].line)
    return BatchResult(counts, ignored)


def _insertable(batch: Batch, rows: list[Row], policy: Policy) -> tuple[
        list[tuple[Any, ...]], tuple[str, ...], dict[str, Any]]:
    """The rows as Batch.insert_new takes them: values, their columns, the shared values."""
    shared = batch.shared(policy.stamp, status=policy.status, reason="import",
                          source=policy.source)
    # Without any language the column is left out (NULL by default): no value to bind per row.
    width = len(INSERTED) if any(row.language for row in rows) else len(INSERTED) - 1
    columns = INSERTED[:width]
    if not any(row.status for row in rows):  # the file gives no status: one for all
        return [row[:width] for row in rows], columns, shared
    own = ("status", "unsubscribed_at")  # from each row's status
    stopped = shared["status_changed_at"]
    return ([(*row[:width], _VALUE[status], stopped if status in SUPPRESSED else None)
             for row in rows for status in [row.status or policy.status]],
            (*columns, *own), {name: v for name, v in shared.items() if name not in own})


def _merged(row: Row, later: list[Row] | None, policy: Policy) -> Row:
    """The row to insert for a new address: its first row, with ``update`` its repeats too."""
    if not later or not policy.update:
        return row
    merged = row
    for repeat in later:
        merged = merged._replace(
            name=repeat.name or merged.name,
            language=repeat.language or merged.language,
            attributes=_dumps(json.loads(merged.attributes) | json.loads(repeat.attributes)),
            tags=_dumps(sorted(set(json.loads(merged.tags)) | set(json.loads(repeat.tags)))),
            status=repeat.status or merged.status)
    return merged


def _merge_present(batch: Batch, groups: list[tuple[Row, list[Row] | None]], policy: Policy,
                   counts: Counter[Outcome], ignored: list[tuple[Row, str]]) -> None:
    """Apply the rows of addresses already on the list, one after the other in file order."""
    rows = [row for head, later in groups for row in (head, *(later or ()))]
    rows.sort(key=lambda row: row.line)
    may_change = policy.update or policy.resubscribe or any(row.status for row in rows)
    state = batch.existing([head.key for head, _ in groups], policy.stamp, full=may_change)
    changed: dict[str, int] = {}  # key → line of the row that changed it in this batch
    for row in rows:
        current = state[row.key]
        if current.touched:  # added or changed earlier in this import
            counts[Outcome.DUPLICATE] += 1
            if policy.update:
                _merge(current, row, policy)
                changed.setdefault(row.key, row.line)
            else:
                line = changed.get(row.key)
                ignored.append((row, _repeat(line)))
        else:
            counts[_existing(current, row, policy)] += 1
            if current.touched:
                changed[row.key] = row.line
    batch.update([_update_row(state[key], policy) for key in changed])


def _repeat(line: int | None) -> str:
    return "repeats an address earlier in the file" + (f" (line {line})" if line else "")


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


def _merge(current: Existing, row: Row, policy: Policy) -> None:
    """A repeat under ``update``: later rows win, as if imported one after the other."""
    if row.status and not (current.status.suppressed and not row.status.suppressed
                           and not policy.resubscribe):
        _set_status(current, row.status, policy)
    _update_fields(current, row)
    current.touched = True


def _update_fields(current: Existing, row: Row) -> None:
    if row.language and row.language != current.language:  # an empty cell keeps it
        current.language = row.language
        current.touched = True
    if current.attributes is None and row.attributes == current.stored_attributes \
            and row.tags == current.stored_tags and row.name in ("", current.name):
        return  # the same JSON text as stored (tags are always sorted): nothing to decode
    attributes, tags = _decoded(current)
    name = row.name or current.name
    attributes = attributes | json.loads(row.attributes)
    tags = sorted(set(tags) | set(json.loads(row.tags)))
    if (name, attributes, tags) != (current.name, current.attributes, current.tags):
        current.name, current.attributes, current.tags = name, attributes, tags
        current.touched = True


def _decoded(current: Existing) -> tuple[dict[str, str], list[str]]:
    """The row's attributes and tags, decoded from the stored JSON on first need."""
    if current.attributes is None or current.tags is None:
        current.attributes = json.loads(current.stored_attributes)
        current.tags = json.loads(current.stored_tags)
    return current.attributes, current.tags


def _set_status(current: Existing, status: Status, policy: Policy) -> None:
    if status == current.status:
        return
    current.status, current.status_reason = status, "import"
    current.status_changed_at = policy.stamp
    current.unsubscribed_at = policy.stamp if status.suppressed else None
    current.touched = True


# The stored form of each status: enum attribute lookups cost more than the rest of a row.
_VALUE = {status: status.value for status in Status}


def _update_row(entry: Existing, policy: Policy) -> dict[str, Any]:
    attributes, tags = _decoded(entry)
    change = {"b_id": entry.id, "b_name": entry.name, "b_attributes": attributes,
              "b_tags": tags, "b_language": entry.language, "b_updated_at": policy.stamp}
    if entry.status_changed_at is not None:  # set by _set_status only
        change |= {"b_status": entry.status, "b_status_reason": entry.status_reason,
                   "b_status_changed_at": entry.status_changed_at,
                   "b_unsubscribed_at": entry.unsubscribed_at}
    return change


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
