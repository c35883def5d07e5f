"""The send engine: plan a ledger row per recipient, then claim, personalise, send and record.

Crash safety rests on one rule: a delivery row is marked ``sending`` (committed) before its
message goes to the transport, and marked ``sent``/``failed``/``unknown`` after. Rows are
claimed ahead in batches (``claimed``: reserved, not handed over), but one is marked ``sending``
only when a sending thread is free for it, in the same transaction that records the results
just in: so at most ``concurrency`` rows are ``sending`` at any instant. After a crash those
rows, and only those, are ambiguous: ``recover`` marks them ``unknown`` and puts the dead
sender's ``claimed`` rows back in the queue. ``unknown`` rows are never resent unless asked
(``retry_unknown``); neither is a message the transport sent without getting an answer
(``UnknownOutcome``). Everything else is resumed exactly: ``queued`` rows were never handed
over, ``sent`` rows are never sent again.

The engine sees the database only through ``Ledger`` and the provider only through
``Transport``: it knows no SQL dialect and no SES.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from email.utils import parseaddr

from newsletter.authoring.content import FIELD_RE, PLACEHOLDERS
from newsletter.authoring.render import RenderedIssue
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
from newsletter.message import MessageTemplate, Recipient, build_template, header_address
from newsletter.sending.pacing import RateLimiter, backoff
from newsletter.store import Status, Store
from newsletter.store.ledger import Claim, Ledger, Outcome
from newsletter.store.rates import Rates
from newsletter.tokens import unsubscribe_url
from newsletter.transports.base import Envelope, Transport

MAX_TRANSIENT_ATTEMPTS = 5
MAX_THROTTLE_WAIT = 300.0  # seconds of throttling on one message before the send pauses
MAX_CONSECUTIVE_FAILURES = 50
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

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.unknown

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.sent / max(self.elapsed, 1e-9)


@dataclass(frozen=True)
class SendReport:
    """How a run ended. ``stopped`` says why it stopped early, if it did."""

    issue: str
    counts: dict[str, int]
    progress: Progress
    recovered_unknown: int = 0
    stopped: str | None = None

    @property
    def complete(self) -> bool:
        return self.stopped is None and not self.counts.get("queued")


def content_hash(rendered: RenderedIssue) -> str:
    """Identifies what a send was planned from: resuming with edited content is refused."""
    digest = hashlib.sha256()
    for part in (rendered.subject, rendered.preheader, rendered.html, rendered.text):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def attribute_placeholders(rendered: RenderedIssue) -> list[str]:
    """The subscriber attributes an issue fills in (``{{organisation}}``), sorted."""
    return sorted({m.group(1) for part in (rendered.subject, rendered.html, rendered.text)
                   for m in FIELD_RE.finditer(part)} - set(PLACEHOLDERS))


def missing_attributes(rendered: RenderedIssue, store: Store,
                       audience: Collection[str] = ()) -> str:
    """Attribute placeholders that no active subscriber of the audience has: a typo, most
    likely, that would leave a blank in every message ("" when there are none). Subscribers
    who lack an attribute that others have get an empty value, by design."""
    used = attribute_placeholders(rendered)
    if not used:
        return ""
    present = store.attribute_names(statuses=[Status.ACTIVE], tags=audience)
    missing = sorted(set(used) - set(present))
    if not missing:
        return ""
    return (", ".join(f"{{{{{name}}}}}" for name in missing) + " would be empty for everyone: "
            "no active subscriber" + (" in the audience" if audience else "") + " has "
            + ("that attribute" if len(missing) == 1 else "those attributes")
            + " (attributes on the list: " + (", ".join(present) or "none") + ")")


def check_ready(settings: Settings, slug: str) -> None:
    """Fail with a ConfigError before anything is planned or claimed (e.g. no secret key)."""
    unsubscribe_url(settings, 0, slug)
    envelope_sender(settings)


def envelope_sender(settings: Settings) -> str:
    return header_address(parseaddr(settings.sender)[1])


def send_proofs(rendered: RenderedIssue, settings: Settings, transport: Transport,
                addresses: Iterable[str]) -> list[tuple[str, str]]:
    """Send ``[Proof]`` copies to the given addresses, outside the ledger and the list.
    Attribute placeholders show as ``[organisation]``: where each reader's value will go."""
    proof = dataclasses.replace(rendered, subject=f"[Proof] {rendered.subject}")
    template = build_template(proof, settings)
    markers = {name: f"[{name}]" for name in attribute_placeholders(rendered)}
    sent = []
    for number, address in enumerate(addresses, 1):
        raw = template.personalise(Recipient(
            address, unsubscribe_url=f"{settings.base_url}/unsubscribe/proof",
            attributes=markers))
        envelope = Envelope(envelope_sender(settings), address, rendered.slug, f"proof-{number}")
        sent.append((address, transport.send(raw, envelope)))
    return sent


