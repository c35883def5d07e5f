"""One-click unsubscribe throughput of ``newsletter serve``: POSTs/s, latency, lost unsubscribes.

    .venv/bin/python bench/web.py [--subscribers 20000] [--requests 20000] [--concurrency 16]
        [--threads 16] [--seconds 60] [--processes 1[,2…]] [--postgres [URL] | --database-url URL]

Starts the real ``newsletter serve`` (waitress, JSON access logs to a file) as ``--processes``
child processes on 127.0.0.1 over a fresh database of ``--subscribers`` active subscribers
(SQLite; ``--postgres``: a scratch schema of NEWSLETTER_TEST_POSTGRES_URL or of the URL given,
dropped afterwards), then fires RFC 8058 one-click POSTs (``List-Unsubscribe=One-Click``, the
signed link of a distinct subscriber each) from ``--concurrency`` keep-alive connections, spread
evenly over the processes, at most ``--requests`` of them and for at most ``--seconds``. Prints
requests/s (in all and per process), p50/p90/p99/max latency and the servers' CPU use, then
checks the database: every subscriber posted for must be unsubscribed ("one-click", with the
issue), and nobody else. Target (issue 5): ≥ 1,000 req/s, p99 ≤ 50 ms, zero lost.
``--processes 1,2`` runs once per count, each on a fresh database, and ends with a table of
the runs beside the load average: several processes sharing one PostgreSQL, as when the web
app runs on several machines.
One process is bounded by one core's worth of Python (the GIL); other work on the machine
(the load average is printed before and after) shows up as a lower "% of one core". To see
where a server's time goes, sample it while the bench runs: ``.venv/bin/py-spy record --gil -p
<pid>`` (py-spy is not a dependency). Nothing but 127.0.0.1 (and the PostgreSQL given) is
contacted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from newsletter.config import Settings, load_settings
from newsletter.store import Status, Store, Subscriber, bulk
from newsletter.store.models import utcnow
from newsletter.subscribers.importfile import INSERTED
from newsletter.tokens import Purpose, make_token

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-key-0123456789"
ISSUE = "2025-04-asit-highlights"
BODY = b"List-Unsubscribe=One-Click"
HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
TARGET_RATE, TARGET_P99_MS = 1000, 50
POSTGRES = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Run:
    """One run's figures, for the closing table."""

    processes: int
    database: str
    rate: float
    per_process: list[float]
    p99_ms: float
    load_before: float
    load_after: float
    ok: bool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=16, help="waitress threads")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--processes", default="1",
                        help="serve processes, or counts to compare: 1,2 (default 1)")
    parser.add_argument("--postgres", nargs="?", const=POSTGRES, metavar="URL",
                        help=f"a scratch schema of this PostgreSQL (default {POSTGRES})")
    parser.add_argument("--database-url", help="default: a fresh SQLite file (a PostgreSQL "
                        "URL must point at an empty database or schema)")
    args = parser.parse_args()
    counts = [int(count) for count in args.processes.split(",")]
    if args.database_url and len(counts) > 1:
        parser.error("--database-url holds one run's data: compare with --postgres instead")
    runs = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="bench-web-") as folder, \
                database(args, Path(folder)) as url:
            runs.append(run(Path(folder), url, count, args))
    if len(runs) > 1:
        summary(runs)
    if not all(one.ok for one in runs):
        sys.exit(1)


def run(root: Path, database_url: str, processes: int, args: argparse.Namespace) -> Run:
    requests = min(args.requests, args.subscribers)
    settings = workspace(root, database_url)
    name = settings.database_url.split("@")[-1]
    print(f"\n== {processes} process{'es' if processes > 1 else ''}, database: {name}")
    ids = populate(settings, args.subscribers)
    paths = [f"/unsubscribe/{make_token(settings, Purpose.UNSUBSCRIBE, i, ISSUE)}"
             for i in ids[:requests]]
    load_before = os.getloadavg()[0]
    print(f"load average before: {load_before:.1f} on {os.cpu_count()} CPUs "
          "(other work on the machine lowers every figure)")
    with serving(root, settings, args.threads, processes) as servers:
        for url, _ in servers:
            warm_up(url)
        figures = measure(servers, paths, args)
    lost, extra = verify(settings, ids[:figures.posted], ids[figures.posted:])
    print(f"verified: {figures.posted - lost:,} of {figures.posted:,} posted subscribers "
          f"unsubscribed (lost {lost}), {extra} others changed")
    return Run(processes, settings.database_url.split(":", 1)[0].split("+")[0], figures.rate,
               figures.per_process, figures.p99_ms, load_before, os.getloadavg()[0],
               not (lost or extra or figures.failures))


