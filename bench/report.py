"""`newsletter report` on a send to a million recipients with three million SES events.

    .venv/bin/python bench/report.py [--recipients 1000000] [--postgres [URL]] [--keep PATH]

Builds the data set with bulk SQL (no ORM, no Python loop per row): N subscribers on 12
domains, one issue sent to all of them (0.1% failed, 0.05% unknown, one message settled every
5 ms), and three events per sent message: a delivery (2% hard and 1% soft bounces instead), a
Send event (0.1% complaints instead) and an open or a click on one of five links. Then times
the library calls behind `newsletter report ISSUE` (figures, then the HTML page written to a
file) and `newsletter report` (every issue and the list), each twice: cold (first run in the
process) and warm. SQLite by default, in a temporary file; ``--postgres`` runs in a scratch
schema of NEWSLETTER_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
Prints figures; no pass or fail.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scratch import drop_schema, postgres_schema

from newsletter.reports.figures import issue_report, list_report
from newsletter.reports.html import render_issue_report, render_list_report
from newsletter.store import Store

POSTGRES = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ISSUE = "2026-01-bench"
KEPT = "bench_report_kept"
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "gmx.de", "web.de",
           "wp.pl", "libero.it", "orange.fr", "icloud.com", "example.org", "europa.eu"]
ERRORS = ["554 Message rejected: Email address is not verified.",
          "400 InvalidParameterValue: Missing final @domain",
          "554 Message rejected: Sending paused for this account."]


def cases(expression: str, values: list[str]) -> str:
    """SQL picking ``values[expression % len(values)]``."""
    whens = " ".join(f"WHEN {n} THEN '{value}'" for n, value in enumerate(values))
    return f"CASE ({expression}) % {len(values)} {whens} END"


class Dialect:
    """The few spellings the two databases disagree on."""

    def __init__(self, postgres: bool):
        self.postgres = postgres

    def numbers(self, count: int) -> str:
        if self.postgres:
            return f"SELECT generate_series(1, {count}) AS i"
        return (f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                f"WHERE i < {count}) SELECT i FROM n")

    def moment(self, seconds: str) -> str:
        """2025-04-15 09:30 UTC plus ``seconds`` (an SQL expression), as each stores times."""
        if self.postgres:
            return f"(TIMESTAMPTZ '2025-04-15 09:30:00+00' + ({seconds}) * INTERVAL '1 second')"
        return (f"(strftime('%Y-%m-%d %H:%M:%S', '2025-04-15 09:30:00', ({seconds}) "
                f"|| ' seconds') || '.000000')")

    def json(self, text: str) -> str:
        return f"CAST({text} AS JSONB)" if self.postgres else text


def build(store: Store, recipients: int) -> None:
    sql = Dialect(store.engine.dialect.name == "postgresql")
    settled = sql.moment("i / 200.0" if sql.postgres else "i / 200")
    click = sql.json("""'{"link": "https://example.org/article-' || (d.id % 5) || '"}'""")
    statements = [
        f"""INSERT INTO subscribers (id, email, email_key, name, attributes, tags, status,
            status_reason, source, created_at, updated_at, status_changed_at, confirmed_at)
            SELECT i, 'reader' || i || '@' || {cases('i', DOMAINS)},
                   'reader' || i || '@' || {cases('i', DOMAINS)}, 'Reader ' || i,
                   {sql.json("'{}'")}, {sql.json("'[]'")}, 'active', 'added (import)',
                   'import:bench.csv', {sql.moment('-86400 * (i % 400)')},
                   {sql.moment('0')}, {sql.moment('0')}, {sql.moment('-86400 * (i % 400)')}
            FROM ({sql.numbers(recipients)}) AS numbers""",
        f"""INSERT INTO sends (issue, subject, content_hash, audience, planned, created_at,
            note) VALUES ('{ISSUE}', 'A million readers', '{"0" * 64}', {sql.json("'[]'")},
            {recipients}, {sql.moment('0')}, '')""",
        f"""INSERT INTO deliveries (id, issue, subscriber_id, status, attempts, message_id,
            error, claimed_at, finished_at)
            SELECT i, '{ISSUE}', i,
                   CASE WHEN i % 1000 = 0 THEN 'failed' WHEN i % 2000 = 1 THEN 'unknown'
                        ELSE 'sent' END, 1,
                   CASE WHEN i % 1000 = 0 OR i % 2000 = 1 THEN NULL
                        ELSE '0102018f-bench-' || i || '-000000' END,
                   CASE WHEN i % 1000 = 0 THEN {cases('i / 1000', ERRORS)}
                        WHEN i % 2000 = 1 THEN 'no answer from the provider within 30 s'
                        END, {settled}, {settled}
            FROM ({sql.numbers(recipients)}) AS numbers""",
        f"""INSERT INTO events (event_key, type, occurred_at, received_at, message_id, issue,
            delivery_id, subscriber_id, detail)
            SELECT 'bench-' || d.id || '-' || k.k,
                   CASE k.k
                     WHEN 0 THEN CASE WHEN d.id % 100 < 2 THEN 'bounced'
                                      WHEN d.id % 100 = 2 THEN 'soft_bounced'
                                      ELSE 'delivered' END
                     WHEN 1 THEN CASE WHEN d.id % 1000 = 5 THEN 'complained' ELSE 'sent' END
                     ELSE CASE WHEN d.id % 100 BETWEEN 40 AND 51 THEN 'clicked'
                               ELSE 'opened' END END,
                   {sql.moment('d.id / 200 + k.k * 3 * 3600 + (d.id * 7919) % 86400')},
                   {sql.moment('d.id / 200 + 60')}, d.message_id, '{ISSUE}', d.id,
                   d.subscriber_id,
                   CASE WHEN k.k = 2 AND d.id % 100 BETWEEN 40 AND 51
                        THEN {click}
                        ELSE {sql.json("'{}'")} END
            FROM deliveries AS d
            CROSS JOIN (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2) AS k
            WHERE d.status = 'sent'""",
    ]
    with store.engine.begin() as connection:
        for statement in statements:
            # psycopg reads % as a placeholder; SQLite's statements need theirs (strftime)
            connection.exec_driver_sql(statement.replace("%", "%%") if sql.postgres
                                       else statement)
    # PostgreSQL's statistics and visibility map (index-only scans), which autovacuum keeps,
    # and the writes flushed (SQLite's log folded back into the file), as in a database that
    # has been live for a while: else the first report competes with the build's aftermath.
    # (No ANALYZE on SQLite: nothing runs it on a newsletter's database either.)
    settle = (["VACUUM ANALYZE", "CHECKPOINT"] if sql.postgres
              else ["PRAGMA wal_checkpoint(TRUNCATE)"])
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for statement in settle:
            connection.exec_driver_sql(statement)


def timed(label: str, work: Callable[[], object]) -> None:
    start = time.perf_counter()
    work()
    print(f"  {label:<44} {time.perf_counter() - start:6.2f} s", flush=True)


def measure(url: str, recipients: int, out: Path) -> None:
    with Store.open(url) as store:
        start = time.perf_counter()
        with store.engine.connect() as connection:
            built = connection.exec_driver_sql(
                f"SELECT count(*) FROM sends WHERE issue = '{ISSUE}'").scalar()
        if not built:  # else a data set kept by --keep
            build(store, recipients)
        with store.engine.connect() as connection:
            sent = connection.exec_driver_sql("SELECT count(*) FROM deliveries").scalar()
            events = connection.exec_driver_sql("SELECT count(*) FROM events").scalar()
        done = "kept from last time" if built else f"built in {time.perf_counter() - start:.1f} s"
        print(f"  {sent:,} deliveries, {events:,} events: {done}", flush=True)
        for run in ("cold", "warm"):
            timed(f"report {ISSUE} ({run}): figures + HTML",
                  lambda: out.write_text(issue_page(store), encoding="utf-8"))
            timed(f"report {ISSUE} ({run}): figures only",
                  lambda: issue_report(store, ISSUE, rate=14))
            timed(f"report, every issue and the list ({run})",
                  lambda: out.with_name("list.html").write_text(
                      render_list_report(list_report(store)), encoding="utf-8"))
        print(f"  page: {out.stat().st_size / 1e3:.0f} kB", flush=True)


def issue_page(store: Store) -> str:
    """What `newsletter report ISSUE` does, less the command line."""
    report = issue_report(store, ISSUE, rate=14)
    assert report is not None
    return render_issue_report(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--postgres", nargs="?", const=POSTGRES, metavar="URL",
                        help="Run on PostgreSQL (a scratch schema) instead of SQLite.")
    parser.add_argument("--keep", type=Path, metavar="FILE",
                        help="Keep the data set and reuse it next time: SQLite in FILE, "
                             "PostgreSQL in the schema bench_report_kept.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-report-") as folder:
        out = Path(folder) / "report.html"
        if args.postgres is None:
            print(f"SQLite ({args.recipients:,} recipients)", flush=True)
            database = args.keep or Path(folder) / "bench.db"
            measure(f"sqlite:///{database}", args.recipients, out)
            return
        scratch = postgres_schema(args.postgres, KEPT if args.keep else None)
        if scratch is None:
            raise SystemExit(f"no PostgreSQL at {args.postgres}")
        schema, url = scratch
        print(f"PostgreSQL ({args.recipients:,} recipients)", flush=True)
        try:
            measure(url, args.recipients, out)
        finally:
            if not args.keep:
                drop_schema(args.postgres, schema)


if __name__ == "__main__":
    main()
