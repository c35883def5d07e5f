"""Start-up cost of the ``newsletter`` command: wall time, CPU and peak memory of short runs.

    .venv/bin/python bench/cli.py [--rounds 15] [--issue 2025-04-asit-highlights]

Runs, as child processes from the project folder, ``python -c pass`` (the interpreter alone, the
floor every figure stands on), ``newsletter --help``, ``newsletter --version`` and ``newsletter
check ISSUE``, one of each per round, in turn, after a warm-up round that fills the bytecode and
page caches. Each child is reaped with ``os.wait4``, which gives its own CPU time (user and
system) and peak resident set size; the wall time runs from the fork to the reaping. Prints, per
command, the best and median of the rounds and the difference from ``python -c pass``, then
whether ``--help`` meets its targets (wall ≤ 0.15 s, ≤ 40 MB): shell completion runs it on every
tab, and it is the first thing a user runs. The best round is the figure, the least disturbed by
other processes; the load average is printed before and after, and on a busy machine the CPU
column, which waiting for a core does not inflate, tells the command's own cost. Nothing is sent
and no database is touched: ``check`` renders and lints the issue in memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_MB = 0.15, 40.0


@dataclass
class Figures:
    label: str
    argv: list[str]
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    megabytes: list[float] = field(default_factory=list)


def newsletter_command() -> list[str]:
    """The console script installed beside this interpreter, as users run it."""
    script = Path(sys.executable).parent / "newsletter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "newsletter"]


def measure(run: Figures, env: dict[str, str]) -> None:
    """Run ``run.argv`` once and add its figures; exits if the command fails."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        child = subprocess.Popen(run.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            errors.seek(0)
            sys.exit(f"{' '.join(run.argv)} exited with {child.returncode}:\n"
                     f"{errors.read().decode(errors='replace').strip()}")
    run.seconds.append(elapsed)
    run.cpu.append(usage.ru_utime + usage.ru_stime)
    run.megabytes.append(usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--issue", default="2025-04-asit-highlights")
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("NEWSLETTER_SECRET_KEY", "bench-secret-key-0123456789")
    command = newsletter_command()
    runs = [Figures("python -c pass", [sys.executable, "-c", "pass"]),
            Figures("newsletter --help", [*command, "--help"]),
            Figures("newsletter --version", [*command, "--version"]),
            Figures(f"newsletter check {args.issue}", [*command, "check", args.issue])]

    for run in runs:
        measure(run, env)
        run.seconds, run.cpu, run.megabytes = [], [], []  # the warm-up is not counted
    load_before = load()
    for _ in range(args.rounds):
        for run in runs:
            measure(run, env)
    load_after = load()

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average {load_before} before, {load_after} after")
    print(f"{args.rounds} rounds; newsletter is {' '.join(command)}")
    floor = runs[0]
    width = max(len(run.label) for run in runs)
    print(f"{'':<{width}}  {'wall: best':>10} {'median':>7} {'-python':>8}  {'CPU: best':>9}"
          f"  {'peak RSS: best':>14} {'median':>8} {'-python':>8}")
    for run in runs:
        wall, rss = min(run.seconds), min(run.megabytes)
        print(f"{run.label:<{width}}  {wall:8.3f} s {statistics.median(run.seconds):5.3f} s "
              f"{wall - min(floor.seconds):+6.3f} s  {min(run.cpu):7.3f} s  {rss:11.1f} MB "
              f"{statistics.median(run.megabytes):5.1f} MB {rss - min(floor.megabytes):+5.1f} MB")
    seconds, megabytes = min(runs[1].seconds), min(runs[1].megabytes)
    print(f"newsletter --help: wall ≤ {TARGET_SECONDS:.2f} s "
          f"{'met' if seconds <= TARGET_SECONDS else 'MISSED'} ({seconds:.3f} s), "
          f"peak RSS ≤ {TARGET_MB:.0f} MB {'met' if megabytes <= TARGET_MB else 'MISSED'} "
          f"({megabytes:.1f} MB)")


if __name__ == "__main__":
    main()
