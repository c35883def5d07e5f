"""Sign-up with double opt-in, after the form has been accepted (runs in the background).

What an address gets depends on where it stands, but the person at the form never learns it:

    new            pending subscriber + consent evidence, confirmation email
    pending        new consent evidence, the confirmation email again
    active         nothing (already subscribed; no mail, so the form cannot pester anyone)
    unsubscribed   consent evidence, a confirmation email; only a click on a link issued *after*
                   the unsubscribe brings them back (see newsletter.web.confirm)
    bounced,
    complained,
    erased         nothing, logged: these come back only through an operator
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from newsletter.config import Settings
from newsletter.errors import AddressSuppressed, AlreadySubscribed
from newsletter.message import header_address
from newsletter.sending.engine import envelope_sender
from newsletter.store import Status, Store, Subscriber
from newsletter.subscribers.optin import ConfirmationEmail, render_confirmation
from newsletter.transports import Envelope, Transport

logger = logging.getLogger("newsletter.web.signup")
CONFIRMATIONS = "confirmations"  # the outbox folder / SES tag of confirmation emails


@dataclass(frozen=True)
class SignUp:
    """An accepted sign-up form, with the evidence of consent it carries."""

    email: str
    name: str
    ip: str | None
    user_agent: str
    page: str
    wording: str
    at: dt.datetime
    language: str | None = None  # of the form, and so of the confirmation email

    def evidence(self) -> str:
        shown = {"page": self.page, "wording": self.wording,
                 "user_agent": self.user_agent[:300]}
        if self.language:
            shown["language"] = self.language
        return json.dumps(shown, ensure_ascii=False)


def handle_signup(settings: Settings, store: Store, transport: Transport, signup: SignUp) -> str:
    """Act on one sign-up; return what was done (for the log and the tests)."""
    subscriber = store.get_by_email(signup.email)
    if subscriber is None:
        if store.erasure_of(signup.email) is not None:
            return _ignored("erased", signup)
        try:
            subscriber = store.add(signup.email, name=signup.name, status=Status.PENDING,
                                   source="web", language=signup.language)
        except (AlreadySubscribed, AddressSuppressed):  # another request won the race
            return _ignored("raced", signup)
        outcome = "new"
    elif subscriber.status in (Status.PENDING, Status.UNSUBSCRIBED):
        outcome = "rejoin" if subscriber.status is Status.UNSUBSCRIBED else "pending"
        if signup.language:  # the language of the form they filled in last
            store.set_language(subscriber.id, signup.language)
    else:
        return _ignored(str(subscriber.status), signup)
    store.record_consent(subscriber.id, method="web form", ip=signup.ip,
                         evidence=signup.evidence(), at=signup.at)
    send_confirmation(settings, transport, subscriber, language=signup.language)
    logger.info("sign-up", extra={"fields": {"event": "sign-up", "outcome": outcome,
                                             "subscriber": subscriber.id}})
    return outcome


def _ignored(why: str, signup: SignUp) -> str:
    logger.warning("sign-up ignored", extra={"fields": {
        "event": "sign-up ignored", "outcome": why, "remote": signup.ip}})
    return why


def send_confirmation(settings: Settings, transport: Transport, subscriber: Subscriber, *,
                      language: str | None = None) -> str:
    """Render and send the double opt-in email in ``language`` (default the newsletter's);
    returns the transport's message id."""
    confirmation = render_confirmation(settings, subscriber, language=language)
    raw = confirmation_message(settings, subscriber.email, confirmation)
    envelope = Envelope(envelope_sender(settings), header_address(subscriber.email),
                        CONFIRMATIONS, f"{subscriber.id}-{secrets.token_hex(4)}")
    return transport.send(raw, envelope)


def confirmation_message(settings: Settings, email: str, confirmation: ConfirmationEmail) -> bytes:
    """The confirmation email as RFC 5322 bytes (text and HTML parts). One per sign-up, so the
    standard library's EmailMessage is fast enough here."""
    message = EmailMessage(policy=SMTP)
    message["From"] = settings.sender
    message["To"] = header_address(email)
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Subject"] = confirmation.subject
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain=settings.domain)
    message.set_content(confirmation.text)
    message.add_alternative(confirmation.html, subtype="html")
    return message.as_bytes()
