"""Joining the list: the ``/subscribe`` form and the ``/confirm/<token>`` double opt-in.

The form answers the same page, as fast, whatever the address's standing (no enumeration):
the work happens in the background (see newsletter.web.signup). Guards, in order: a per-client
rate limit (429), a honeypot field (bots fill it; they get the usual answer and nothing
happens), a signed, time-limited CSRF token bound to the client (else the form comes back,
filled in, to be sent again), the address's syntax, and a per-address limit on confirmation
emails (silent). Both limits are kept in the database, so they hold across every process
serving the app (newsletter.web.limits). ``GET /confirm/<token>`` shows a button; only its
POST activates.
"""

from __future__ import annotations

import datetime as dt
import json
import math

from flask import Blueprint, Response, request
from werkzeug.exceptions import ServiceUnavailable, TooManyRequests

from newsletter.addresses import parse_address
from newsletter.errors import AddressSuppressed, InvalidAddress, InvalidToken, InvalidValue
from newsletter.i18n import N_
from newsletter.store import Status, Subscriber
from newsletter.tokens import Purpose, read_token
from newsletter.values import NAME_LENGTH, clean_name
from newsletter.web import language
from newsletter.web.context import Context
from newsletter.web.pages import Refusal, context, form_value, mask_address, page
from newsletter.web.signing import form_token, form_token_valid, issued_at
from newsletter.web.signup import SignUp, handle_signup, logger

blueprint = Blueprint("subscribe", __name__)

HONEYPOT = "website"  # a field people never see; bots fill in anything called "website"
CONSENT = N_("I would like to receive %(name)s by email. I can unsubscribe at any time with "
             "the link in every issue.")
MAX_EMAIL = 320


@blueprint.get("/subscribe")
def form() -> Response:
    """The sign-up form; ``?email=`` and ``?name=`` pre-fill it (links from elsewhere)."""
    return _form(form_value(request.args, "email", MAX_EMAIL),
                 form_value(request.args, "name", NAME_LENGTH))


@blueprint.post("/subscribe")
def submit() -> Response:
    ctx = context()
    client = request.remote_addr or ""
    wait = ctx.per_client.take(client)
    if wait:
        raise TooManyRequests(retry_after=wait)
    email = form_value(request.form, "email", MAX_EMAIL)
    name = form_value(request.form, "name", NAME_LENGTH + 1)
    language.follow_form(form_value(request.form, "lang", 40))
    if form_value(request.form, HONEYPOT, 200):
        return _ignored("honeypot")
    if not form_token_valid(ctx.settings, form_value(request.form, "csrf", 200), client):
        return _form(email, name, problem="stale", status=400)
    try:
        address, name = parse_address(email), clean_name(name)
    except (InvalidAddress, InvalidValue) as error:
        field = "email" if isinstance(error, InvalidAddress) else "name"
        return _form(email, name, problem=field, status=400)
    if ctx.per_address.take(address.key):
        return _ignored("address rate limit")
    signup = SignUp(address.email, name, client or None, request.user_agent.string,
                    request.base_url, _wording(), dt.datetime.now(dt.UTC),
                    language.page_language())
    if not ctx.signups.submit(lambda: _handle(ctx, signup)):
        raise ServiceUnavailable()
    return page("check-inbox.html.j2")


def _handle(ctx: Context, signup: SignUp) -> None:
    """Runs on the worker thread, outside any request."""
    handle_signup(ctx.settings, ctx.store, ctx.transport(), signup)


def _form(email: str, name: str, *, problem: str | None = None, status: int = 200) -> Response:
    ctx = context()
    return page("subscribe.html.j2", status, email=email, name=name, problem=problem,
                csrf=form_token(ctx.settings, request.remote_addr or ""), honeypot=HONEYPOT,
                consent=_wording())


def _ignored(why: str) -> Response:
    """The usual answer to a sign-up that is dropped on purpose (bot, too many emails)."""
    logger.warning("sign-up ignored", extra={"fields": {
        "event": "sign-up ignored", "outcome": why, "remote": request.remote_addr}})
    return page("check-inbox.html.j2")


def _wording() -> str:
    """The consent sentence as the form shows it, in the page's language (kept as evidence)."""
    return language.gettext(CONSENT, name=context().settings.name)


# ---------------------------------------------------------------- confirmation


@blueprint.get("/confirm/<token>")
def confirm_page(token: str) -> Response:
    """The confirm button (a GET must not subscribe: mail scanners open every link)."""
    subscriber = confirmable(token)
    if subscriber.status is Status.ACTIVE:
        return page("confirmed.html.j2", already=True)
    return page("confirm.html.j2", masked=mask_address(subscriber.email))


@blueprint.post("/confirm/<token>")
def confirm(token: str) -> Response:
    """Activate a pending subscriber (or bring back one who left and asked again)."""
    subscriber = confirmable(token)
    if subscriber.status is Status.ACTIVE:
        return page("confirmed.html.j2", already=True)
    store, ip = context().store, request.remote_addr
    evidence = json.dumps({"page": request.base_url, "action": "pressed the confirm button",
                           "user_agent": request.user_agent.string[:300]})
    try:
        if subscriber.status is Status.PENDING:
            store.confirm(subscriber.id, ip=ip, evidence=evidence)
        else:
            store.set_status(subscriber.id, Status.ACTIVE, reason="rejoined (confirmation link)",
                             resubscribe=True)
            store.record_consent(subscriber.id, method="confirmation link", ip=ip,
                                 evidence=evidence)
    except AddressSuppressed:  # bounced or complained in the meantime
        raise Refusal("400.html.j2", reason="link") from None
    return page("confirmed.html.j2", already=False)


def confirmable(token: str) -> Subscriber:
    """The subscriber a confirmation link may activate; a 400 page for anything else."""
    ctx = context()
    try:
        claim = read_token(ctx.settings, token, Purpose.CONFIRM)
    except InvalidToken as error:
        raise Refusal("link-expired.html.j2" if error.expired else "400.html.j2",
                      reason="link") from None
    subscriber = ctx.store.get(claim.subscriber_id)
    if subscriber is None or subscriber.status in (Status.BOUNCED, Status.COMPLAINED):
        raise Refusal("400.html.j2", reason="link")
    language.follow_subscriber(subscriber.language)
    if subscriber.status is Status.UNSUBSCRIBED and not _asked_again(token, subscriber):
        raise Refusal("400.html.j2", reason="link")
    return subscriber


def _asked_again(token: str, subscriber: Subscriber) -> bool:
    """An unsubscribed person comes back only through a link sent after they left: an older
    confirmation email (from their first sign-up) must not undo their unsubscribe."""
    issued, left = issued_at(token), subscriber.unsubscribed_at
    return issued is not None and left is not None and issued >= math.floor(left.timestamp())
