"""The long-lived objects one web app shares between requests and threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.store import Store
from newsletter.transports import Transport, make_transport
from newsletter.web.archive import Archive
from newsletter.web.background import Background
from newsletter.web.leaving import Leaving
from newsletter.web.limits import PER_ADDRESS, PER_CLIENT, RateLimiter


@dataclass
class Context:
    """Settings, the store, the rate limits, the archive cache and the sign-up worker."""

    settings: Settings
    store: Store
    owns_store: bool = False
    per_client: RateLimiter = field(default_factory=lambda: RateLimiter(PER_CLIENT))
    per_address: RateLimiter = field(default_factory=lambda: RateLimiter(PER_ADDRESS))
    signups: Background = field(default_factory=Background)
    archive: Archive = field(init=False)
    leaving: Leaving = field(init=False)
    stamps: dict[tuple[str, tuple[tuple[str, bool], ...]], str] = field(default_factory=dict)
    _transport: Transport | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
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
