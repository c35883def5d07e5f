"""The exceptions the library raises, as one tree.

    ConfigError(Exception)              newsletter.toml or NEWSLETTER_* is wrong: fix and rerun.
                                        Kept outside NewsletterError on purpose, so that code
                                        handling per-issue or per-recipient failures can never
                                        swallow a configuration mistake.
    NewsletterError(Exception)          anything else the user can act on
    ├── ContentError(ValueError)        an issue file is invalid (carries every Problem found)
    ├── IssueNotFound(LookupError)      no issue folder matches the name given
    ├── InvalidAddress(ValueError)      an address is invalid, or cannot go in a message header
    ├── RenderError                     the templates or MJML could not produce an email
    ├── InvalidValue(ValueError)        a subscriber's name, attribute or tag is malformed
    ├── SubscriberNotFound(LookupError) no subscriber has that address or id
    ├── AlreadySubscribed(ValueError)   the address is already on the list (pending or active)
    ├── AddressSuppressed(ValueError)   the address unsubscribed, bounced, complained or was erased:
    │                                   it is never re-added without an explicit resubscribe
    ├── ImportFileError(ValueError)     a CSV file cannot be imported at all (encoding, header);
    │                                   nothing was written. Bad rows are reported, not raised.
    ├── InvalidToken(ValueError)        a confirm/unsubscribe link is damaged, forged, for another
    │                                   purpose or (``expired``) too old
    ├── MalformedEvent(ValueError)      an SNS message or SES event cannot be read: answered 400,
    │                                   left on an SQS queue for its redrive policy
    ├── UntrustedMessage(ValueError)    an SNS message failed verification (signature, topic,
    │                                   certificate host, age): answered 403, nothing applied
    ├── EventSourceUnavailable          SNS's signing certificate or the SQS queue cannot be
    │                                   reached now: answered 500, so SNS delivers it again
    ├── DatabaseError                   the database is unreachable or needs `newsletter db upgrade`
    └── DeliveryError                   a transport could not take a message; the subclass says
        │                               what the send engine does next
        ├── Throttled                   the provider asked us to slow down: wait, send it again
        ├── TransientError              nothing reached the provider (connection refused, connect
        │                               timeout) or it answered 5xx: retry with backoff, then fail
        ├── UnknownOutcome              the request went out but no answer came back (read
        │                               timeout, connection dropped): it may have been accepted,
        │                               so it is recorded as ``unknown`` and never resent silently
        ├── PermanentError              this message or recipient is refused: record, move on
        └── FatalTransportError         the whole send must stop (account suspended or paused,
                                        daily quota reached, credentials refused)

Each error's ``str()`` is the message to show the user; the CLI prints it without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a file, located so an editor can jump to it."""

    path: Path
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class ConfigError(Exception):
    """The configuration is missing or invalid; the message names the key to fix."""


class NewsletterError(Exception):
    """Base class of every error the user can act on (other than configuration)."""


class ContentError(NewsletterError, ValueError):
    """An issue file has problems; ``problems`` lists all of them, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class IssueNotFound(NewsletterError, LookupError):
    """No issue folder matches the given path or slug."""


class RenderError(NewsletterError):
    """Templates or MJML failed to produce an email (a template or layout bug, not content)."""


class InvalidAddress(NewsletterError, ValueError):
    """An email address is not valid; ``address`` is the input, the message says why."""

    def __init__(self, address: str, reason: str):
        self.address, self.reason = address, reason
        super().__init__(f"invalid email address {address!r}: {reason}")


class SubscriberNotFound(NewsletterError, LookupError):
    """No subscriber matches the address or id given."""


class AlreadySubscribed(NewsletterError, ValueError):
    """The address is already on the list; nothing was changed."""


class AddressSuppressed(NewsletterError, ValueError):
    """The address left the list (or was erased) and is only re-added when explicitly asked to."""


class ImportFileError(NewsletterError, ValueError):
    """The file as a whole cannot be imported (wrong encoding, no email column, ...)."""


class InvalidToken(NewsletterError, ValueError):
    """A signed link is not valid; ``expired`` tells a too-old link from a damaged one."""

    def __init__(self, message: str, *, expired: bool = False):
        self.expired = expired
        super().__init__(message)


class MalformedEvent(NewsletterError, ValueError):
    """An SNS message or SES event is not what AWS sends; the message says what is wrong."""


class UntrustedMessage(NewsletterError, ValueError):
    """An SNS message failed verification; ``reason`` is a short word for logs and answers."""

    def __init__(self, message: str, *, reason: str = "signature"):
        self.reason = reason
        super().__init__(message)


class EventSourceUnavailable(NewsletterError):
    """A remote part of the event path (certificate host, SQS) failed: worth trying again."""


class DatabaseError(NewsletterError):
    """The database cannot be reached, or its schema is not the one this version expects."""


class InvalidValue(NewsletterError, ValueError):
    """A name, attribute or tag is malformed or too long; the message names it."""


class DeliveryError(NewsletterError):
    """A transport could not take a message; ``detail`` keeps the provider's own words."""

    def __init__(self, message: str, *, detail: str = ""):
        self.detail = detail
        super().__init__(f"{message}: {detail}" if detail else message)


class Throttled(DeliveryError):
    """The provider refused the request as over its rate; the same message is to be retried."""


class TransientError(DeliveryError):
    """A failure that may pass and left nothing at the provider (connection refused, HTTP 5xx)."""


class UnknownOutcome(DeliveryError):
    """The request may have reached the provider, but no answer came (a read timeout, a
    connection dropped after the request was written): resending could deliver it twice."""


class PermanentError(DeliveryError):
    """The provider refuses this message or recipient for good (e.g. SES MessageRejected)."""


class FatalTransportError(DeliveryError):
    """Every further message would fail the same way: the send stops and reports why."""
