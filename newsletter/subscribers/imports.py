"""CSV import: stream a file of any size into the list, one transaction per batch of rows.

Bad input loses nothing: a file that cannot be read as a whole (wrong encoding, no email column)
is refused before anything is written; a bad row is reported with its line number and reason,
copied to a rejects file (re-importable once fixed) and the other rows import. Reading the file
is ``newsletter.subscribers.importfile``; what a valid row does to the list is the merge policy in
``newsletter.subscribers.merging``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from newsletter.errors import ImportFileError
from newsletter.store import Store, bulk
from newsletter.store.models import utcnow
from newsletter.subscribers.importfile import REJECT_COLUMNS, ImportOptions, layout_of, reading
from newsletter.subscribers.merging import Policy, merge_batch

__all__ = ["ImportOptions", "ImportReport", "Reject", "import_csv"]
MAX_SHOWN = 100  # rejected rows kept in the report for display (all go to the rejects file)


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did, row by row counted once each."""

    path: Path
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    suppressed: int = 0
    duplicates: int = 0
    rejected: int = 0
    welcomed: int = 0  # with --welcome: those welcome issues will go to
    rejects_path: Path | None = None
    set_aside: int = 0  # rows written to the rejects file: rejected, and ignored duplicates
    shown: list[Reject] = field(default_factory=list)  # the first MAX_SHOWN of those

    @property
    def rows(self) -> int:
        return (self.added + self.updated + self.unchanged + self.suppressed + self.duplicates
                + self.rejected)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in
                ("added", "updated", "unchanged", "suppressed", "duplicates", "rejected")}


def default_rejects_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejects.csv")


def import_csv(store: Store, path: Path, options: ImportOptions | None = None, *,
               rejects_path: Path | None = None,
               progress: Callable[[int], None] | None = None,
               parallel: bool | None = None) -> ImportReport:
    """Import a CSV file; ``progress`` is called with the bytes read so far after each batch.
    ``parallel`` reads the file in a child process (None: for large files, see importfile)."""
    path, options = Path(path), options or ImportOptions()
    report = ImportReport(path)
    policy = Policy(options.update, options.resubscribe, options.status,
                    options.source or f"import:{path.name}", utcnow())
    rejects_path = rejects_path or default_rejects_path(path)
    with reading(path, options, parallel=parallel) as source:
        layout = layout_of(path, options)  # refused as a whole? (a child reads meanwhile)
        if not os.access(rejects_path.parent, os.W_OK):
            raise ImportFileError(f"cannot write the rejects file {rejects_path}: "
                                  "pass --rejects PATH")
        with bulk.collector_paused(), _Rejects(rejects_path, report, layout.header) as rejects:
            for chunk in source:
                for line, reason, cells in chunk.rejected:
                    rejects.write(line, reason, cells)
                if chunk.rows:
                    with bulk.batch(store) as batch:
                        result = merge_batch(batch, chunk.rows, policy)
                    for outcome, count in result.counts.items():
                        setattr(report, outcome.value, getattr(report, outcome.value) + count)
                    for row, reason in result.ignored:
                        assert row.cells is not None, "a repeat keeps its cells"
                        rejects.write(row.line, reason, row.cells, counted=False)
                if progress:
                    progress(chunk.position)
                del chunk  # before the next batch is read: one in memory at a time
    if options.welcome:
        report.welcomed = store.welcome_imported(policy.stamp)
    return report


class _Rejects:
    """The rejects file, created on the first rejected row: the reason, then the row as read."""

    def __init__(self, path: Path, report: ImportReport, header: list[str]):
        self.path, self.report, self.header = path, report, header
        self._file: IO[str] | None = None
        self._writer: Any = None

    def write(self, line: int, reason: str, cells: list[str], *, counted: bool = True) -> None:
        self.report.set_aside += 1
        if counted:
            self.report.rejected += 1
        if len(self.report.shown) < MAX_SHOWN:
            self.report.shown.append(Reject(line, reason))
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow([*REJECT_COLUMNS, *self.header])
            self.report.rejects_path = self.path
        self._writer.writerow([line, reason, *cells])

    def __enter__(self) -> _Rejects:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._file is not None:
            self._file.close()
