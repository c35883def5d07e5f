"""CSV import: stream a file of any size into the list, one transaction per batch of rows.

Bad input loses nothing: a file that cannot be read as a whole (wrong encoding, no email column)
is refused before anything is written; a bad row is reported with its line number and reason,
copied to a rejects file (re-importable once fixed) and the other rows import. What a valid row
does to the list is the merge policy in ``newsletter.merging``.

Speed (see bench/import.py): the csv module streams the file, plain addresses skip
email-validator (see newsletter.addresses), JSON is assembled from pre-encoded keys, and each
batch costs one lookup query and one bulk insert.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any

from newsletter.addresses import checked_key, quick_key
from newsletter.errors import ImportFileError, InvalidAddress, InvalidValue
from newsletter.merging import Policy, Row, merge_batch
from newsletter.store import Status, Store, bulk
from newsletter.store.models import NAME_LENGTH, utcnow
from newsletter.store.values import (
    MAX_ATTRIBUTES,
    RESERVED,
    VALUE_LENGTH,
    attribute_name,
    clean_tags,
)

BATCH_SIZE = 20_000
MAX_COLUMNS = MAX_ATTRIBUTES + len(RESERVED)
# Columns a rejects file adds in front of the original ones; an import skips them, so a fixed
# rejects file can be imported as it is.
REJECT_COLUMNS = ("rejected_line", "rejected_reason")
IGNORE = "-"
HEADER_ALIASES = {
    "email": {"email", "e_mail", "email_address", "e_mail_address", "mail", "emailaddress"},
    "name": {"name", "full_name", "fullname", "display_name"},
    "tags": {"tags", "tag"},
    "status": {"status"},
}
# Our vocabulary, plus the words other tools export (Mailchimp's "subscribed", "cleaned", ...).
STATUS_WORDS = {status.value: status for status in Status} | {
    "subscribed": Status.ACTIVE, "confirmed": Status.ACTIVE, "unconfirmed": Status.PENDING,
    "cleaned": Status.BOUNCED}
ENCODING_HINT = ("save the file as UTF-8 (Excel: \"CSV UTF-8\") or name its encoding with "
                 "--encoding, e.g. --encoding cp1252 for Excel on Windows")
MAX_SHOWN = 100  # rejected rows kept in the report for display (all go to the rejects file)


@dataclass(frozen=True)
class ImportOptions:
    """How to read the file and how to merge it (see newsletter.merging)."""

    update: bool = False
    resubscribe: bool = False
    status: Status = Status.ACTIVE  # for rows without a status of their own
    tags: tuple[str, ...] = ()  # added to every row
    columns: Mapping[str, str] = field(default_factory=dict)  # header → field, or "-" to skip
    encoding: str = "utf-8-sig"
    delimiter: str | None = None  # None: guess from the header line (, ; tab |)
    source: str | None = None  # default "import:<file name>"
    batch_size: int = BATCH_SIZE


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


def import_csv(store: Store, path: Path, options: ImportOptions = ImportOptions(), *,
               rejects_path: Path | None = None,
               progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import a CSV file; ``progress`` is called with the bytes read so far after each batch."""
    path = Path(path)
    check_encoding(path, options.encoding)
    with bulk.collector_paused():
        return _import(store, path, options, rejects_path, progress)


def _import(store: Store, path: Path, options: ImportOptions, rejects_path: Path | None,
            progress: Callable[[int], None] | None) -> ImportReport:
    report = ImportReport(path)
    policy = Policy(options.update, options.resubscribe, options.status,
                    options.source or f"import:{path.name}", utcnow())
    rejects_path = rejects_path or default_rejects_path(path)
    if not os.access(rejects_path.parent, os.W_OK):
        raise ImportFileError(f"cannot write the rejects file {rejects_path}: pass --rejects PATH")
    with (path.open("rb") as raw, _Rejects(rejects_path, report) as rejects):
        delimiter = options.delimiter or _guess_delimiter(raw)
        text = io.TextIOWrapper(raw, encoding=options.encoding, newline="")
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        layout = read_layout(_header(reader, path), options)
        rejects.header = layout.header
        for rows, position in _batches(reader, layout, options, rejects, raw.tell):
            with bulk.batch(store) as batch:
                result = merge_batch(batch, rows, policy)
            for outcome, count in result.counts.items():
                setattr(report, outcome.value, getattr(report, outcome.value) + count)
            for row, reason in result.ignored:
                rejects.write(row.line, reason, row.cells, counted=False)
            if progress:
                progress(position)
        text.detach()  # the with statement closes the file
    return report


