"""CPU per SES SendEmail call: boto3's ``send_email`` vs the lean ``SesTransport.send``.

    .venv/bin/python bench/ses_call.py [--count 500] [--rounds 7] [--issue SLUG]

Both post the same personalised ASIT issue (about 60 KB) from one thread to ``tests/fakeses.py``
running as a separate process (no latency, bodies discarded), so that the fake's CPU is not
counted. Timed in CPU time of the sending thread (``time.thread_time``: user and system, the
kernel's share of the socket writes included), rounds of each path interleaved; the best round
is the figure (the least disturbed by other processes), the median is printed beside it. The
lean path is then split into its steps: the JSON body, the SigV4 signature, the rest (urllib3,
the socket, reading the answer). The send engine's budget is 1.0 ms of CPU per message, all in.
Nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import render_issue
from newsletter.config import load_settings
from newsletter.message import Recipient, build_template
from newsletter.transports.base import Envelope

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MS = 1.0


def fakeses() -> ModuleType:
    """``tests/fakeses.py`` (stdlib only), loaded by path: ``tests`` is not a package here."""
    spec = importlib.util.spec_from_file_location("fakeses", ROOT / "tests" / "fakeses.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def aws_environment(url: str) -> dict[str, str]:
    """boto3's chain, pointed at the fake only: dummy keys, no files, no instance metadata."""
    return {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_SESV2": url,
            "AWS_ENDPOINT_URL_SES": url, "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def message(issue: str) -> tuple[bytes, Envelope]:
    settings = load_settings(ROOT / "newsletter.toml", env={})
    rendered = render_issue(load_issue(find_issue(settings, issue), settings), settings)
    reader = Recipient("ana.reader@example.net", name="Ana Reader", first_name="Ana",
                       unsubscribe_url=f"{settings.base_url}/unsubscribe/{'x' * 64}")
    raw = build_template(rendered, settings).personalise(reader)
    return raw, Envelope("news@example.org", reader.email, rendered.slug, "1")


def cpu_ms(call: Callable[[], Any], count: int) -> float:
    """CPU milliseconds of this thread per call, over ``count`` calls."""
    start = time.thread_time()
    for _ in range(count):
        call()
    return (time.thread_time() - start) * 1000 / count


def report(name: str, rounds: list[float], note: str = "") -> None:
    print(f"  {name:<28} {min(rounds):6.3f} ms  (median {statistics.median(rounds):.3f}){note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="sends per round and path")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--issue", default="2025-04-asit-highlights")
    args = parser.parse_args()

    raw, envelope = message(args.issue)
    fake = fakeses()
    with fake.spawn("--discard-raw") as url:
        os.environ.update(aws_environment(url))
        from newsletter.transports.ses import (
            SesTransport,
            aws_session,
            build_request,
            client_config,
            make_client,
            request_body,
        )

        config = client_config(1)
        session = aws_session()
        client = make_client(session, "sesv2", config)  # the old path: boto3 itself
        transport = SesTransport(session, config)
        request = build_request(raw, envelope)
        body = request_body(raw, envelope)
        paths: dict[str, Callable[[], Any]] = {
            "boto3 send_email": lambda: client.send_email(**request),
            "SesTransport.send (lean)": lambda: transport.send(raw, envelope),
            "  request_body": lambda: request_body(raw, envelope),
            "  sign (SigV4Auth)": lambda: transport._http.sign(body),
        }
        for call in paths.values():  # warm up: connections, caches, the fake's threads
            for _ in range(50):
                call()
        fake.post(url, "/_fake/reset")
        load_before = os.getloadavg()
        figures: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, call in paths.items():
                figures[name].append(cpu_ms(call, args.count))
        load_after = os.getloadavg()
        stats = fake.fetch(url, "/_fake/stats.json")
        transport.close()
        client.close()

    sent = 2 * args.rounds * args.count
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average {load_before[0]:.2f} {load_before[1]:.2f} before, "
          f"{load_after[0]:.2f} {load_after[1]:.2f} after")
    print(f"message {len(raw):,} bytes ({args.issue}), body {len(body):,} bytes; "
          f"{args.rounds} rounds of {args.count} sends per path; the fake took "
          f"{stats['accepted']:,} of {sent:,}")
    print("CPU per message, best round:")
    boto, lean = min(figures["boto3 send_email"]), min(figures["SesTransport.send (lean)"])
    for name, rounds in figures.items():
        note = ""
        if name == "SesTransport.send (lean)":
            note = f"  {boto / lean:.1f}x less than boto3"
        report(name, rounds, note)
    rest = lean - min(figures["  request_body"]) - min(figures["  sign (SigV4Auth)"])
    print(f"  {'  post and answer (urllib3)':<28} {rest:6.3f} ms  (the difference)")
    print(f"budget of the send engine: {BUDGET_MS:.1f} ms per message, all in")


if __name__ == "__main__":
    main()
