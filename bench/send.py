"""The send engine's figures: personalisation on one core, SES through boto3, 1M recipients.

    .venv/bin/python bench/send.py [--quick] [--count 10000] [--rounds 15] [--recipients 20000]
        [--rate 1000] [--concurrency 16,32,64,128] [--sizes 100000,250000,500000,1000000]
        [--no-profile] [--parts 123]

Three parts, each measured against a target of issue 4:

1. Personalised MIME messages/s on one core for the ASIT issue (target ≥ 20,000): the template
   alone, the engine's per-recipient signed links alone (unsubscribe, preferences), both, and
   the engine's whole per-recipient step (``Dispatcher.deliver`` into a transport that
   discards): the CPU of a send minus I/O and the ledger. Pinned to one CPU and timed in CPU
   time (``thread_time``), so that other processes on a shared machine disturb it less; best
   and median of the rounds.
2. Sustained sends/s through the real engine (``send_issue``, SQLite ledger) and the real
   ``ses`` transport (boto3) to ``tests/fakeses.py`` running as a separate process that answers
   after 50 ms (target ≥ 1,000 msgs/s with the rate set to 1,000, and never more than the rate
   in any 1-second window), at several concurrencies, plus one run without an effective rate
   limit. Each run is a child process, so its CPU% is its own. With py-spy installed
   (``.venv/bin/pip install py-spy``) the unlimited run is then sampled (``--gil``) to show
   where the sender's GIL time goes: boto3, the ledger, personalisation.
3. Peak RSS while sending to 100k … 1M planned recipients through a transport that discards
   (target ≤ 150 MB, flat as the list grows), with the time of each phase: import (the import's
   bulk insert, one process), then plan and dispatch (another process, as ``newsletter send``
   would run). A process's peak RSS only grows, so every list size has processes of its own.

``--quick`` scales everything down for a smoke test (about two minutes); the full run takes
about a quarter of an hour. Nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import os
import re
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import RenderedIssue, render_issue
from newsletter.config import Settings, load_settings
from newsletter.message import build_template
from newsletter.sending.dispatch import Dispatcher, Progress, SendOptions
from newsletter.sending.engine import content_hash, send_issue
from newsletter.sending.pacing import RateLimiter
from newsletter.store import Status, Store, bulk
from newsletter.store.ledger import Claim, Ledger, Outcome
from newsletter.store.models import utcnow
from newsletter.subscribers.importfile import INSERTED
from newsletter.transports.base import Envelope, Transport

ROOT = Path(__file__).resolve().parents[1]
ISSUE = "2025-04-asit-highlights"
SECRET = "bench-secret-key-not-for-production"
PERSONALISE_TARGET, SES_TARGET, RSS_TARGET_MB = 20_000, 1_000, 150
FAKE_LATENCY = 0.05
NAMES = [("Anna Kovacs", "Anna"), ("Žofia Nováková", "Žofia"), ("John O'Neill", "John"),
         ("Ελένη Παπαδοπούλου", "Ελένη"), ("Marta Rossi", "Marta"), ("Jan Nowak", "Jan")]
FULL = {"count": 10_000, "rounds": 15, "recipients": 20_000,
        "sizes": "100000,250000,500000,1000000"}
QUICK = {"count": 5_000, "rounds": 3, "recipients": 2_000, "sizes": "10000,25000,50000"}
SES_RUN_SECONDS = 240  # per SES run: a loop that cannot end is cut off here
RSS_RUN_SECONDS = 1200  # per list size, for the dispatch alone


class TimeUp(Exception):
    """A run went past its time limit (raised from the progress callback)."""


class Discard(Transport):
    """A transport that only counts: what the outbox would write for 1M recipients is 60 GB."""

    name = "discard"

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def send(self, raw: bytes, envelope: Envelope) -> str:
        return f"discard-{next(self._ids)}"


# ---------------------------------------------------------------- shared set-up


def setup(database_url: str) -> tuple[Settings, RenderedIssue]:
    """The ASIT settings (with a secret key and the given database) and the rendered issue."""
    settings = load_settings(ROOT / "newsletter.toml", env={
        "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_DATABASE_URL": database_url})
    rendered = render_issue(load_issue(find_issue(settings, ISSUE), settings), settings)
    return settings, rendered


def person(n: int) -> tuple[str, str, str]:
    """Subscriber ``n``: (address, name, first name); a third of the names are non-ASCII."""
    name, first = NAMES[n % len(NAMES)]
    return f"reader{n}@example{n % 97}.org", name, first


def add_subscribers(store: Store, count: int, batch_size: int = 10_000) -> None:
    """``count`` active subscribers through the import's bulk insert (``store.bulk``)."""
    with bulk.collector_paused():
        for start in range(0, count, batch_size):
            with bulk.batch(store) as batch:
                batch.insert_new([(email, email, name, "{}", "[]", None)
                                  for email, name, _ in map(person, range(start, min(
                                      count, start + batch_size)))],
                                 INSERTED, batch.shared(utcnow(), status=Status.ACTIVE,
                                                        reason="bench", source="bench"))


