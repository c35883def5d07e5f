"""Reading an import file: CSV rows turned into valid rows and rejected ones, in batches.

A file that cannot be read as a whole (wrong encoding, no email column) is refused before
anything is written; a bad row becomes a rejected row with its line number and reason.

A large file is read by a child process while this one writes the previous batch to the
database: reading (csv module, address check, JSON) is a third of an import's CPU time and the
database writes hold the other core busy. The child runs this module (``python -m
newsletter.subscribers.importfile``) and sends each batch back as a marshal frame; nothing
here imports SQLAlchemy, so the child starts in a few tens of milliseconds.

Speed (see bench/import.py): the csv module streams the file, plain addresses skip
email-validator (see newsletter.addresses), and JSON is assembled from pre-encoded keys.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import marshal
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple

import newsletter
from newsletter.addresses import checked_key, quick_key
from newsletter.errors import ImportFileError, InvalidAddress, InvalidValue
from newsletter.values import (
    MAX_ATTRIBUTES,
    NAME_LENGTH,
    RESERVED,
    VALUE_LENGTH,
    Status,
    attribute_name,
    clean_language,
    clean_tags,
)

BATCH_SIZE = 50_000  # rows per transaction; fewer, larger commits rewrite less of the index
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
    "language": {"language", "lang", "locale", "language_code"},
}
# Our vocabulary, plus the words other tools export (Mailchimp's "subscribed", "cleaned", ...),
# as plain strings: rows cross to the parent process with marshal, which takes no enums.
STATUS_WORDS = {status.value: status.value for status in Status} | {
    "subscribed": Status.ACTIVE.value, "confirmed": Status.ACTIVE.value,
    "unconfirmed": Status.PENDING.value, "cleaned": Status.BOUNCED.value}
ENCODING_HINT = ("save the file as UTF-8 (Excel: \"CSV UTF-8\") or name its encoding with "
                 "--encoding, e.g. --encoding cp1252 for Excel on Windows")
FIRST_BATCH = 5_000  # then doubling up to the batch size (see _chunks)
# Files this large are read by a child process (below that, starting it costs more than it saves).
PARALLEL_BYTES = 4 << 20
SEEN_BYTES = 8 << 20  # the child's filter of addresses seen: 2²⁶ bits (see _child)
PIPE_BYTES = 1 << 20  # Linux's default limit for a pipe an unprivileged process enlarges


@dataclass(frozen=True)
class ImportOptions:
    """How to read the file and how to merge it (see newsletter.subscribers.merging)."""

    update: bool = False
    resubscribe: bool = False
    status: Status = Status.ACTIVE  # for rows without a status of their own
    tags: tuple[str, ...] = ()  # added to every row
    columns: Mapping[str, str] = field(default_factory=dict)  # header → field, or "-" to skip
    encoding: str = "utf-8-sig"
    delimiter: str | None = None  # None: guess from the header line (, ; tab |)
    source: str | None = None  # default "import:<file name>"
    welcome: bool = False  # welcome issues go to those it adds (or makes active)
    batch_size: int = BATCH_SIZE


class Row(NamedTuple):
    """A valid row of an import file, already in canonical form. A tuple: it crosses from
    the child process as one, a million of them are made at the speed of tuples, and its
    first six fields (INSERTED) are the values an insert binds."""

    email: str
    key: str
    name: str
    attributes: str  # a JSON object, keys sorted
    tags: str  # a JSON array, sorted
    language: str | None  # a canonical BCP 47 tag; None means "not given"
    status: Status | None  # from the file; None means "not given"
    line: int
    cells: list[str] | None  # as read, for the rejects file (None: see _child)


# The columns of Row[:6]. An insert whose rows have no language binds only the first five
# (see merging._insertable): a file without a language column costs what it did before.
INSERTED = ("email", "email_key", "name", "attributes", "tags", "language")


@dataclass(slots=True)
class Chunk:
    """A batch of an import file: its valid rows, its rejected ones and the bytes read so far."""

    rows: list[Any]  # Rows (plain tuples while _plain_chunks() reads them)
    rejected: list[tuple[int, str, list[str]]]  # line, reason, cells as read
    position: int


def layout_of(path: Path, options: ImportOptions) -> Layout:
    """Check the file as a whole (encoding, header) before anything is imported."""
    check_encoding(path, options.encoding)
    with _reader(path, options) as (reader, _tell):
        return read_layout(_header(reader, path), options)


@contextmanager
def reading(path: Path, options: ImportOptions, *,
            parallel: bool | None = None) -> Iterator[Iterator[Chunk]]:
    """The file's batches of ``options.batch_size`` rows. ``parallel`` reads it in a child
    process, started at once (None: for files of PARALLEL_BYTES or more)."""
    if parallel is None:
        try:
            parallel = path.stat().st_size >= PARALLEL_BYTES
        except OSError:  # layout_of() tells the user
            parallel = False
    if not parallel:
        yield _read_chunks(path, options)
        return
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: it never fills up
        child = _start_reading(path, options, errors)
        assert child.stdout
        try:
            yield _from_child(child, path, errors)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()


def _read_chunks(path: Path, options: ImportOptions) -> Iterator[Chunk]:
    """The file in batches, read in this process."""
    for chunk in _plain_chunks(path, options):
        chunk.rows = _rows(chunk.rows)
        yield chunk


def _plain_chunks(path: Path, options: ImportOptions,
                  seen: bytearray | None = None) -> Iterator[Chunk]:
    """Batches whose rows are still plain tuples (see _row_parser)."""
    with _reader(path, options) as (reader, tell):
        layout = read_layout(_header(reader, path), options)
        yield from _chunks(reader, layout, options, tell, seen)


@contextmanager
def _reader(path: Path, options: ImportOptions) -> Iterator[tuple[Any, Callable[[], int]]]:
    """A csv reader over the file, and how far into the file it has read."""
    try:
        raw = path.open("rb")
    except OSError as error:
        raise ImportFileError(f"cannot read {path}: {error.strerror}") from None
    with raw:
        delimiter = options.delimiter or _guess_delimiter(raw)
        text = io.TextIOWrapper(raw, encoding=options.encoding, newline="")
        try:
            yield csv.reader(text, delimiter=delimiter, strict=True), raw.tell
        finally:
            text.detach()  # the with statement closes the file


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
    language: int | None = None


def read_layout(header: list[str], options: ImportOptions) -> Layout:
    """Map the header onto fields; ImportFileError if the file cannot be imported at all."""
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(f"the header has {len(header):,} columns; at most {MAX_COLUMNS} "
                              "are supported (email, name, tags, status, language and 100 "
                              "attributes)")
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
                  fields.get("status"), tuple((index, name) for name, index in attributes),
                  fields.get("language"))


def _alias(name: str) -> str:
    return next((field for field, names in HEADER_ALIASES.items() if name in names), name)


def _chunks(reader: Any, layout: Layout, options: ImportOptions, tell: Callable[[], int],
            seen: bytearray | None) -> Iterator[Chunk]:
    parse = _row_parser(layout, options)
    mask = len(seen) * 8 - 1 if seen else 0
    width, previous = len(layout.header), reader.line_num
    chunk = Chunk([], [], 0)
    # Small batches first, doubling: the writer starts sooner, and when a child reads the
    # file, it reads each batch while the writer is busy with the one before.
    size = min(FIRST_BATCH, options.batch_size)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            lines = f" (lines {previous + 1}–{reader.line_num})" if (
                reader.line_num > previous + 1) else ""
            chunk.rejected.append((previous + 1, f"unreadable CSV{lines}: {error}; fix the "
                                   "quoting and import these lines again", []))
            previous = reader.line_num
            continue
        line, previous = previous + 1, reader.line_num
        try:
            row = parse(cells, line, width)
        except (InvalidAddress, InvalidValue) as error:
            chunk.rejected.append((line, str(error), cells))
            continue
        if row is not None:
            if seen is not None:  # keep the cells of possible repeats only (see _child)
                bit = hash(row[1]) & mask
                if not seen[bit >> 3] & (1 << (bit & 7)):
                    seen[bit >> 3] |= 1 << (bit & 7)
                    row = (*row[:-1], None)
            chunk.rows.append(row)
            if len(chunk.rows) + len(chunk.rejected) >= size:
                chunk.position = tell()
                yield chunk
                chunk, size = Chunk([], [], 0), min(2 * size, options.batch_size)
    chunk.position = tell()
    yield chunk


def _row_parser(layout: Layout, options: ImportOptions) -> Callable[[list[str], int, int],
                                                                     tuple[Any, ...] | None]:
    """A function turning cells into the values of a Row, status as a plain string (None for a
    blank line); bound once per file. Plain values: the child process sends them as they are."""
    email_at, name_at, tags_at, status_at = (layout.email, layout.name, layout.tags,
                                             layout.status)
    language_at = layout.language
    attributes = [(index, encode_basestring(name) + ":") for index, name in layout.attributes]
    extra_tags = clean_tags(options.tags)
    no_tags = _json_list(extra_tags)
    known_tags: dict[str, str] = {}  # tag cells repeat: "police;training" is parsed once
    known_languages: dict[str, str] = {}  # and language cells far more: "el" is checked once

    def parse(cells: list[str], line: int, width: int) -> tuple[Any, ...] | None:
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
        language = None
        if language_at is not None and (cell := cells[language_at]):
            language = known_languages.get(cell) or _language(cell, known_languages)
        status = None
        if status_at is not None and (word := cells[status_at].strip().lower()):
            status = STATUS_WORDS.get(word)
            if status is None:
                raise InvalidValue(f"unknown status {word!r} (expected "
                                   f"{', '.join(s.value for s in Status)})")
        return (email, key, name, "{" + ",".join(parts) + "}", tags, language, status, line,
                cells)

    return parse


def _tags_json(cell: str, extra_tags: list[str], known: dict[str, str]) -> str:
    tags = _json_list(clean_tags([*clean_tags(cell), *extra_tags]))
    if len(known) < 10_000:
        known[cell] = tags
    return tags


def _language(cell: str, known: dict[str, str]) -> str | None:
    language = clean_language(cell)  # InvalidValue rejects the row
    if language is not None and len(known) < 10_000:
        known[cell] = language
    return language


def _json_list(items: list[str]) -> str:
    return "[" + ",".join(encode_basestring(item) for item in items) + "]"


# ---------------------------------------------------------------- the child process


def _from_child(child: subprocess.Popen[bytes], path: Path, errors: IO[bytes]) -> Iterator[Chunk]:
    assert child.stdout
    while (frame := _read_frame(child.stdout)) is not None:
        if frame[0] == "end":
            return
        if frame[0] == "error":
            raise ImportFileError(frame[1])
        _, rows, rejected, position = frame
        del frame  # only one batch in memory at a time (so also `del chunk` in the caller)
        chunk = Chunk(_rows(rows), rejected, position)
        del rows
        yield chunk
        del chunk
    child.wait()
    errors.seek(0)
    raise RuntimeError(f"the process reading {path} stopped (exit code {child.returncode}): "
                       f"{errors.read().decode(errors='replace')[-2000:]}")


def _start_reading(path: Path, options: ImportOptions,
                  errors: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start the child process that reads ``path``; what it prints goes to ``errors``."""
    root = str(Path(newsletter.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-m", "newsletter.subscribers.importfile"], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
    assert child.stdin and child.stdout
    if sys.platform == "linux":  # a larger pipe: 16 times fewer wake-ups than with 64 KiB
        import fcntl

        with suppress(OSError):
            fcntl.fcntl(child.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    child.stdin.write(pickle.dumps((path, options)))
    child.stdin.close()
    return child


def _rows(plain: list[tuple[Any, ...]]) -> list[Row]:
    """Rows from plain values: Row(*values) without a Python-level call for each."""
    rows: list[Row] = [tuple.__new__(Row, values) for values in plain]
    if any(row.status is not None for row in rows):
        rows = [row if row.status is None else row._replace(status=Status(row.status))
                for row in rows]
    return rows


def _read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "little")
    data = stream.read(size)
    return marshal.loads(data) if len(data) == size else None


def _write_frame(stream: BinaryIO, frame: tuple[Any, ...]) -> None:
    # marshal: plain tuples, lists and strings, three times faster than pickle both ways.
    data = marshal.dumps(frame)
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)


def _child() -> None:
    """Read the file named on stdin, send its batches to stdout.

    A row's cells (the line as read) are needed only if the row goes to the rejects file, and
    of valid rows only a repeat of an address can (see merging). So the cells of a row whose
    address has not come before in the file stay here: half the bytes to send and to hold.
    "Has not come before" is asked of a Bloom filter with one hash, which never misses a
    repeat; it keeps the cells of a few rows more than needed (1.5% at a million addresses).
    """
    gc.disable()  # as in the parent (see store.bulk.collector_paused): rows form no cycles
    path, options = pickle.load(sys.stdin.buffer)
    out = sys.stdout.buffer
    try:
        for chunk in _plain_chunks(path, options, bytearray(SEEN_BYTES)):
            _write_frame(out, ("rows", chunk.rows, chunk.rejected, chunk.position))
            del chunk  # before the next one is read
    except ImportFileError as error:
        _write_frame(out, ("error", str(error)))
    else:
        _write_frame(out, ("end",))
    out.flush()


if __name__ == "__main__":
    _child()
