"""A small SES v2 look-alike over real HTTP, with seeded fault injection. stdlib only.

It speaks what botocore's sesv2 model says (``POST /v2/email/outbound-emails`` for SendEmail,
``GET /v2/email/account`` for GetAccount; errors as the modelled HTTP status, an
``x-amzn-ErrorType`` header and a JSON ``message``), so boto3 pointed at it behaves as against
SES. In a test::

    with FakeSes(latency=0.05, throttle=0.1, seed=1) as fake:
        ... AWS_ENDPOINT_URL_SESV2=fake.url ...
        fake.configure(mode="suspended")        # switch a fault at runtime
        fake.messages(), fake.counts(), fake.max_per_second()

As a process (prints its URL on stdout first, runs until SIGTERM or Ctrl-C)::

    python tests/fakeses.py --port 0 --latency 0.05 --throttle 0.1 --error5xx 0.02 \
        --timeout 0.01 --seed 1
    curl URL/_fake/stats.json; curl URL/_fake/messages.json?raw=1

``POST /_fake/configure`` (a JSON object of ``Faults`` fields) and ``POST /_fake/reset`` change a
running process. Three faults leave the client without an answer, as real networks do:

- "timeout" sleeps ``timeout_after`` seconds (more than the client's read timeout), then drops
  the connection without recording the message: it never arrived;
- "late" records the message (SES took it), then answers only after ``late_after`` seconds,
  when the client has given up;
- "lost" records the message, then resets the connection without answering.

Only the first may be resent safely, and a client cannot tell them apart.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import dataclasses
import json
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEND_PATH = "/v2/email/outbound-emails"
ACCOUNT_PATH = "/v2/email/account"
MODES = ("", "suspended", "paused", "credentials")


@dataclass
class Faults:
    """What goes wrong, and how often (probabilities per SendEmail request)."""

    latency: float = 0.0  # seconds before every SendEmail answer
    jitter: float = 0.0  # plus a uniform [0, jitter) seconds
    throttle: float = 0.0  # 429 TooManyRequestsException
    error5xx: float = 0.0  # 500 InternalFailure or 503 ServiceUnavailable
    timeout: float = 0.0  # sleep timeout_after, drop the connection, record nothing
    hang: float = 0.0  # never answer (until the fake stops)
    late: float = 0.0  # record the message, answer after late_after seconds
    lost: float = 0.0  # record the message, reset the connection without answering
    timeout_after: float = 2.0
    late_after: float = 11.0
    mode: str = ""  # "suspended", "paused" or "credentials": every SendEmail fails so
    daily_quota: int | None = None  # accept this many, then "Daily message quota exceeded"
    max_send_rate: float = 14.0  # reported by GetAccount
    max_24_hour_send: float = 50000.0
    reject: tuple[str, ...] = ()  # recipients answered with MessageRejected
    senders: tuple[str, ...] | None = None  # verified senders (None: any sender)
    configuration_sets: tuple[str, ...] | None = None  # existing sets (None: any name)
    keep_raw: bool = True  # False: record sizes only (long benchmarks)


@dataclass(frozen=True)
class Accepted:
    """One message the fake took, as SES would have."""

    message_id: str
    sender: str
    recipient: str
    tags: dict[str, str]
    configuration_set: str | None
    data: str  # Content.Raw.Data as sent (base64); "" when the fake keeps no bodies
    size: int
    at: float  # time.time() the request arrived: what a provider's rate limit counts
    answer: str = "ok"  # "late" or "lost": taken, but the client got no answer in time

    @property
    def raw(self) -> bytes:
        """The message bytes, decoded when asked: decoding costs ~80 µs per 30 KB here."""
        return base64.b64decode(self.data)


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class _State:
    faults: Faults
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: list[Accepted] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    stopping: threading.Event = field(default_factory=threading.Event)
    connections: set[socket.socket] = field(default_factory=set)

    def configure(self, changes: dict[str, Any]) -> None:
        with self.lock:
            self.faults = dataclasses.replace(self.faults, **changes)

    def count(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1

    def reset(self) -> None:
        with self.lock:
            self.accepted.clear()
            self.outcomes.clear()

    def messages(self) -> list[Accepted]:
        with self.lock:
            return list(self.accepted)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            messages, outcomes = list(self.accepted), dict(self.outcomes)
        counts = Counter(message.recipient for message in messages)
        arrivals = [message.at for message in messages]
        return {
            "accepted": len(messages),
            "recipients": len(counts),
            "duplicates": sum(n - 1 for n in counts.values() if n > 1),
            "max_per_second": max_in_window(arrivals),
            "first_at": min(arrivals, default=None),
            "last_at": max(arrivals, default=None),
            "outcomes": outcomes,
        }


class FakeSes:
    """The server, run in a thread of this process; a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0,
                 **faults: Any):
        self._state = _State(Faults(**faults), random.Random(seed))
        self._server = _Server((host, port), _Handler)
        self._server.state = self._state
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05}, name="fakeses")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeSes:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hung requests, close every connection and join its thread."""
        self._server.shutdown()
        with self._state.lock:
            self._state.stopping.set()
            connections = list(self._state.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        self._thread.join()

    def __enter__(self) -> FakeSes:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def configure(self, **changes: Any) -> None:
        """Change faults at runtime (e.g. ``mode="paused"``, ``daily_quota=10``)."""
        self._state.configure(changes)

    def reset(self) -> None:
        """Forget every message and outcome counted so far (faults stay as they are)."""
        self._state.reset()

    def messages(self) -> list[Accepted]:
        return self._state.messages()

    def counts(self) -> Counter[str]:
        """Accepted messages per recipient (a value above 1 is a duplicate)."""
        return Counter(message.recipient for message in self.messages())

    def max_per_second(self) -> int:
        """The most messages accepted in any 1-second window."""
        return max_in_window([message.at for message in self.messages()])

    def stats(self) -> dict[str, Any]:
        return self._state.stats()


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most timestamps in any half-open interval [t, t + window)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)),
               default=0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # many pooled connections open at once
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out hang up mid-answer: that is expected here, not an error."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        state = self.server.state
        with state.lock:
            state.connections.add(self.connection)
            if state.stopping.is_set():  # accepted while stop() ran: end it like the others
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self.server.state.lock:
            self.server.state.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tens of thousands of requests a minute."""

    def do_POST(self) -> None:
        # Stamped before this process reads the body or sleeps the latency, so that the rate
        # measured here is the sender's, not this server's own scheduling jitter.
        arrived = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == SEND_PATH:
            self._send_email(body, arrived)
        elif self.path == "/_fake/configure":
            self._configure(json.loads(body or b"{}"))
        elif self.path == "/_fake/reset":
            self.server.state.reset()
            self._reply(200, {})
        else:
            self._refuse(_Refusal(404, "NotFoundException", f"no route {self.path}"))

    def do_GET(self) -> None:
        state = self.server.state
        path, _, query = self.path.partition("?")
        if path == ACCOUNT_PATH:
            self._get_account()
        elif path == "/_fake/stats.json":
            self._reply(200, state.stats())
        elif path == "/_fake/messages.json":
            self._reply(200, [_describe(m, "raw=1" in query) for m in state.messages()])
        else:
            self._refuse(_Refusal(404, "NotFoundException", f"no route {path}"))

    def _send_email(self, body: bytes, arrived: float) -> None:
        state = self.server.state
        faults = state.faults
        draw, spread, pick = state.rng.random(), state.rng.random(), state.rng.random()
        if faults.latency or faults.jitter:
            time.sleep(faults.latency + spread * faults.jitter)
        if draw < faults.hang:
            return self._drop(state, "hang", None)
        if draw < faults.hang + faults.timeout:
            return self._drop(state, "timeout", faults.timeout_after)
        draw -= faults.hang + faults.timeout
        answer = "late" if draw < faults.late else "lost" if draw < faults.late + faults.lost \
            else "ok"
        try:
            if answer == "ok":
                _injected_fault(faults, draw - faults.late - faults.lost, pick)
            message = _accept(state, json.loads(body), arrived, answer)
        except _Refusal as refusal:
            state.count(refusal.code)
            return self._refuse(refusal)
        if answer == "lost":  # RST, not FIN: the client reads "connection reset"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            return None
        if answer == "late":
            state.stopping.wait(faults.late_after)
            self.close_connection = True  # the client hung up long ago
        self._reply(200, {"MessageId": message.message_id})

    def _get_account(self) -> None:
        faults = self.server.state.faults
        if faults.mode == "credentials":
            return self._refuse(_credentials_refused())
        self._reply(200, {
            "SendQuota": {"MaxSendRate": faults.max_send_rate,
                          "Max24HourSend": faults.max_24_hour_send,
                          "SentLast24Hours": float(len(self.server.state.accepted))},
            "SendingEnabled": faults.mode == "",
            "ProductionAccessEnabled": True,
            "EnforcementStatus": "HEALTHY" if faults.mode != "suspended" else "SHUTDOWN",
        })

    def _configure(self, changes: dict[str, Any]) -> None:
        for key in ("reject", "senders", "configuration_sets"):
            if changes.get(key) is not None:
                changes[key] = tuple(changes[key])
        self.server.state.configure(changes)
        self._reply(200, dataclasses.asdict(self.server.state.faults))

    def _drop(self, state: _State, outcome: str, after: float | None) -> None:
        """Answer nothing: wait (for ever, for a hang), then close the connection."""
        state.count(outcome)
        state.stopping.wait(after)
        self.close_connection = True

    def _refuse(self, refusal: _Refusal) -> None:
        # restJson errors: botocore reads the code from x-amzn-ErrorType (anything after ":" is
        # dropped) and the text from the body's "message".
        self._reply(refusal.status, {"message": refusal.message},
                    f"x-amzn-ErrorType: {refusal.code}:http://internal.amazon.com/\r\n")

    def _reply(self, status: int, document: Any, extra: str = "") -> None:
        """One write per answer, and no Server or Date header to format: cheaper than
        send_response & co, and the fake's CPU is taken from the client it serves."""
        body = json.dumps(document).encode()
        head = (f"HTTP/1.1 {status} {self.responses[status][0]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"x-amzn-RequestId: {uuid.uuid4()}\r\n{extra}\r\n")
        self.wfile.write(head.encode() + body)


def _injected_fault(faults: Faults, draw: float, pick: float) -> None:
    """Raise the refusal this request draws, if any (``draw`` is uniform, already offset)."""
    if faults.mode == "credentials":
        raise _credentials_refused()
    if faults.mode == "suspended":
        raise _Refusal(400, "AccountSuspendedException",
                       "Your account's ability to send email has been permanently restricted.")
    if faults.mode == "paused":
        raise _Refusal(400, "SendingPausedException",
                       "Your account's ability to send email is currently paused.")
    if draw < faults.throttle:
        raise _Refusal(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
    if draw < faults.throttle + faults.error5xx:
        if pick < 0.5:
            raise _Refusal(500, "InternalFailure", "An internal error occurred.")
        raise _Refusal(503, "ServiceUnavailable", "Service is unavailable, try again later.")


def _credentials_refused() -> _Refusal:
    return _Refusal(403, "UnrecognizedClientException",
                    "The security token included in the request is invalid.")


def _accept(state: _State, request: dict[str, Any], arrived: float,
            answer: str = "ok") -> Accepted:
    """Validate a SendEmail request like SES, then record it (under the lock: quota is exact)."""
    faults = state.faults
    sender = request.get("FromEmailAddress", "")
    recipients = request.get("Destination", {}).get("ToAddresses", [])
    raw = request.get("Content", {}).get("Raw", {}).get("Data")
    configuration_set = request.get("ConfigurationSetName")
    if raw is None or len(recipients) != 1:
        raise _Refusal(400, "BadRequestException", "expected Content.Raw and one ToAddresses")
    if faults.senders is not None and sender not in faults.senders:
        raise _Refusal(400, "MessageRejected", "Email address is not verified. The following "
                       f"identities failed the check in region US-EAST-1: {sender}")
    if recipients[0] in faults.reject:
        raise _Refusal(400, "MessageRejected", f"Address blacklisted: {recipients[0]}")
    if configuration_set and faults.configuration_sets is not None \
            and configuration_set not in faults.configuration_sets:
        raise _Refusal(404, "NotFoundException",
                       f"Configuration set <{configuration_set}> does not exist.")
    message = Accepted(
        message_id=f"0100{uuid.uuid4().hex}-000000", sender=sender, recipient=recipients[0],
        tags={tag["Name"]: tag["Value"] for tag in request.get("EmailTags", [])},
        configuration_set=configuration_set, data=raw if faults.keep_raw else "",
        size=len(raw) * 3 // 4 - raw[-2:].count("="), at=0.0)
    with state.lock:
        if faults.daily_quota is not None and len(state.accepted) >= faults.daily_quota:
            raise _Refusal(429, "TooManyRequestsException", "Daily message quota exceeded.")
        message = dataclasses.replace(message, at=arrived, answer=answer)
        state.accepted.append(message)
        state.outcomes["accepted"] += 1
        if answer != "ok":
            state.outcomes[answer] += 1
    return message


def _describe(message: Accepted, with_raw: bool) -> dict[str, Any]:
    """A message as JSON; ``raw`` (base64) only when asked for: it is most of the bytes."""
    document = dataclasses.asdict(message)
    data = document.pop("data")
    document["raw"] = data if with_raw else None
    return document


# ---------------------------------------------------------------- as a process


@contextlib.contextmanager
def spawn(*arguments: str) -> Iterator[str]:
    """Run ``python tests/fakeses.py ARGUMENTS`` as a child process; yield its URL."""
    process = subprocess.Popen([sys.executable, __file__, *arguments], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"fakeses.py did not start (exit code {process.poll()})")
        yield url
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def fetch(url: str, path: str) -> Any:
    """GET a JSON document from a fake (``/_fake/stats.json``, ``/_fake/messages.json``)."""
    with urllib.request.urlopen(url + path, timeout=30) as answer:
        return json.load(answer)


def post(url: str, path: str, document: dict[str, Any] | None = None) -> Any:
    """POST JSON to a fake: ``/_fake/configure`` with Faults fields, or ``/_fake/reset``."""
    request = urllib.request.Request(url + path, data=json.dumps(document or {}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A fault-injecting SES v2 look-alike.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    for name in ("latency", "jitter", "throttle", "error5xx", "timeout", "hang", "late", "lost"):
        parser.add_argument(f"--{name}", type=float, default=0.0)
    parser.add_argument("--timeout-after", type=float, default=2.0)
    parser.add_argument("--late-after", type=float, default=11.0)
    parser.add_argument("--daily-quota", type=int)
    parser.add_argument("--max-send-rate", type=float, default=14.0)
    parser.add_argument("--mode", choices=MODES, default="")
    parser.add_argument("--discard-raw", action="store_true", help="record sizes, not bytes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = vars(_parse(argv))
    options["keep_raw"] = not options.pop("discard_raw")
    host, port, seed = options.pop("host"), options.pop("port"), options.pop("seed")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with FakeSes(host=host, port=port, seed=seed, **options) as fake:
        print(fake.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