class TimedLedger(Ledger):
    """The real ledger, counting the dispatch's calls, rows and seconds per query kind."""

    def __init__(self, store: Store):
        super().__init__(store)
        self.stats = {kind: [0, 0, 0.0] for kind in ("advance", "heartbeat")}

    def advance(self, issue: str, sender: str, outcomes: Collection[Outcome] = (),
                hand_over: Collection[int] = (),
                claim: int = 0) -> tuple[list[int], list[Claim], int]:
        """Rows: the results recorded, the rows handed over and the rows claimed."""
        start = time.perf_counter()
        handed, claims, skipped = super().advance(issue, sender, outcomes, hand_over, claim)
        self._count("advance", len(outcomes) + len(handed) + len(claims) + skipped, start)
        return handed, claims, skipped

    def heartbeat(self, sender: str) -> None:
        start = time.perf_counter()
        super().heartbeat(sender)
        self._count("heartbeat", 1, start)

    def _count(self, kind: str, rows: int, start: float) -> None:
        entry = self.stats[kind]
        entry[0] += 1
        entry[1] += rows
        entry[2] += time.perf_counter() - start


def plan(store: Store, rendered: RenderedIssue) -> TimedLedger:
    ledger = TimedLedger(store)
    ledger.plan(rendered.slug, rendered.subject, content_hash(rendered))
    return ledger


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status(field: str) -> float:
    """A ``/proc/self/status`` memory figure (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_send(rendered: RenderedIssue, settings: Settings, ledger: TimedLedger,
               transport: Transport, options: SendOptions, seconds: float,
               watch: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """``send_issue``, timed (wall and CPU), cut off after ``seconds``."""
    cpu, start = cpu_seconds(), time.perf_counter()
    deadline = start + seconds

    def on_progress(progress: Progress) -> None:
        if watch:
            watch(progress)
        if time.perf_counter() > deadline:
            raise TimeUp

    try:
        stopped = send_issue(rendered, settings, ledger, transport, options,
                             on_progress=on_progress).stopped
    except TimeUp:
        stopped = f"cut off after {seconds:.0f} s"
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    counts = ledger.counts(rendered.slug)
    return {"sent": counts["sent"], "failed": counts["failed"], "left": counts["queued"],
            "wall": wall, "cpu": cpu, "stopped": stopped, "ledger": ledger.stats}


def ledger_line(run: dict[str, Any]) -> str:
    """How the dispatch used the database: calls, rows per call, share of the wall time."""
    parts = []
    for kind, (calls, rows, seconds) in run["ledger"].items():
        size = f" x {rows / calls:.1f} rows" if calls and kind != "heartbeat" else ""
        parts.append(f"{kind} {calls:,} calls{size} {100 * seconds / run['wall']:.0f}%")
    return "ledger queries (engine thread, % of the wall time): " + ", ".join(parts)


# ---------------------------------------------------------------- 1. personalisation


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """Pin this process to one CPU for the duration."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


def per_second(step: Callable[[Any], object], items: Sequence[Any]) -> float:
    """Items per CPU second of this thread (time spent descheduled does not count)."""
    start = time.thread_time()
    for item in items:
        step(item)
    return len(items) / max(time.thread_time() - start, 1e-9)