def rehearse(rendered: RenderedIssue, settings: Settings, store: Store,
             audience: Collection[str] = ()) -> tuple[int, int, list[str]]:
    """A dry run: personalise for every current recipient, send nothing, write nothing.

    Returns (recipients, total bytes, problems)."""
    template = build_template(rendered, settings)
    count = size = 0
    problems = []
    for batch in store.audience(audience, batch_size=2000):
        for person in batch:
            try:
                size += len(template.personalise(Recipient(
                    person.email, name=person.name, first_name=person.first_name,
                    attributes=person.attributes,
                    unsubscribe_url=unsubscribe_url(settings, person.id, rendered.slug))))
                count += 1
            except InvalidAddress as error:
                problems.append(str(error))
    return count, size, problems


def send_issue(rendered: RenderedIssue, settings: Settings, ledger: Ledger,
               transport: Transport, options: SendOptions, *,
               on_progress: Callable[[Progress], None] | None = None,
               stop: threading.Event | None = None) -> SendReport:
    """Send (or resume sending) an issue that ``ledger.plan`` has planned.

    Setting ``stop`` (e.g. on SIGTERM) ends the run cleanly: nothing new is claimed, the
    messages in flight finish and are recorded, the rest stays queued."""
    check_ready(settings, rendered.slug)
    recovered, _ = ledger.recover(rendered.slug)
    requeue = [s for s, wanted in (("unknown", options.retry_unknown),
                                   ("failed", options.retry_failed)) if wanted]
    if requeue:
        ledger.requeue(rendered.slug, requeue)
    limit, rate, stopped = _budget(transport, options, settings)
    progress = Progress(total=min(ledger.counts(rendered.slug).get("queued", 0),
                                  limit if limit is not None else 1 << 62))
    if stopped is None and progress.total:
        # One schedule per transport in the database: every sender to SES shares its rate.
        limiter = RateLimiter(rate, functools.partial(Rates(ledger.store).grant, transport.name))
        dispatcher = Dispatcher(build_template(rendered, settings), rendered.slug, settings,
                                ledger, transport, limiter, options, progress, stop)
        stopped = dispatcher.run(limit, on_progress)
        if dispatcher.stop_reason:  # not an interrupt or the quota: someone must look first
            ledger.pause(rendered.slug, dispatcher.stop_reason)
    elif progress.total == 0 and stopped is None and limit == 0:
        stopped = "the daily sending quota is used up"
    return SendReport(rendered.slug, ledger.counts(rendered.slug), progress, recovered, stopped)


def _budget(transport: Transport, options: SendOptions,
            settings: Settings) -> tuple[int | None, float | None, str | None]:
    """How many messages this run may send, at what rate, or why it must not start."""
    quota = transport.quota()
    limit = options.limit
    rate = options.rate
    if quota is not None:
        if rate is None:
            rate = quota.max_send_rate * settings.rate_safety
        if quota.max_24_hour_send >= 0:
            left = int(quota.max_24_hour_send - quota.sent_last_24_hours)
            limit = left if limit is None else min(limit, left)
            if left <= 0:
                return 0, rate, ("the daily sending quota is used up "
                                 f"({quota.sent_last_24_hours:.0f} of "
                                 f"{quota.max_24_hour_send:.0f}); resume later")
    return limit, rate, None


