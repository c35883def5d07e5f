"""One-click unsubscribe throughput of ``newsletter serve``: POSTs/s, latency, lost unsubscribes.

    .venv/bin/python bench/web.py [--subscribers 20000] [--requests 20000] [--concurrency 16]
        [--threads 16] [--seconds 60] [--database-url URL]

Starts the real ``newsletter serve`` (waitress, JSON access logs to a file) as a child process
on 127.0.0.1 over a fresh SQLite database of ``--subscribers`` active subscribers, then fires
RFC 8058 one-click POSTs (``List-Unsubscribe=One-Click``, the signed link of a distinct
subscriber each) from ``--concurrency`` keep-alive connections, at most ``--requests`` of them
and for at most ``--seconds``. Prints requests/s, p50/p90/p99/max latency and the server's CPU
use, then checks the database: every subscriber posted for must be unsubscribed ("one-click",
with the issue), and nobody else. Target (issue 5): ≥ 1,000 req/s, p99 ≤ 50 ms, zero lost.
The server is one process, so one core's worth of Python (the GIL) bounds it; other work on
the machine shows up as a lower "% of one core". To see where its time goes, sample it while
the bench runs: ``.venv/bin/py-spy record --gil -p <pid>`` (py-spy is not a dependency).
Nothing but 127.0.0.1 is contacted.
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
from collections.abc import Iterator
from contextlib import contextmanager
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=16, help="waitress threads")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--database-url", help="default: a fresh SQLite file (a PostgreSQL "
                        "URL must point at an empty database or schema)")
    args = parser.parse_args()
    requests = min(args.requests, args.subscribers)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        root = Path(folder)
        settings = workspace(root, args.database_url or f"sqlite:///{root / 'bench.db'}")
        print(f"database: {settings.database_url.split('@')[-1]}")
        ids = populate(settings, args.subscribers)
        paths = [f"/unsubscribe/{make_token(settings, Purpose.UNSUBSCRIBE, i, ISSUE)}"
                 for i in ids[:requests]]
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
              "(other work on the machine lowers every figure)")
        with serving(root, settings, args.threads) as (url, pid):
            warm_up(url)
            failures, posted = measure(url, pid, paths, args)
        lost, extra = verify(settings, ids[:posted], ids[posted:])
        print(f"verified: {posted - lost:,} of {posted:,} posted subscribers unsubscribed "
              f"(lost {lost}), {extra} others changed")
        if lost or extra or failures:
            sys.exit(1)


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
                batch.insert_new([(address, address, f"Reader {n}", "{}", "[]")
                                  for n in range(start, min(count, start + 10_000))
                                  for address in [f"reader{n}@example{n % 97}.org"]],
                                 INSERTED, batch.shared(utcnow(), status=Status.ACTIVE,
                                                        reason="bench", source="bench"))
        with store.engine.connect() as connection:
            ids = list(connection.scalars(select(Subscriber.id).order_by(Subscriber.id)))
    print(f"{len(ids):,} subscribers in {time.perf_counter() - started:.1f}s")
    return ids


@contextmanager
def serving(root: Path, settings: Settings, threads: int) -> Iterator[tuple[str, int]]:
    """``newsletter serve --port 0`` as a child process; yields its URL and pid."""
    command = [sys.executable, "-m", "newsletter", "--config", str(root / "newsletter.toml"),
               "serve", "--host", "127.0.0.1", "--port", "0", "--threads", str(threads)]
    env = {**os.environ, **server_env(settings.database_url)}
    with open(root / "access.log", "wb") as log:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, cwd=root)
        try:
            assert child.stdout is not None
            line = child.stdout.readline().decode()
            if "http://" not in line:
                raise SystemExit(f"newsletter serve did not start: {line!r}; see the log:\n"
                                 + (root / "access.log").read_text()[-2000:])
            url = line.split(" on ", 1)[1].split("/ ", 1)[0]
            print(f"server: {url} (pid {child.pid}, {threads} threads)")
            yield url, child.pid
        finally:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    with open(root / "access.log", "rb") as log:
        print(f"access log: {sum(1 for _ in log):,} lines")


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


def measure(url: str, pid: int, paths: list[str],
            args: argparse.Namespace) -> tuple[int, int]:
    """Fire the load and print the figures; returns (failures, paths posted)."""
    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    client_before = time.process_time()
    latencies, failures, posted = fire(url, paths, args.concurrency, args.seconds)
    elapsed = time.perf_counter() - started
    client = time.process_time() - client_before
    cpu = [after - before for after, before in zip(cpu_seconds(pid), cpu_before, strict=True)]
    report(latencies, failures, elapsed, cpu, args)
    print(f"client CPU: {client / elapsed:.0%} of one core; the machine has "
          f"{os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.1f}")
    return failures, posted


def fire(url: str, paths: list[str], concurrency: int,
         seconds: float) -> tuple[list[float], int, int]:
    """POST every path once from ``concurrency`` keep-alive connections, until done or
    ``seconds`` have passed. Returns (latencies in s, failures, paths posted)."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    queue = iter(range(len(paths)))
    latencies: list[float] = []
    failures: list[str] = []
    taken = [0]

    def worker() -> None:
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

    workers = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    for failure in failures[:5]:
        print(f"  failed: {failure}")
    return latencies, len(failures), taken[0]


def report(latencies: list[float], failures: int, elapsed: float, cpu: list[float],
           args: argparse.Namespace) -> None:
    if not latencies:
        print("no requests completed")
        return
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