def personalise_part(count: int, rounds: int, folder: Path) -> None:
    """Each step over ``count`` recipients, ``rounds`` times in turn; best and median round
    (the best is the least disturbed by other processes on a shared machine)."""
    settings, rendered = setup(f"sqlite:///{folder}/personalise.db")
    template = build_template(rendered, settings)
    claims = [Claim(n, n, *person(n), {}) for n in range(1, count + 1)]
    with Store.open(settings.database_url) as store:
        dispatcher = Dispatcher({"": template}, rendered.slug, settings, Ledger(store), Discard(),
                                RateLimiter(None), SendOptions(), Progress())
        people = [dispatcher.recipient(claim) for claim in claims]  # tokens made beforehand
        steps: list[tuple[str, Callable[[Any], object], Sequence[Any]]] = [
            ("personalise only", template.personalise, people),
            ("signed links only", dispatcher.recipient, claims),
            ("personalise + signed links",
             lambda claim: template.personalise(dispatcher.recipient(claim)), claims),
            ("engine deliver(), discarding", dispatcher.deliver, claims),
        ]
        rates: dict[str, list[float]] = {label: [] for label, _, _ in steps}
        with one_core():
            for _ in range(rounds):
                for label, step, items in steps:
                    rates[label].append(per_second(step, items))
    size = sum(len(template.personalise(p)) for p in people[:1000]) / min(1000, len(people))
    print(f"1. personalised MIME on one core: {ISSUE}, {count:,} recipients x {rounds} rounds, "
          f"{size / 1000:.0f} kB each (load average {load()})")
    print(f"   {'per CPU second':<34} {'best':>9}         {'median':>9}")
    for label, found in rates.items():
        best, median = max(found), statistics.median(found)
        note = ""
        if not label.startswith("signed links"):
            note = f"  target {PERSONALISE_TARGET:,}: " + (
                "met" if best >= PERSONALISE_TARGET else "MISSED")
        print(f"   {label:<34} {best:>9,.0f} msgs/s  {median:>9,.0f} msgs/s  "
              f"{1e6 / best:5.1f} µs each{note}")
    print(flush=True)


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


# ---------------------------------------------------------------- 2. SES through boto3


