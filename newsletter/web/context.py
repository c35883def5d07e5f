"""The long-lived objects one web app shares between requests and threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store.limits import Buckets
from newsletter.transports import Transport, make_transport
from newsletter.web.archive import Archive
from newsletter.web.background import Background
from newsletter.web.leaving import Leaving
from newsletter.web.limits import PER_ADDRESS, PER_CLIENT, RateLimiter


@dataclass
class Context:
    """Settings, the store, the rate limits, the archive cache and the sign-up worker.

    What several ``serve`` processes must agree on lives in the database: the rate-limit
    buckets (store.limits), the list of sent issues (read on every archive request). What is
    kept here is either the same in every process (settings, rendered template skeletons,
    archive pages checked against their folder on every request) or the process's own work
    (the sign-up queue, see web.background)."""

    settings: Settings
    store: Store
    owns_store: bool = False
    buckets: Buckets = field(init=False)
    per_client: RateLimiter = field(init=False)
    per_address: RateLimiter = field(init=False)
    signups: Background = field(default_factory=Background)
    archive: Archive = field(init=False)
    leaving: Leaving = field(init=False)
    # Rendered page skeletons by template, language and which values are present.
    stamps: dict[tuple[str, str, tuple[tuple[str, bool], ...]], str] = field(
        default_factory=dict)
    _transport: Transport | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.buckets = Buckets(self.store)
        self.per_client = RateLimiter(self.buckets, "client", PER_CLIENT)
        self.per_address = RateLimiter(self.buckets, "address", PER_ADDRESS)
        self.archive = Archive(self.settings, self.store)
        self.leaving = Leaving(self.store)

    def transport(self) -> Transport:
        """The configured transport, made on first use (SES clients are costly) and shared."""
        with self._lock:
            if self._transport is None:
                self._transport = make_transport(self.settings)
            return self._transport

    def close(self) -> None:
        """Finish queued sign-ups, then release the transport and (if ours) the database."""
        self.signups.close()
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None
        if self.owns_store:
            self.store.close()
