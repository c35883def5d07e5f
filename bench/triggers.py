"""A scheduler pass when no one is due: 1,000,000 subscribers, five triggered issues (a welcome
and a four-step sequence), every one of them already sent to everyone (target ≤ 50 ms a pass).

    .venv/bin/python bench/triggers.py [--subscribers 1000000] [--passes 30] [--postgres]

The list and the ledger are written with bulk SQL (5 million deliveries: a minute or two),
then the scheduler's own ``Runner.run_pass`` is timed: the first pass (front matter read,
caches cold) and then steady passes, as a running scheduler makes them every 30 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scratch import drop_schema, postgres_schema
from sqlalchemy import text

from newsletter.authoring.render import render_edition
from newsletter.config import load_settings
from newsletter.sending.engine import content_hash
from newsletter.sending.scheduling import Runner
from newsletter.store import Store
from newsletter.transports import make_transport

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")
STEPS = ("2026-01-welcome", "2026-01-what-asit-is", "2026-01-our-publications",
         "2026-01-training", "2026-01-stay-in-touch")
ISSUE = """---
subject: {subject}
date: 2026-01-01
{trigger}
---

Thank you for reading the ASIT newsletter.

## {subject}

ASIT works against trafficking in human beings, with police academies across Europe.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--passes", type=int, default=30)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-triggers-") as folder:
        root = make_folder(Path(folder))
        url, drop = database(root, args.postgres)
        try:
            run(root, url, args)
        finally:
            drop()


def make_folder(root: Path) -> Path:
    shutil.copy(ROOT / "newsletter.toml", root / "newsletter.toml")
    shutil.copytree(ROOT / "templates", root / "templates")
    for number, slug in enumerate(STEPS):
        trigger = ("trigger: welcome" if number == 0 else
                   f"trigger:\n  after: {STEPS[number - 1]}\n  delay: {number * 2} days")
        (root / "issues" / slug).mkdir(parents=True)
        (root / "issues" / slug / "issue.md").write_text(ISSUE.format(
            subject=slug.split("-", 2)[2].replace("-", " ").capitalize(), trigger=trigger))
    return root


def database(root: Path, postgres: bool) -> tuple[str, Callable[[], None]]:
    if not postgres:
        return f"sqlite:///{root / 'bench.db'}", lambda: None
    scratch = postgres_schema(POSTGRES)
    if scratch is None:
        raise SystemExit(f"no PostgreSQL at {POSTGRES}")
    schema, url = scratch
    return url, lambda: drop_schema(POSTGRES, schema)


def run(root: Path, url: str, args: argparse.Namespace) -> None:
    settings = load_settings(root / "newsletter.toml", env={}).model_copy(update={
        "database_url": url, "secret_key": "bench-secret-0123456789",
        "outbox_dir": root / "outbox"})
    now = dt.datetime.now(dt.UTC)
    with Store.open(url) as store:
        started = time.perf_counter()
        fill(store, settings, args.subscribers, now)
        print(f"database         {store.engine.dialect.name}")
        print(f"subscribers      {args.subscribers:,}, each sent all {len(STEPS)} triggered "
              f"issues ({args.subscribers * len(STEPS):,} deliveries; written in "
              f"{time.perf_counter() - started:.0f} s)")
        transport = make_transport(settings, "outbox")
        runner = Runner(settings, store, lambda: transport, "bench", threading.Event())
        first = timed(runner)
        times = sorted(timed(runner) for _ in range(args.passes))
    median = statistics.median(times)
    print(f"first pass       {first:7.1f} ms (front matter read, caches cold)")
    print(f"median pass      {median:7.1f} ms over {args.passes} passes"
          f"  target 50 ms: {'met' if median <= 50 else 'MISSED'}")
    print(f"slowest          {times[-1]:7.1f} ms")


def timed(runner: Runner) -> float:
    start = time.perf_counter()
    report = runner.run_pass()
    elapsed = (time.perf_counter() - start) * 1000
    assert not report.sent and not report.held and not report.waiting, report.lines
    return elapsed


def fill(store: Store, settings: object, count: int, now: dt.datetime) -> None:
    """The list, each subscriber sent every step long ago, and the triggers live."""
    postgres = store.engine.dialect.name == "postgresql"
    joined = now - dt.timedelta(days=60)
    stamp = joined if postgres else joined.replace(tzinfo=None).isoformat(" ")
    numbers = ("generate_series(1, :count) AS n" if postgres else
               "(WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq "
               "WHERE n < :count) SELECT n FROM seq)")
    with store.writer.begin() as connection:
        connection.execute(text(
            "INSERT INTO subscribers (email, email_key, name, attributes, tags, status, "
            "status_reason, source, created_at, updated_at, status_changed_at, welcome_at) "
            "SELECT 'reader' || n || '@example.org', 'reader' || n || '@example.org', '', "
            "'{}', '[]', 'active', 'bench', 'bench', :t, :t, :t, :t "
            f"FROM {numbers}"), {"count": count, "t": stamp})
    versions = {}
    for number, slug in enumerate(STEPS):
        versions[slug] = content_hash(render_edition(settings.issues_dir / slug, settings))
        sent = joined + dt.timedelta(days=number * 3)
        at = sent if postgres else sent.replace(tzinfo=None).isoformat(" ")
        with store.writer.begin() as connection:
            connection.execute(text(
                "INSERT INTO sends (issue, subject, content_hash, audience, planned, "
                "created_at, note) VALUES (:slug, :slug, :version, '[]', :count, :t, '')"),
                {"slug": slug, "version": versions[slug], "count": count, "t": at})
            connection.execute(text(
                "INSERT INTO deliveries (issue, subscriber_id, status, attempts, finished_at, "
                "version) SELECT :slug, id, 'sent', 1, :t, :short FROM subscribers"),
                {"slug": slug, "t": at, "short": versions[slug][:16]})
            rule = ("welcome" if number == 0 else
                    f"after {STEPS[number - 1]} {number * 2 * 86400}")
            moment = now if postgres else now.replace(tzinfo=None).isoformat(" ")
            started = joined if postgres else stamp
            connection.execute(text(
                "INSERT INTO triggers (issue, rule, started_at, cursor, state, version, note, "
                "updated_at) VALUES (:slug, :rule, :started, :now, 'live', :version, '', :now)"),
                {"slug": slug, "rule": rule, "started": started, "now": moment,
                 "version": versions[slug]})
    if not postgres:
        with store.writer.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    else:
        with store.writer.begin() as connection:
            connection.exec_driver_sql("ANALYZE subscribers")
            connection.exec_driver_sql("ANALYZE deliveries")


if __name__ == "__main__":
    main()