@contextlib.contextmanager
def fake_ses() -> Iterator[tuple[str, int]]:
    """``tests/fakeses.py`` as a separate process (fault-free, 50 ms): (URL, pid)."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakeses.py"), "--host", "127.0.0.1", "--port",
         "0", "--latency", str(FAKE_LATENCY), "--discard-raw"], stdout=subprocess.PIPE,
        text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        url = process.stdout.readline().strip() if ready else ""
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"fakeses.py did not start (exit code {process.poll()})")
        fake_call(url, "/_fake/configure", {"max_24_hour_send": -1, "max_send_rate": 1e6})
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def fake_call(url: str, path: str, document: dict[str, Any] | None = None) -> Any:
    """GET (no document) or POST JSON to the fake's control routes."""
    data = None if document is None else json.dumps(document).encode()
    request = urllib.request.Request(url + path, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by another process (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def aws_environment(url: str) -> dict[str, str]:
    """boto3's chain, pointed at the fake only: dummy keys, no files, no instance metadata."""
    return {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_SESV2": url,
            "AWS_ENDPOINT_URL_SES": url, "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def ses_child(url: str, recipients: int, rate: float, concurrency: int) -> dict[str, Any]:
    """One measured send, in this (child) process: fresh ledger, real transport, real engine."""
    from newsletter.transports.ses import SesTransport, client_config

    os.environ.update(aws_environment(url))
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as folder:
        settings, rendered = setup(f"sqlite:///{folder}/ses.db")
        with Store.open(settings.database_url) as store:
            add_subscribers(store, recipients)
            ledger = plan(store, rendered)
            transport = SesTransport.from_settings(settings, config=client_config(concurrency))
            options = SendOptions(rate=rate or None, concurrency=concurrency)
            try:
                return timed_send(rendered, settings, ledger, transport, options,
                                  SES_RUN_SECONDS)
            finally:
                transport.close()


def run_child(arguments: list[str], timeout: float, prefix: Sequence[str] = ()) -> dict[str, Any]:
    """This script in a child process (optionally under py-spy); its last line is JSON."""
    command = [*prefix, sys.executable, __file__, *arguments]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"{' '.join(arguments[:2])} failed (exit {out.returncode}):\n"
                           + "\n".join(out.stderr.splitlines()[-5:]))
    last = [line for line in out.stdout.splitlines() if line.startswith("{")][-1]
    result: dict[str, Any] = json.loads(last)  # py-spy may write lines of its own after it
    return result


def ses_run(url: str, pid: int, recipients: int, rate: float, concurrency: int,
            prefix: Sequence[str] = ()) -> dict[str, Any]:
    """A child's send plus what the fake saw: when requests arrived and its own CPU."""
    fake_call(url, "/_fake/reset", {})
    fake_cpu = process_cpu(pid)
    result = run_child(["--child", "ses", "--url", url, "--recipients", str(recipients),
                        "--rate", str(rate), "--concurrency", str(concurrency)],
                       SES_RUN_SECONDS + 120, prefix)
    stats = fake_call(url, "/_fake/stats.json")
    span = (stats["last_at"] - stats["first_at"]) if stats["accepted"] > 1 else 0.0
    return result | {"rate": rate, "concurrency": concurrency,
                     "accepted": stats["accepted"], "duplicates": stats["duplicates"],
                     "max_1s": stats["max_per_second"],
                     "sustained": (stats["accepted"] - 1) / span if span else 0.0,
                     "fake_cpu": process_cpu(pid) - fake_cpu}


def ses_part(recipients: int, rate: float, concurrencies: list[int], profile: bool) -> None:
    print(f"2. SES through boto3 and the engine: {recipients:,} recipients per run, SQLite "
          f"ledger, fake SES in its own process answering after {FAKE_LATENCY * 1000:.0f} ms, "
          f"{os.cpu_count()} CPUs")
    print(f"   {'rate':>9} {'threads':>7} {'sent':>7} {'wall s':>7} {'msgs/s':>7} "
          f"{'fake/s':>7} {'max 1s':>7} {'CPU%':>5} {'CPU ms/msg':>10} {'fake CPU%':>9}  "
          "reaches the rate", flush=True)
    with fake_ses() as (url, pid):
        runs = []
        for concurrency in concurrencies:
            runs.append(ses_run(url, pid, recipients, rate, concurrency))
            print_ses_run(runs[-1])
        best = max(runs, key=lambda run: run["sent"] / run["wall"])
        runs.append(ses_run(url, pid, recipients, 0, best["concurrency"]))
        print_ses_run(runs[-1])
        print(f"   {ledger_line(runs[-1])}")
        check = limiter_check(url, pid, recipients, runs[-1])
        print_ses_run(check)
        print_ses_verdict(runs, rate, check)
        if profile:
            profile_part(url, pid, recipients, best["concurrency"])
    print(flush=True)


def limiter_check(url: str, pid: int, recipients: int,
                  ceiling: dict[str, Any]) -> dict[str, Any]:
    """A run at a rate the sender can reach (60% of its ceiling, ~20 s), where the limiter
    really is what holds it back: is the rate then never exceeded in any 1-second window?"""
    rate = max(10.0, round(0.6 * ceiling["sent"] / ceiling["wall"], -1))
    return ses_run(url, pid, min(recipients, int(20 * rate)), rate, ceiling["concurrency"])


def print_ses_run(run: dict[str, Any]) -> None:
    rate = f"{run['rate']:,.0f}" if run["rate"] else "none"
    achieved = run["sent"] / run["wall"]
    if not run["rate"]:
        reaches = "(ceiling)"
    else:
        reaches = "yes" if achieved >= 0.97 * run["rate"] else "no"
        reaches += "" if run["max_1s"] <= run["rate"] else f"; OVER THE RATE ({run['max_1s']})"
    extra = [f"{run['failed']:,} failed"] if run["failed"] else []
    extra += [f"{run['duplicates']:,} duplicates"] if run["duplicates"] else []
    extra += [run["stopped"]] if run["stopped"] else []
    print(f"   {rate:>9} {run['concurrency']:>7} {run['sent']:>7,} {run['wall']:>7.1f} "
          f"{achieved:>7,.0f} {run['sustained']:>7,.0f} {run['max_1s']:>7,} "
          f"{100 * run['cpu'] / run['wall']:>5.0f} "
          f"{1000 * run['cpu'] / max(run['sent'], 1):>10.2f} "
          f"{100 * run['fake_cpu'] / run['wall']:>9.0f}  {reaches}"
          + (f"  [{'; '.join(extra)}]" if extra else ""), flush=True)


def print_ses_verdict(runs: list[dict[str, Any]], rate: float, check: dict[str, Any]) -> None:
    limited = [run for run in runs if run["rate"]]
    reached = [run["concurrency"] for run in limited if run["sent"] / run["wall"] >= 0.97 * rate]
    worst = max(run["max_1s"] for run in limited)
    best = max(run["sent"] / run["wall"] for run in runs)
    print("   msgs/s = sent / wall time of send_issue; fake/s = the fake's acceptances over "
          "its first-to-last span; max 1s = most arrivals (of accepted messages) in any 1 s window")
    unlimited = runs[-1]
    cpu_ms = 1000 * unlimited["cpu"] / max(unlimited["sent"], 1)
    print(f"   sender CPU {cpu_ms:.2f} ms/msg without a rate limit: one process, held to about "
          f"one core by the GIL, cannot pass ~{1000 / cpu_ms:,.0f} msgs/s at this cost; "
          f"{rate:,.0f} msgs/s needs < {1000 / rate:.1f} ms/msg (or several processes and cores)")
    print(f"   target {SES_TARGET:,} msgs/s at rate {rate:,.0f}: "
          + (f"met with {', '.join(map(str, reached))} threads" if reached else
             f"MISSED (best {best:,.0f} msgs/s)")
          + f"; rate never exceeded in any 1 s window: {'yes' if worst <= rate else 'NO'} "
          f"(max {worst:,})", flush=True)
    print(f"   at a reachable rate ({check['rate']:,.0f}/s, the last row) the limiter holds: "
          f"{check['sent'] / check['wall']:,.0f} msgs/s, at most {check['max_1s']:,} in any "
          f"1 s window: {'never over the rate' if check['max_1s'] <= check['rate'] else 'OVER'}",
          flush=True)


# ---------------------------------------------------------------- 2b. where the time goes

# Where a GIL-holding sample is counted: the first rule whose pattern is in its stack.
PROFILE_RULES = [
    ("boto3: SigV4 signing", r"botocore/(auth|signers)\.py"),
    ("boto3: validate + serialise request", r"botocore/(serialize|validate)\.py"),
    ("boto3: parse response", r"botocore/parsers\.py"),
    ("boto3: HTTP (urllib3, http.client)",
     r"urllib3/|http/client\.py|botocore/(httpsession|awsrequest)\.py"),
    ("boto3: endpoint rules", r"botocore/(endpoint_provider|regions)\.py"),
    ("boto3: events, hooks, retries, rest", r"botocore/|boto3/"),
    ("SES request: body, answer", r"newsletter/transports/"),
    ("personalise (MIME)", r"newsletter/message\.py"),
    ("signed links", r"newsletter/tokens\.py"),
    ("ledger: claim", r"\b_claim \([^)]*ledger\.py"),
    ("ledger: record", r"\b_record \([^)]*ledger\.py"),
    ("ledger: hand over", r"\b_hand_over \([^)]*ledger\.py"),
    ("ledger: other (heartbeat, counts)", r"ledger\.py"),
    ("rate limiter, shared rate", r"newsletter/sending/pacing\.py|rates\.py"),
    ("threads, queues, locks", r"(concurrent/futures|threading\.py|queue\.py)[^;]*$"),
    ("engine: dispatch loop, deliver, wait", r"newsletter/sending/(engine|dispatch)\.py"),
]
# Stacks of the dispatch: the engine's main loop and its worker threads (not start-up or plan).
DISPATCH = re.compile(r"send_issue \(|concurrent/futures/thread\.py")


def profile_part(url: str, pid: int, recipients: int, concurrency: int) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("   where the time goes: py-spy is not installed (.venv/bin/pip install py-spy)")
        return
    sample_rate = 200
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as folder:
        raw = Path(folder) / "profile.txt"
        run = ses_run(url, pid, recipients, 0, concurrency, prefix=[
            spy, "record", "--gil", "--nonblocking", "--rate", str(sample_rate), "--format",
            "raw", "--output", str(raw), "--"])
        stacks = read_raw_profile(raw)
    dispatch = Counter({stack: n for stack, n in stacks.items() if DISPATCH.search(stack)})
    total, per_message = sum(dispatch.values()), 1e6 / sample_rate / max(run["sent"], 1)
    print(f"   where the sender's time goes: py-spy --gil (samples the thread holding the GIL) "
          f"at {sample_rate}/s, no rate limit, {concurrency} threads, "
          f"{run['sent'] / run['wall']:,.0f} msgs/s under the profiler")
    print(f"   GIL held by the dispatch {100 * total / (sample_rate * run['wall']):.0f}% of its "
          f"wall time; process CPU {100 * run['cpu'] / run['wall']:.0f}%, "
          f"{1000 * run['cpu'] / max(run['sent'], 1):.2f} ms/msg")
    buckets = profile_buckets(dispatch)
    boto = sum(n for label, n in buckets.items() if label.startswith("boto3"))
    for label, samples in [*buckets.most_common(), ("boto3 in all", boto)]:
        print(f"     {label:<38} {100 * samples / max(total, 1):5.1f}%  "
              f"{samples * per_message:6.0f} µs/msg")


def read_raw_profile(path: Path) -> Counter[str]:
    """py-spy's raw (collapsed) format: ``frame;frame;... count`` per line."""
    stacks: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                stacks[stack] += int(count)
    return stacks


def profile_buckets(stacks: Counter[str]) -> Counter[str]:
    rules = [(label, re.compile(pattern)) for label, pattern in PROFILE_RULES]
    buckets: Counter[str] = Counter()
    for stack, samples in stacks.items():
        label = next((label for label, rule in rules if rule.search(stack)), "other")
        buckets[label] += samples
    return buckets


# ---------------------------------------------------------------- 3. memory at 1M


def import_child(url: str, size: int) -> dict[str, Any]:
    """The ``subscribers import`` step, in this child: ``size`` subscribers into ``url``."""
    with Store.open(url) as store:
        start = time.perf_counter()
        add_subscribers(store, size)
        seconds = time.perf_counter() - start
    return {"import_s": seconds, "import_peak": proc_status("VmHWM")}


def send_child(url: str, size: int) -> dict[str, Any]:
    """The ``send`` step, in this child: plan everyone in ``url``, send through ``Discard``,
    sampling RSS at each tenth of the list."""
    settings, rendered = setup(url)
    with Store.open(url) as store:
        figures: dict[str, Any] = {"size": size, "rss_start": proc_status("VmRSS")}
        start = time.perf_counter()
        ledger = plan(store, rendered)
        figures["plan_s"] = time.perf_counter() - start
        figures["rss_planned"] = proc_status("VmRSS")
        samples: list[float] = []
        marks = iter([size * k // 10 for k in range(1, 11)])
        mark = [next(marks)]

        def watch(progress: Progress) -> None:
            while mark[0] and progress.done >= mark[0]:
                samples.append(proc_status("VmRSS"))
                mark[0] = next(marks, 0)

        result = timed_send(rendered, settings, ledger, Discard(), SendOptions(),
                            RSS_RUN_SECONDS, watch)
    return figures | result | {"peak": proc_status("VmHWM"), "samples": samples}


def rss_part(sizes: list[int]) -> None:
    print("3. memory: import N subscribers (one process), then plan and send to all N through a "
          "transport that discards (another process: `newsletter send`), 32 threads, SQLite")
    print("   (import MB: peak RSS of the import process; send process RSS at start, after the "
          "plan, its peak, and at each tenth of the list sent)")
    print(f"   {'planned':>9} {'import s':>8} {'MB':>4} {'plan s':>7} {'send s':>7} {'msgs/s':>7} "
          f"{'start':>5} {'planned':>7} {'peak':>5}  at 10%…100% sent (MB)", flush=True)
    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as folder:
            url = f"sqlite:///{folder}/rss.db"
            common = ["--url", url, "--size", str(size)]
            imported = run_child(["--child", "import", *common], RSS_RUN_SECONDS)
            results.append(imported | run_child(["--child", "send", *common],
                                                RSS_RUN_SECONDS + 600))
        print_rss_run(results[-1])
    print(f"   {sizes[-1]:,}: {ledger_line(results[-1])}")
    peak = max(run["peak"] for run in results)
    spread = peak - min(run["peak"] for run in results)
    print(f"   target ≤ {RSS_TARGET_MB} MB while sending: "
          f"{'met' if peak <= RSS_TARGET_MB else 'MISSED'} (highest peak {peak:.0f} MB; it "
          f"varies by {spread:.0f} MB from {sizes[0]:,} to {sizes[-1]:,} recipients)")


def print_rss_run(run: dict[str, Any]) -> None:
    samples = " ".join(f"{mb:.0f}" for mb in run["samples"])
    note = f"  [{run['stopped']}]" if run["stopped"] else ""
    note += f"  [{run['left']:,} not sent]" if run["left"] else ""
    print(f"   {run['size']:>9,} {run['import_s']:>8.1f} {run['import_peak']:>4.0f} "
          f"{run['plan_s']:>7.1f} {run['wall']:>7.1f} {run['sent'] / run['wall']:>7,.0f} "
          f"{run['rss_start']:>5.0f} {run['rss_planned']:>7.0f} {run['peak']:>5.0f}  "
          f"{samples}{note}", flush=True)


# ---------------------------------------------------------------- 4. several processes

PG_URL = os.environ.get("NEWSLETTER_BENCH_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A database URL whose connections live in a new PostgreSQL schema, dropped after."""
    import psycopg

    schema = f"bench_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{PG_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def worker_child(url: str, database: str, rate: float, concurrency: int) -> dict[str, Any]:
    """One of several sender processes on a send already planned: its CPU, its share."""
    from newsletter.transports.ses import SesTransport, client_config

    os.environ.update(aws_environment(url))
    settings, rendered = setup(database)
    with Store.open(database) as store:
        ledger = TimedLedger(store)
        transport = SesTransport.from_settings(settings, config=client_config(concurrency))
        try:
            run = timed_send(rendered, settings, ledger, transport,
                             SendOptions(rate=rate or None, concurrency=concurrency),
                             SES_RUN_SECONDS)
        finally:
            transport.close()
    return run


def processes_run(url: str, pid: int, recipients: int, rate: float, concurrency: int,
                  processes: int) -> dict[str, Any]:
    """``processes`` senders started together on one planned send in PostgreSQL."""
    fake_call(url, "/_fake/reset", {})
    fake_cpu = process_cpu(pid)
    with pg_schema() as database:
        _, rendered = setup(database)
        with Store.open(database) as store:
            add_subscribers(store, recipients)
            plan(store, rendered)
        arguments = ["--child", "worker", "--url", url, "--database", database, "--rate",
                     str(rate), "--concurrency", str(concurrency)]
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(processes) as pool:
            children = list(pool.map(lambda _: run_child(arguments, SES_RUN_SECONDS + 120),
                                     range(processes)))
        wall = time.perf_counter() - start
    stats = fake_call(url, "/_fake/stats.json")
    span = (stats["last_at"] - stats["first_at"]) if stats["accepted"] > 1 else 0.0
    return {"processes": processes, "rate": rate, "concurrency": concurrency, "wall": wall,
            "sent": stats["accepted"], "duplicates": stats["duplicates"],
            "cpu": sum(child["cpu"] for child in children), "max_1s": stats["max_per_second"],
            "sustained": (stats["accepted"] - 1) / span if span else 0.0,
            "fake_cpu": process_cpu(pid) - fake_cpu, "load": load()}


def processes_part(recipients: int, rate: float, concurrency: int, counts: list[int]) -> None:
    print(f"4. Several sender processes on one send (PostgreSQL ledger, one shared rate): "
          f"{recipients:,} recipients, fake SES answering after {FAKE_LATENCY * 1000:.0f} ms, "
          f"{concurrency} threads each, {os.cpu_count()} CPUs")
    print(f"   {'procs':>5} {'rate':>7} {'sent':>7} {'wall s':>7} {'msgs/s':>7} {'max 1s':>7} "
          f"{'sust/rate':>9} {'CPU ms/msg':>10} {'fake CPU%':>9}  load average", flush=True)
    runs = []
    with fake_ses() as (url, pid):
        for processes in counts:
            for limit in (rate, 0.0):
                runs.append(processes_run(url, pid, recipients, limit, concurrency, processes))
                run = runs[-1]
                held = (f"{run['sustained'] / run['rate']:>9.3f}" if run["rate"] else
                        f"{'(none)':>9}")
                dupes = f"  [{run['duplicates']} duplicates]" if run["duplicates"] else ""
                print(f"   {processes:>5} {run['rate'] or 0:>7,.0f} {run['sent']:>7,} "
                      f"{run['wall']:>7.1f} {run['sent'] / run['wall']:>7,.0f} "
                      f"{run['max_1s']:>7,} {held} "
                      f"{1000 * run['cpu'] / max(run['sent'], 1):>10.2f} "
                      f"{100 * run['fake_cpu'] / run['wall']:>9.0f}  {run['load']}{dupes}",
                      flush=True)
    limited = [run for run in runs if run["rate"]]
    unlimited = {run["processes"]: run["sent"] / run["wall"] for run in runs if not run["rate"]}
    one = unlimited.get(min(unlimited), 0.0)
    over = [run for run in limited if run["max_1s"] > run["rate"]]
    print(f"   rate never exceeded in any 1 s window: {'yes' if not over else 'NO'}; "
          f"sustained/rate at the rate: "
          + ", ".join(f"{run['processes']} proc {run['sustained'] / run['rate']:.3f}"
                      for run in limited) + " (target ≥ 0.97)")
    print("   unlimited msgs/s: " + ", ".join(f"{n} proc {v:,.0f} ({v / max(one, 1e-9):.2f}x)"
                                            for n, v in sorted(unlimited.items()))
          + f" (target at rate {rate:,.0f}: ≥ {rate:,.0f} msgs/s; N processes ≥ 1.7x one)")
    print(flush=True)


# ---------------------------------------------------------------- main


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small figures, for a smoke test")
    parser.add_argument("--count", type=int, help="recipients personalised in part 1")
    parser.add_argument("--rounds", type=int, help="rounds of part 1 (the best is shown)")
    parser.add_argument("--recipients", type=int, help="recipients per SES run in part 2")
    parser.add_argument("--rate", type=float, default=1000.0, help="the rate set in part 2")
    parser.add_argument("--concurrency", default="16,32,64,128", help="threads, part 2")
    parser.add_argument("--sizes", help="list sizes of part 3, comma-separated")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    parser.add_argument("--parts", default="123", help="which parts to run, e.g. 13")
    parser.add_argument("--processes", default="1,2,3", help="sender processes, part 4")
    parser.add_argument("--child", choices=["ses", "import", "send", "worker"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse()
    if args.child == "ses":
        print(json.dumps(ses_child(args.url, args.recipients, args.rate,
                                   numbers(args.concurrency)[0])))
        return
    if args.child == "import":
        print(json.dumps(import_child(args.url, args.size)))
        return
    if args.child == "send":
        print(json.dumps(send_child(args.url, args.size)))
        return
    if args.child == "worker":
        print(json.dumps(worker_child(args.url, args.database, args.rate,
                                      numbers(args.concurrency)[0])))
        return
    print(f"bench/send.py{' --quick' if args.quick else ''}: Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {load()} (other processes share these CPUs)\n",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as folder:
        if "1" in args.parts:
            personalise_part(args.count, args.rounds, Path(folder))
    if "2" in args.parts:
        ses_part(args.recipients, args.rate, numbers(args.concurrency), not args.no_profile)
    if "3" in args.parts:
        rss_part(numbers(args.sizes))
    if "4" in args.parts:
        processes_part(args.recipients, args.rate, numbers(args.concurrency)[0],
                       numbers(args.processes))


if __name__ == "__main__":
    main()