def check_encoding(path: Path, encoding: str) -> None:
    """Refuse a file that does not decode, before anything is imported, naming the line."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise ImportFileError(f"unknown encoding {encoding!r}") from None
    lines = 1
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    if lines == 1 and chunk[:2] in (b"\xff\xfe", b"\xfe\xff"):
                        raise ImportFileError(f"{path} is UTF-16 (Excel's \"Unicode text\"): "
                                              "pass --encoding utf-16") from None
                    line = lines + chunk.count(b"\n", 0, error.start)
                    raise ImportFileError(
                        f"{path}: line {line}: not valid {encoding} (byte "
                        f"{chunk[error.start]:#04x}): {ENCODING_HINT}") from None
                lines += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except OSError as error:
        raise ImportFileError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{path}: the file ends in the middle of a character: "
                              f"{ENCODING_HINT}") from None


def _guess_delimiter(raw: IO[bytes]) -> str:
    first = raw.readline(64 * 1024)
    raw.seek(0)
    counts = {d: first.count(d.encode()) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _header(reader: Any, path: Path) -> list[str]:
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                return list(row)
    except csv.Error as error:
        raise ImportFileError(
            f"{path}: line {reader.line_num}: unreadable header ({error})") from None
    raise ImportFileError(f"{path} is empty: expected a header line such as email,name")


@dataclass(frozen=True)
class Layout:
    """Where each field is in a row of this file."""

    header: list[str]
    email: int
    name: int | None
    tags: int | None
    status: int | None
    attributes: tuple[tuple[int, str], ...]  # (column, attribute name), sorted by name


def read_layout(header: list[str], options: ImportOptions) -> Layout:
    """Map the header onto fields; ImportFileError if the file cannot be imported at all."""
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(f"the header has {len(header):,} columns; at most {MAX_COLUMNS} "
                              "are supported (email, name, tags, status and 100 attributes)")
    mapping = {attribute_name(k): v.strip().lower() for k, v in options.columns.items()}
    fields: dict[str, int] = {}
    for index, title in enumerate(header):
        name = attribute_name(title)
        target = mapping.get(name) or _alias(name)
        if not name or target == IGNORE or name in REJECT_COLUMNS:
            continue
        target = attribute_name(target) if target != IGNORE else target
        if target in fields:
            raise ImportFileError(f"columns {fields[target] + 1} and {index + 1} both give "
                                  f"{target!r}: rename one or skip it with --map COLUMN=-")
        fields[target] = index
    if "email" not in fields:
        raise ImportFileError(
            f"no email column among {', '.join(repr(h) for h in header[:10])}: name it "
            "'email' or map it, e.g. --map 'E-Mail Address=email'")
    attributes = sorted((name, index) for name, index in fields.items() if name not in RESERVED)
    return Layout(header, fields["email"], fields.get("name"), fields.get("tags"),
                  fields.get("status"), tuple((index, name) for name, index in attributes))


def _alias(name: str) -> str:
    return next((field for field, names in HEADER_ALIASES.items() if name in names), name)


def _batches(reader: Any, layout: Layout, options: ImportOptions, rejects: _Rejects,
             tell: Callable[[], int]) -> Iterator[tuple[list[Row], int]]:
    """Valid rows in batches, with the bytes read so far; bad rows go to ``rejects``."""
    parse = _row_parser(layout, options)
    width, batch, previous = len(layout.header), [], reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            lines = f"{previous + 1}–{reader.line_num}" if reader.line_num > previous + 1 else ""
            rejects.write(previous + 1, f"unreadable CSV{f' (lines {lines})' if lines else ''}: "
                          f"{error}; fix the quoting and import these lines again", [])
            previous = reader.line_num
            continue
        line, previous = previous + 1, reader.line_num
        try:
            row = parse(cells, line, width)
        except (InvalidAddress, InvalidValue) as error:
            rejects.write(line, str(error), cells)
            continue
        if row is not None:
            batch.append(row)
            if len(batch) >= options.batch_size:
                yield batch, tell()
                batch = []
    if batch:
        yield batch, tell()


def _row_parser(layout: Layout, options: ImportOptions) -> Callable[[list[str], int, int],
                                                                     Row | None]:
    """A function turning cells into a Row (None for a blank line); bound once per file."""
    email_at, name_at, tags_at, status_at = (layout.email, layout.name, layout.tags,
                                             layout.status)
    attributes = [(index, encode_basestring(name) + ":") for index, name in layout.attributes]
    extra_tags = clean_tags(options.tags)
    no_tags = _json_list(extra_tags)
    known_tags: dict[str, str] = {}  # tag cells repeat: "police;training" is parsed once

    def parse(cells: list[str], line: int, width: int) -> Row | None:
        if len(cells) != width:
            if not any(cell.strip() for cell in cells):
                return None
            if any(cell.strip() for cell in cells[width:]):
                raise InvalidValue(f"the row has {len(cells):,} fields, the header {width}")
            cells = (cells + [""] * width)[:width]
        email = cells[email_at].strip()
        key = quick_key(email)
        if key is None:
            if not email:
                if not any(cell.strip() for cell in cells):
                    return None
                raise InvalidValue("no email address")
            key = checked_key(email)
        name = " ".join(cells[name_at].split()) if name_at is not None else ""
        if len(name) > NAME_LENGTH:
            raise InvalidValue(f"the name is longer than {NAME_LENGTH} characters")
        parts = []
        for index, prefix in attributes:
            value = cells[index].strip()
            if value:
                if len(value) > VALUE_LENGTH:
                    raise InvalidValue(f"a value is longer than {VALUE_LENGTH:,} characters")
                parts.append(prefix + encode_basestring(value))
        tags = no_tags
        if tags_at is not None and (cell := cells[tags_at]):
            tags = known_tags.get(cell) or _tags_json(cell, extra_tags, known_tags)
        status = None
        if status_at is not None and (word := cells[status_at].strip().lower()):
            status = STATUS_WORDS.get(word)
            if status is None:
                raise InvalidValue(f"unknown status {word!r} (expected "
                                   f"{', '.join(s.value for s in Status)})")
        return Row(line, key, email, name, "{" + ",".join(parts) + "}", tags, status, cells)

    return parse


def _tags_json(cell: str, extra_tags: list[str], known: dict[str, str]) -> str:
    tags = _json_list(clean_tags([*clean_tags(cell), *extra_tags]))
    if len(known) < 10_000:
        known[cell] = tags
    return tags


def _json_list(items: list[str]) -> str:
    return "[" + ",".join(encode_basestring(item) for item in items) + "]"


class _Rejects:
    """The rejects file, created on the first rejected row: the reason, then the row as read."""

    def __init__(self, path: Path, report: ImportReport):
        self.path, self.report = path, report
        self.header: list[str] = []
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
