"""The send engine: plan a ledger row per recipient, then claim, personalise, send and record.

Crash safety rests on one rule: a delivery row is marked ``sending`` (committed) before its
message goes to the transport, and marked ``sent``/``failed``/``unknown`` after; at most
``concurrency`` rows are ``sending`` at any instant (see ``dispatch``). After a crash those
rows, and only those, are ambiguous: ``recover`` marks them ``unknown`` and puts the dead
sender's ``claimed`` rows back in the queue. ``unknown`` rows are never resent unless asked
(``retry_unknown``); neither is a message the transport sent without getting an answer
(``UnknownOutcome``). Everything else is resumed exactly: ``queued`` rows were never handed
over, ``sent`` rows are never sent again.

The engine sees the database only through ``Ledger`` (and the shared rate through ``Rates``)
and the provider only through ``Transport``: it knows no SQL dialect and no SES.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from newsletter.authoring.content import FIELD_RE, PLACEHOLDERS
from newsletter.authoring.render import RenderedIssue
from newsletter.config import Settings
from newsletter.errors import InvalidAddress
from newsletter.message import Edition, Recipient, build_template
from newsletter.sending.dispatch import Dispatcher, Progress, SendOptions, envelope_sender
from newsletter.sending.pacing import RateLimiter
from newsletter.store import Status, Store
from newsletter.store.ledger import Ledger
from newsletter.store.rates import Rates
from newsletter.tokens import preferences_url, unsubscribe_url
from newsletter.transports.base import Envelope, Transport


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


def content_hash(issue: RenderedIssue | Edition) -> str:
    """Identifies what a send was planned from: resuming with edited content (or an edited,
    added or removed translation) is refused. An issue without translations hashes as it
    always has, so that sends planned before translations existed still resume."""
    digest = hashlib.sha256()
    edition = Edition.of(issue)
    for number, (language, rendered) in enumerate(edition.versions.items()):
        if number:
            digest.update(language.encode() + b"\0")
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
            preferences_url=f"{settings.base_url}/preferences/proof", attributes=markers))
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
                    unsubscribe_url=unsubscribe_url(settings, person.id, rendered.slug),
                    preferences_url=preferences_url(settings, person.id))))
                count += 1
            except InvalidAddress as error:
                problems.append(str(error))
    return count, size, problems


def plan_send(issue: RenderedIssue | Edition, settings: Settings, ledger: Ledger,
              audience: Collection[str] = ()) -> tuple[int, bool]:
    """``ledger.plan`` for an issue: one row per recipient, each with the version they get
    (their language, its fallbacks, the original). Returns (rows, new)."""
    edition = Edition.of(issue)
    return ledger.plan(edition.slug, edition.original.subject, content_hash(edition), audience,
                       functools.partial(edition.version_for, settings))


def send_issue(issue: RenderedIssue | Edition, settings: Settings, ledger: Ledger,
               transport: Transport, options: SendOptions, *,
               on_progress: Callable[[Progress], None] | None = None,
               stop: threading.Event | None = None) -> SendReport:
    """Send (or resume sending) an issue that ``ledger.plan`` has planned: each row gets the
    version of the edition its plan chose.

    Setting ``stop`` (e.g. on SIGTERM) ends the run cleanly: nothing new is claimed, the
    messages in flight finish and are recorded, the rest stays queued."""
    edition = Edition.of(issue)
    rendered = edition.original
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
        templates = {language: build_template(version, settings)
                     for language, version in edition.versions.items()}
        dispatcher = Dispatcher(templates, rendered.slug, settings, ledger, transport, limiter,
                                options, progress, stop)
        stopped = dispatcher.run(limit, on_progress)
        if dispatcher.stop_reason:  # not an interrupt or the quota: someone must look first
            ledger.pause(rendered.slug, dispatcher.stop_reason)
    elif progress.total == 0 and stopped is None and limit == 0:
        stopped = "the daily sending quota is used up"
    progress.finished = time.monotonic()
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
