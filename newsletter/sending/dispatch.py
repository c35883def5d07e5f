"""The dispatch loop of a send: keep the sending threads busy, and the ledger told.

Rows are claimed ahead in batches (``claimed``) and marked ``sending`` only when a thread is
free to take one, in the same transaction that records the results just in (``_turn``): so at
most ``concurrency`` rows are ``sending`` at any instant, which bounds what a crash can leave
``unknown``. Each thread personalises its message and sends it under the retry policy
(``send``): throttling waits and tries again, transient errors back off and retry a few times,
a request that got no answer is ``unknown`` and never tried again.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr

from newsletter.config import Settings
from newsletter.errors import (
    DeliveryError,
    FatalTransportError,
    InvalidAddress,
    PermanentError,
    Throttled,
    TransientError,
    UnknownOutcome,
)
from newsletter.message import MessageTemplate, Recipient, header_address
from newsletter.sending.pacing import RateLimiter, backoff
from newsletter.store.ledger import Claim, Ledger, Outcome
from newsletter.tokens import preferences_url, unsubscribe_url
from newsletter.transports.base import Envelope, Transport

MAX_TRANSIENT_ATTEMPTS = 5
MAX_THROTTLE_WAIT = 300.0  # seconds of throttling on one message before the send pauses
MAX_CONSECUTIVE_FAILURES = 50
GATHER = 0.005  # seconds a turn may wait for more results to record together
HEARTBEAT_EVERY = 5.0  # seconds; a sender silent for ledger.STALE_AFTER is taken for dead


@dataclass(frozen=True)
class SendOptions:
    rate: float | None = None  # messages/s; None: the transport's quota x safety, or unlimited
    concurrency: int = 32
    retry_unknown: bool = False
    retry_failed: bool = False
    max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES
    limit: int | None = None  # send at most this many now (the daily quota, a test)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SendOptions:
        base = cls(rate=settings.rate, concurrency=settings.concurrency)
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(base, **given)  # type: ignore[arg-type]


@dataclass
class Progress:
    """Live counters of one run of the engine (what the progress bar shows)."""

    total: int = 0  # rows this run may send
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0  # handed over, no answer: the provider may have accepted them
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None  # set when the run ends: its report keeps its own time

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.unknown

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        return self.sent / max(self.elapsed, 1e-9)


def envelope_sender(settings: Settings) -> str:
    return header_address(parseaddr(settings.sender)[1])


class Dispatcher:
    """Keeps ``concurrency`` messages in flight and as many claimed in reserve; one ledger
    transaction per turn records the results in, hands the next rows over and claims more."""

    def __init__(self, templates: Mapping[str, MessageTemplate], issue: str, settings: Settings,
                 ledger: Ledger, transport: Transport, limiter: RateLimiter,
                 options: SendOptions, progress: Progress, stop: threading.Event | None = None):
        self.templates, self.issue, self.settings = templates, issue, settings
        self.original = next(iter(templates.values()))  # for rows planned without a language
        self.ledger, self.transport, self.limiter = ledger, transport, limiter
        self.options, self.progress = options, progress
        self.window = 2 * options.concurrency
        self.sender = envelope_sender(settings)
        self._stop = threading.Event()
        self._interrupt = stop or threading.Event()
        self.stop_reason: str | None = None
        self.error: Exception | None = None  # raised again once the in-flight work is recorded
        self.consecutive_failures = 0
        self.worker = ""  # this sender's id in the ledger, once running
        self.budget = 0  # how many more rows this run may claim
        self.reserve: deque[Claim] = deque()  # claimed, not handed over
        self.inflight: set[int] = set()  # handed over to a thread, no outcome back yet
        self.todo: queue.SimpleQueue[Claim | None] = queue.SimpleQueue()  # to the threads
        self.done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()  # from them
        self.outcomes: list[Outcome] = []  # in, not yet recorded
        self.exhausted = False  # the queue had nothing more for us
        self.next_beat = time.monotonic() + HEARTBEAT_EVERY

    def stopping(self) -> bool:
        return self._stop.is_set() or self._interrupt.is_set()

    def stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def run(self, limit: int | None, on_progress: Callable[[Progress], None] | None) -> str | None:
        self.budget = limit if limit is not None else 1 << 62
        self.worker = self.ledger.register_sender()
        threads = [threading.Thread(target=self._sender, name=f"send-{n}", daemon=True)
                   for n in range(self.options.concurrency)]
        for thread in threads:
            thread.start()
        try:
            while self._turn():
                self._collect()
                if on_progress:
                    on_progress(self.progress)
        finally:
            self._stop.set()  # anything still queued for the threads is not sent
            for _ in threads:
                self.todo.put(None)
            for thread in threads:
                thread.join()
            self.ledger.unregister_sender(self.worker)
        if self.error:
            raise self.error
        if self._interrupt.is_set() and self.stop_reason is None:
            return "interrupted; the rest stays queued for the next run"
        if self.stop_reason is None and self.budget <= 0 and limit is not None:
            return "stopped at the sending limit (daily quota); resume later"
        return self.stop_reason

    def _sender(self) -> None:
        """A sending thread: deliver what it is handed until told to stop (``None``)."""
        while (claim := self.todo.get()) is not None:
            try:
                outcome = self.deliver(claim)
            except Exception as error:  # a bug: it may have gone out, so never resend it
                self.error = self.error or error
                self.stop(f"unexpected error while sending: {error!r}")
                outcome = Outcome(claim.delivery_id, "unknown", error=f"unexpected: {error!r}")
            self.done.put(outcome)

    def _turn(self) -> bool:
        """One ledger transaction: record the results in, hand rows over to the free threads,
        claim more. Returns False once there is nothing left to wait for."""
        if self.stopping():  # what was reserved goes back to the queue untouched
            self.outcomes += [Outcome(c.delivery_id, "queued") for c in self.reserve]
            self.reserve.clear()
        free = self.options.concurrency - len(self.inflight)
        ready = [self.reserve.popleft() for _ in range(min(free, len(self.reserve)))]
        room = min(self.window - len(self.reserve) - len(self.inflight) - len(ready),
                   self.budget)
        # Claim in chunks (fewer transactions), but never idle with room to spare.
        claim = room if (not self.exhausted and not self.stopping() and room > 0
                         and (room >= self.window // 4 or not self.reserve)) else 0
        if self.outcomes or ready or claim:
            handed, claims, skipped = self.ledger.advance(
                self.issue, self.worker, self.outcomes, [c.delivery_id for c in ready], claim)
            self.outcomes = []
            self.progress.skipped += skipped
            self.exhausted = self.exhausted or (claim > 0 and not claims and not skipped)
            self.budget -= len(claims)
            self.reserve.extend(claims)
            mine = set(handed)  # rows another sender took back are not ours to send
            for row in ready:
                if row.delivery_id in mine:
                    self.inflight.add(row.delivery_id)
                    self.todo.put(row)
        if self.inflight or self.reserve:
            return True
        if self.stopping() or self.budget <= 0:
            return False
        if self.exhausted:  # done, unless a dead sender left rows behind
            if not self.ledger.recover(self.issue)[1]:
                return False
            self.exhausted = False
        return True  # claim again next turn (the last claim's rows were all skipped)

    def _collect(self) -> None:
        """Wait for results (a second at most, then up to ``GATHER`` more for a few others: one
        transaction for several results costs little more than for one), keep the heartbeat,
        count what came in."""
        enough, until = max(1, self.options.concurrency // 8), time.monotonic() + 1.0
        while self.inflight and len(self.outcomes) < enough and \
                (left := until - time.monotonic()) > 0:
            try:
                outcome = self.done.get(timeout=left)
            except queue.Empty:
                break
            if not self.outcomes:
                until = time.monotonic() + GATHER
            self.outcomes.append(outcome)
            self.inflight.discard(outcome.delivery_id)
        if time.monotonic() >= self.next_beat:
            self.ledger.heartbeat(self.worker)
            # Another sender of this issue may have died: its reserved rows are ours to send
            # now, its rows in flight become unknown.
            self.exhausted = self.exhausted and not self.ledger.recover(self.issue)[1]
            self.next_beat = time.monotonic() + HEARTBEAT_EVERY
        self.count(self.outcomes)

    def count(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.status == "sent":
                self.progress.sent += 1
                self.consecutive_failures = 0
                continue
            if outcome.status == "failed":
                self.progress.failed += 1
            elif outcome.status == "unknown":  # a provider that stops answering pauses too
                self.progress.unknown += 1
            else:
                continue
            self.consecutive_failures += 1
            # Checked per outcome: two results can arrive together (the window holds more
            # than one message), and the pause is decided at the threshold, not past it.
            if self.consecutive_failures >= self.options.max_consecutive_failures:
                self.stop(f"paused after {self.consecutive_failures} consecutive failures; "
                          "see `newsletter status` for the errors, fix, then send again")

    def deliver(self, claim: Claim) -> Outcome:
        """Runs in a worker thread: personalise, then send with the retry policy."""
        if self.stopping():
            return Outcome(claim.delivery_id, "queued")  # never handed over: resend later
        try:
            template = self.templates.get(claim.language or "", self.original)
            raw = template.personalise(self.recipient(claim))
        except InvalidAddress as error:
            return Outcome(claim.delivery_id, "failed", error=str(error))
        except Exception as error:  # a bug or a config problem: nothing was handed over
            self.error = error
            self.stop(f"could not build a message: {error}")
            return Outcome(claim.delivery_id, "queued")
        envelope = Envelope(self.sender, claim.email, self.issue, f"{claim.subscriber_id}")
        return self.send(claim, raw, envelope)

    def recipient(self, claim: Claim) -> Recipient:
        return Recipient(claim.email, name=claim.name, first_name=claim.first_name,
                         attributes=claim.attributes,
                         unsubscribe_url=unsubscribe_url(self.settings, claim.subscriber_id,
                                                         self.issue),
                         preferences_url=preferences_url(self.settings, claim.subscriber_id))

    def send(self, claim: Claim, raw: bytes, envelope: Envelope) -> Outcome:
        attempts, throttled_for = 0, 0.0
        while True:
            self.limiter.acquire()
            attempts += 1
            try:
                message_id = self.transport.send(raw, envelope)
                return Outcome(claim.delivery_id, "sent", message_id=message_id,
                               attempts=attempts)
            except Throttled as error:  # refused, so not sent: it may wait or go back queued
                self.limiter.slow_down()
                wait_for = backoff(min(attempts, 6))
                throttled_for += wait_for
                if throttled_for > MAX_THROTTLE_WAIT:
                    self.stop(f"the provider kept throttling: {error}")
                if self.stopping():
                    return Outcome(claim.delivery_id, "queued", error=str(error))
                time.sleep(wait_for)
            except TransientError as error:
                if attempts >= MAX_TRANSIENT_ATTEMPTS or self.stopping():
                    return Outcome(claim.delivery_id, "failed", error=str(error),
                                   attempts=attempts)
                time.sleep(backoff(attempts))
            except UnknownOutcome as error:  # it may have gone out: never resent silently
                return Outcome(claim.delivery_id, "unknown", error=str(error), attempts=attempts)
            except PermanentError as error:
                return Outcome(claim.delivery_id, "failed", error=str(error), attempts=attempts)
            except FatalTransportError as error:
                self.stop(f"the transport refused to go on: {error}")
                return Outcome(claim.delivery_id, "queued", error=str(error))
            except DeliveryError as error:  # an unclassified transport failure: be careful
                return Outcome(claim.delivery_id, "failed", error=str(error), attempts=attempts)
