"""Subscriber import and export throughput, and peak memory, on SQLite and PostgreSQL.

    .venv/bin/python bench/import.py [--rows 1000000] [--postgres URL | --no-postgres] [--sorted]

Generates a CSV (about 1% invalid rows, 1% repeated addresses, some non-ASCII names and
addresses) in a temporary folder, then imports it into a fresh database, exports it back and
imports it again with ``--update``, each step in its own process so that its peak RSS is its
own; an import of a large file also reports the peak RSS of the process that reads the file
beside it. PostgreSQL runs in a scratch
schema of NEWSLETTER_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from scratch import drop_schema, postgres_schema

POSTGRES = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FIRST = ["Anna", "Jan", "Maria", "Łukasz", "Zoë", "Dimitris", "Giulia", "Jordi", "Petra", "Ivan",
         "Eleni", "Núria", "Tomás", "Katarzyna", "Georgi", "Sofia", "Matteo", "Ágnes", "Lena"]
LAST = ["Nowak", "Kovács", "Papadopoulos", "Rossi", "García", "Novák", "Schmidt", "Dimitrov",
        "Horváth", "Costa", "Müller", "Popescu", "Jansen", "Kowalski", "Ferrari", "Ivanova"]
ORGS = ["Hellenic Police", "CESIE ETS", "KEMEA", "Europol", "La Strada International",
        "Policja KWP Kraków", "Generalitat de Catalunya", "Academy of the MoI Bulgaria"]
COUNTRIES = ["GR", "IT", "PL", "ES", "BG", "SK", "DE", "FR", "RO", "NL"]
TAGS = ["", "", "police", "ngo;training", "justice", "police;training", "research"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.gr", "wp.pl", "libero.it", "web.de", "gmx.net",
           "astynomia.gr", "policja.gov.pl", "minv.sk", "gencat.cat", "cesie.org", "kemea.gr",
           "europol.europa.eu", "lastradainternational.org", "mvr.bg", "justice.gov.sk"]
INVALID = ["not-an-address", "anna.nowak@", "@policja.gov.pl", "jan..kowalski@example.eu",
           "maria nowak@example.eu", "petra@localhost", "ivan@example.invalid", "",
           "Giulia Rossi <giulia@example.it>"]


def generate(path: Path, rows: int, seed: int = 2025, ordered: bool = False) -> None:
    """Write the test file; ``ordered`` sorts it by address, as some tools export lists."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name", "organisation", "country", "tags"])
        lines: list[list[str]] | Iterator[list[str]] = _rows(rows, seed)
        if ordered:
            lines = sorted(lines, key=_address)
        writer.writerows(lines)


def _address(row: list[str]) -> str:
    return row[0].lower()


def _rows(rows: int, seed: int) -> Iterator[list[str]]:
    rng = random.Random(seed)
    emitted: list[str] = []
    for _ in range(rows):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        roll = rng.random()
        if roll < 0.01:
            email = rng.choice(INVALID)
        elif roll < 0.02 and emitted:
            email = rng.choice(emitted).upper()  # the same address, spelt differently
        else:  # random, like real lists: the unique index gets no free locality
            local = f"{first}.{last}.{rng.getrandbits(40):x}".lower()
            if roll > 0.998:  # a few internationalised addresses: the slow path
                email = f"{local}@müller-straße.de"
            else:
                email = local.encode("ascii", "ignore").decode() + "@" + rng.choice(DOMAINS)
            if len(emitted) < 10_000:
                emitted.append(email)
        yield [email, f"{first} {last}", rng.choice(ORGS), rng.choice(COUNTRIES),
               rng.choice(TAGS)]


def phase(kind: str, url: str, csv_path: Path) -> dict[str, float]:
    """One measured step, run in a child process: import, export, or the same import again
    with ``--update`` (every address already listed, each compared with what is stored)."""
    from newsletter.store import Store
    from newsletter.subscribers.exports import export_csv
    from newsletter.subscribers.imports import ImportOptions, import_csv

    with Store.open(url) as store, ChildMemory() as children:
        start = time.perf_counter()
        if kind in ("import", "update"):
            report = import_csv(store, csv_path, ImportOptions(update=kind == "update"),
                                rejects_path=csv_path.with_suffix(".rejects.csv"))
            rows, extra = report.rows, report.counts()
        else:
            with csv_path.with_suffix(".export.csv").open("w", encoding="utf-8") as out:
                rows = export_csv(store, out)
            extra = {}
        seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "peak_rss_mb": peak_rss_mb(), "child_rss_mb": children.peak_mb, **extra}


class ChildMemory(threading.Thread):
    """The peak RSS of this process's child (the file reader), read every 100 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self.done = threading.Event()

    def __enter__(self) -> ChildMemory:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()
        self.join()

    def run(self) -> None:
        children = Path(f"/proc/self/task/{os.getpid()}/children")
        while not self.done.wait(0.1):
            with contextlib.suppress(OSError, IndexError, ValueError):
                for pid in children.read_text().split():
                    status = Path(f"/proc/{pid}/status").read_text()
                    peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
                    self.peak_mb = max(self.peak_mb, peak)


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux keeps ru_maxrss across exec (it would report the parent's
    peak), so prefer VmHWM, which starts afresh with the new program."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_phase(kind: str, url: str, csv_path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--phase", kind, "--url", url,
                          "--csv", str(csv_path)], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{kind} into {url} failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def report(label: str, figures: dict[str, float]) -> None:
    line = (f"{label:<20} {figures['rows']:>10,.0f} rows {figures['seconds']:7.2f} s "
            f"{figures['rows_per_s']:>10,.0f} rows/s   peak RSS {figures['peak_rss_mb']:5.0f} MB")
    if figures["child_rss_mb"]:
        line += f" (+ {figures['child_rss_mb']:.0f} MB reading the file in a second process)"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--sorted", action="store_true",
                        help="Sort the file by address (as some tools export lists).")
    parser.add_argument("--phase", choices=["import", "export", "update"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.url, args.csv)))
        return
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as folder:
        csv_path = Path(folder) / "subscribers.csv"
        start = time.perf_counter()
        generate(csv_path, args.rows, ordered=args.sorted)
        size = csv_path.stat().st_size / 1e6
        order = "sorted by address" if args.sorted else "in random order"
        print(f"generated {args.rows:,} rows {order} ({size:.0f} MB) in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        sqlite_url = f"sqlite:///{folder}/bench.db"
        imported = run_phase("import", sqlite_url, csv_path)
        report("SQLite import", imported)
        print("  " + ", ".join(f"{k} {int(imported[k]):,}" for k in
                               ("added", "duplicates", "rejected", "suppressed")))
        report("SQLite export", run_phase("export", sqlite_url, csv_path))
        report("SQLite --update", run_phase("update", sqlite_url, csv_path))
        if args.no_postgres:
            return
        scratch = postgres_schema(args.postgres)
        if scratch is None:
            print(f"PostgreSQL           skipped (no server at {args.postgres})")
            return
        schema, pg_url = scratch
        try:
            report("PostgreSQL import", run_phase("import", pg_url, csv_path))
            report("PostgreSQL export", run_phase("export", pg_url, csv_path))
            report("PostgreSQL --update", run_phase("update", pg_url, csv_path))
        finally:
            drop_schema(args.postgres, schema)


if __name__ == "__main__":
    main()
