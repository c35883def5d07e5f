"""The transport interface: hand one finished message to something that delivers it.

A transport knows nothing of issues, subscribers or the ledger; the send engine knows nothing of
SES or files. Failures are raised as the ``DeliveryError`` subclasses of ``newsletter.errors``,
which say what the engine should do next (retry, record, stop).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar

ISSUE_TAG = "issue"  # the message tag carrying the issue slug (SES event publishing: mail.tags)


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who a message goes to, and what it belongs to."""

    sender: str  # bare address, the SMTP MAIL FROM
    recipient: str  # bare address, the SMTP RCPT TO
    issue: str  # issue slug: an SES message tag, the outbox folder
    key: str  # stable name of this delivery (unique per issue and subscriber)


@dataclass(frozen=True, slots=True)
class Quota:
    """A provider's sending limits (SES: GetAccount / GetSendQuota)."""

    max_send_rate: float  # messages per second
    max_24_hour_send: float  # messages per rolling 24 hours (-1: unlimited)
    sent_last_24_hours: float


class Transport(ABC):
    """Sends raw RFC 5322 messages. Use as a context manager, or call ``close()``."""

    name: ClassVar[str]

    @abstractmethod
    def send(self, raw: bytes, envelope: Envelope) -> str:
        """Deliver one message; return the provider's message id. Raise DeliveryError."""

    def quota(self) -> Quota | None:
        """The provider's current limits, where it has any."""
        return None

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release connections and files."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