def summary(runs: list[Run]) -> None:
    print("\nprocesses  database    req/s in all   req/s per process      p99 ms   "
          "load average before → after")
    for one in runs:
        each = " + ".join(f"{rate:,.0f}" for rate in one.per_process)
        print(f"{one.processes:>9}  {one.database:<10}  {one.rate:>12,.0f}   {each:<20} "
              f"{one.p99_ms:>7.1f}   {one.load_before:.1f} → {one.load_after:.1f}")


@contextmanager
def database(args: argparse.Namespace, root: Path) -> Iterator[str]:
    """The run's database URL: the one given, a scratch PostgreSQL schema (dropped after), or
    a fresh SQLite file."""
    if args.database_url:
        yield args.database_url
        return
    if not args.postgres:
        yield f"sqlite:///{root / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_web_{uuid.uuid4().hex[:8]}"
    engine = create_engine(args.postgres, connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        separator = "&" if "?" in args.postgres else "?"
        yield f"{args.postgres}{separator}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


# ---------------------------------------------------------------- set-up


def workspace(root: Path, database_url: str) -> Settings:
    """A newsletter folder in ``root``: the ASIT config, its templates and issues (linked)."""
    shutil.copy(ROOT / "newsletter.toml", root / "newsletter.toml")
    for name in ("templates", "issues"):
        (root / name).symlink_to(ROOT / name)
    return load_settings(root / "newsletter.toml", env=server_env(database_url))


def server_env(database_url: str) -> dict[str, str]:
    return {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_DATABASE_URL": database_url}


def populate(settings: Settings, count: int) -> list[int]:
    """``count`` active subscribers through the import's bulk insert; returns their ids."""
    started = time.perf_counter()
    with Store.open(settings.database_url) as store, bulk.collector_paused():
        for start in range(0, count, 10_000):
            with bulk.batch(store) as batch:
                batch.insert_new([(address, address, f"Reader {n}", "{}", "[]", None)
                                  for n in range(start, min(count, start + 10_000))
                                  for address in [f"reader{n}@example{n % 97}.org"]],
                                 INSERTED, batch.shared(utcnow(), status=Status.ACTIVE,
                                                        reason="bench", source="bench"))
        with store.engine.connect() as connection:
            ids = list(connection.scalars(select(Subscriber.id).order_by(Subscriber.id)))
    print(f"{len(ids):,} subscribers in {time.perf_counter() - started:.1f}s")
    return ids


@contextmanager
def serving(root: Path, settings: Settings, threads: int,
            processes: int) -> Iterator[list[tuple[str, int]]]:
    """``processes`` × ``newsletter serve --port 0`` as child processes; yields (URL, pid)s."""
    command = [sys.executable, "-m", "newsletter", "--config", str(root / "newsletter.toml"),
               "serve", "--host", "127.0.0.1", "--port", "0", "--threads", str(threads)]
    env = {**os.environ, **server_env(settings.database_url)}
    logs = [root / f"access-{n}.log" for n in range(processes)]
    children: list[subprocess.Popen[bytes]] = []
    servers: list[tuple[str, int]] = []
    try:
        for log_path in logs:
            with open(log_path, "wb") as log:
                child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env,
                                         cwd=root)
            children.append(child)
            assert child.stdout is not None
            line = child.stdout.readline().decode()
            if "http://" not in line:
                raise SystemExit(f"newsletter serve did not start: {line!r}; see the log:\n"
                                 + log_path.read_text()[-2000:])
            url = line.split(" on ", 1)[1].split("/ ", 1)[0]
            print(f"server: {url} (pid {child.pid}, {threads} threads)")
            servers.append((url, child.pid))
        yield servers
    finally:
        for child in children:
            child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            if child.stdout is not None:
                child.stdout.close()
    lines = []
    for log_path in logs:
        with open(log_path, "rb") as log:
            lines.append(sum(1 for _ in log))
    print(f"access logs: {' + '.join(f'{n:,}' for n in lines)} lines")


def warm_up(url: str) -> None:
    """A few requests so that imports, templates and connections are ready."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    for path in ("/healthz", "/unsubscribe/not-a-token", "/subscribe") * 20:
        connection.request("GET", path)
        connection.getresponse().read()
    connection.close()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# ---------------------------------------------------------------- the load


@dataclass(frozen=True)
class Figures:
    rate: float
    per_process: list[float]
    p99_ms: float
    failures: int
    posted: int


def measure(servers: list[tuple[str, int]], paths: list[str],
            args: argparse.Namespace) -> Figures:
    """Fire the load and print the figures."""
    pids = [pid for _, pid in servers]
    cpu_before, started = [cpu_seconds(pid) for pid in pids], time.perf_counter()
    client_before = time.process_time()
    latencies, answered, failures, posted = fire([url for url, _ in servers], paths,
                                                 args.concurrency, args.seconds)
    elapsed = time.perf_counter() - started
    client = time.process_time() - client_before
    cpu = [[after - before for after, before in zip(cpu_seconds(pid), was, strict=True)]
           for pid, was in zip(pids, cpu_before, strict=True)]
    rate, p99 = report(latencies, failures, elapsed, [sum(c) for c in zip(*cpu, strict=True)],
                       args)
    per_process = [count / elapsed for count in answered]
    if len(servers) > 1:
        for (url, pid), each, used in zip(servers, per_process, cpu, strict=True):
            print(f"  {url} (pid {pid}): {each:,.0f} req/s, CPU {sum(used) / elapsed:.0%} "
                  "of one core")
    print(f"client CPU: {client / elapsed:.0%} of one core; the machine has "
          f"{os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.1f}")
    return Figures(rate, per_process, p99, failures, posted)


def fire(urls: list[str], paths: list[str], concurrency: int,
         seconds: float) -> tuple[list[float], list[int], int, int]:
    """POST every path once from ``concurrency`` keep-alive connections spread evenly over
    ``urls``, until done or ``seconds`` have passed. Returns (latencies in s, requests
    answered per URL, failures, paths posted)."""
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    queue = iter(range(len(paths)))
    latencies: list[float] = []
    answered = [0] * len(urls)
    failures: list[str] = []
    taken = [0]

    def worker(which: int) -> None:
        host, port = urls[which].removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine: list[float] = []
        while time.perf_counter() < deadline:
            with lock:
                index = next(queue, None)
                if index is None:
                    break
                taken[0] += 1
            start = time.perf_counter()
            try:
                connection.request("POST", paths[index], BODY, HEADERS)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"{response.status} for request {index}")
            except (OSError, http.client.HTTPException) as error:
                failures.append(f"{error!r} for request {index}")
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
            mine.append(time.perf_counter() - start)
        connection.close()
        with lock:
            latencies.extend(mine)
            answered[which] += len(mine)

    workers = [threading.Thread(target=worker, args=(n % len(urls),))
               for n in range(concurrency)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    for failure in failures[:5]:
        print(f"  failed: {failure}")
    return latencies, answered, len(failures), taken[0]


def report(latencies: list[float], failures: int, elapsed: float, cpu: list[float],
           args: argparse.Namespace) -> tuple[float, float]:
    """Print the figures; returns (requests/s, p99 in ms)."""
    if not latencies:
        print("no requests completed")
        return 0.0, 0.0
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    rate = len(latencies) / elapsed
    print(f"{len(latencies):,} one-click POSTs in {elapsed:.2f}s from {args.concurrency} "
          f"connections: {rate:,.0f} req/s, {failures} failed")
    print(f"latency ms: p50 {pct(50):.1f}  p90 {pct(90):.1f}  p99 {pct(99):.1f}  "
          f"max {ordered[-1] * 1000:.1f}  mean {statistics.fmean(ordered) * 1000:.1f}")
    total = sum(cpu)
    print(f"server CPU: {total:.1f}s = {total / elapsed:.0%} of one core "
          f"({total / len(latencies) * 1e6:.0f} µs per request, {cpu[1] / total:.0%} in the "
          "kernel)")
    verdict = "met" if rate >= TARGET_RATE and pct(99) <= TARGET_P99_MS else "MISSED"
    print(f"target ≥ {TARGET_RATE:,} req/s with p99 ≤ {TARGET_P99_MS} ms: {verdict}")
    return rate, pct(99)


def verify(settings: Settings, posted: list[int], untouched: list[int]) -> tuple[int, int]:
    """(posted subscribers not unsubscribed by one-click, other subscribers not active)."""
    with Store.open(settings.database_url) as store, store.engine.connect() as connection:
        done = connection.scalar(select(func.count()).where(
            Subscriber.status == Status.UNSUBSCRIBED, Subscriber.status_reason == "one-click",
            Subscriber.status_issue == ISSUE, Subscriber.id.in_(posted))) if posted else 0
        changed = connection.scalar(select(func.count()).where(
            Subscriber.status != Status.ACTIVE, Subscriber.id.not_in(posted)))
    return len(posted) - (done or 0), changed or 0


if __name__ == "__main__":
    main()