class Dispatcher:
    """Keeps ``concurrency`` messages in flight and as many claimed in reserve; one ledger
    transaction per turn records the results in, hands the next rows over and claims more."""

    def __init__(self, template: MessageTemplate, issue: str, settings: Settings, ledger: Ledger,
                 transport: Transport, limiter: RateLimiter, options: SendOptions,
                 progress: Progress, stop: threading.Event | None = None):
        self.template, self.issue, self.settings = template, issue, settings
        self.ledger, self.transport, self.limiter = ledger, transport, limiter
        self.options, self.progress = options, progress
        self.window = 2 * options.concurrency
        self.sender = envelope_sender(settings)
        self._stop = threading.Event()
        self._interrupt = stop or threading.Event()
        self.stop_reason: str | None = None
        self.error: Exception | None = None  # raised again once the in-flight work is recorded
        self.consecutive_failures = 0

    def stopping(self) -> bool:
        return self._stop.is_set() or self._interrupt.is_set()

    def stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def run(self, limit: int | None, on_progress: Callable[[Progress], None] | None) -> str | None:
        budget = limit if limit is not None else 1 << 62
        worker = self.ledger.register_sender()
        reserve: deque[Claim] = deque()  # claimed, not handed over
        inflight: dict[Future[Outcome], Claim] = {}
        outcomes: list[Outcome] = []
        exhausted, next_beat = False, time.monotonic() + HEARTBEAT_EVERY
        try:
            with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="send") as pool:
                while True:
                    if self.stopping():  # what was reserved goes back to the queue untouched
                        outcomes += [Outcome(c.delivery_id, "queued") for c in reserve]
                        reserve.clear()
                    free = self.options.concurrency - len(inflight)
                    ready = [reserve.popleft() for _ in range(min(free, len(reserve)))]
                    room = min(self.window - len(reserve) - len(inflight) - len(ready), budget)
                    # Claim in chunks (fewer transactions), but never idle with room to spare.
                    claim = room if (not exhausted and not self.stopping() and room > 0
                                     and (room >= self.window // 4 or not reserve)) else 0
                    if outcomes or ready or claim:
                        handed, claims, skipped = self.ledger.advance(
                            self.issue, worker, outcomes, [c.delivery_id for c in ready], claim)
                        outcomes = []
                        self.progress.skipped += skipped
                        exhausted = exhausted or (claim > 0 and not claims and not skipped)
                        budget -= len(claims)
                        reserve.extend(claims)
                        mine = set(handed)  # rows another sender took back are not ours to send
                        inflight.update({pool.submit(self.deliver, c): c
                                         for c in ready if c.delivery_id in mine})
                    if not inflight:
                        if reserve:
                            continue
                        if self.stopping() or budget <= 0:
                            break
                        if exhausted:  # done, unless a dead sender left rows behind
                            if not self.ledger.recover(self.issue)[1]:
                                break
                            exhausted = False
                        continue
                    done, _ = wait(inflight, timeout=1.0, return_when=FIRST_COMPLETED)
                    outcomes = [future.result() for future in done]
                    for future in done:
                        del inflight[future]
                    if time.monotonic() >= next_beat:
                        self.ledger.heartbeat(worker)
                        # Another sender of this issue may have died: its reserved rows are
                        # ours to send now, its rows in flight become unknown.
                        exhausted = exhausted and not self.ledger.recover(self.issue)[1]
                        next_beat = time.monotonic() + HEARTBEAT_EVERY
                    self.count(outcomes)
                    if on_progress:
                        on_progress(self.progress)
        finally:
            self.ledger.unregister_sender(worker)
        if self.error:
            raise self.error
        if self._interrupt.is_set() and self.stop_reason is None:
            return "interrupted; the rest stays queued for the next run"
        if self.stop_reason is None and budget <= 0 and limit is not None:
            return "stopped at the sending limit (daily quota); resume later"
        return self.stop_reason

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
            raw = self.template.personalise(self.recipient(claim))
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
                                                         self.issue))

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
