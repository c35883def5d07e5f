"""Leaving the list: ``/unsubscribe/<token>`` (RFC 8058 one-click and the page), and undo.

GET only shows a page: link scanners and mail previews follow links. Any POST with a valid
token unsubscribes at once, before the answer is sent, with a 200 and no redirect: that is the
mailbox provider's one-click request (``List-Unsubscribe=One-Click``, form-encoded or
multipart, no cookies) and the page's button alike. The token is the only credential: it is
signed, names the subscriber and the issue, and cannot be forged or guessed.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, request

from newsletter.errors import InvalidToken
from newsletter.store import Standing, Status, Subscriber
from newsletter.tokens import Purpose, Token, read_token
from newsletter.web import language
from newsletter.web.pages import Refusal, context, mask_address, page, stamped_page
from newsletter.web.signing import UNDO_MAX_AGE, sign, unsign

blueprint = Blueprint("unsubscribe", __name__)

BY_ONE_CLICK, BY_PAGE, BY_UNDO = "one-click", "unsubscribe page", "undo on the unsubscribe page"
UNDOABLE = frozenset({BY_ONE_CLICK, BY_PAGE})  # what the undo button may reverse
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@blueprint.get("/unsubscribe/")
def explain() -> Response:
    """Where the archive's unsubscribe link leads: how to leave, since it carries no token."""
    return page("unsubscribe-help.html.j2")


@blueprint.get("/unsubscribe/<token>")
def confirm_page(token: str) -> Response:
    """Who is about to leave, and the button. Changes nothing."""
    claim = verified(token)
    subscriber = context().store.get(claim.subscriber_id)
    if subscriber is not None:
        language.follow_subscriber(subscriber.language)
    if subscriber is None or subscriber.status.suppressed:
        return page("unsubscribed.html.j2", masked=_masked(subscriber), undo=None)
    return page("unsubscribe.html.j2", masked=mask_address(subscriber.email))


@blueprint.post("/unsubscribe/<token>")
def unsubscribe(token: str) -> Response:
    """RFC 8058 one-click, or the page's button: unsubscribe now, answer 200, offer undo."""
    claim = verified(token)
    reason = BY_PAGE if _from_our_page() else BY_ONE_CLICK
    subscriber = context().leaving.unsubscribe(claim.subscriber_id, reason=reason,
                                               issue=claim.issue)
    undo = undo_token(subscriber) if subscriber is not None and undoable(subscriber) else None
    return stamped_page("unsubscribed.html.j2", masked=_masked(subscriber), undo=undo,
                        undo_url=f"{request.path}/undo")


@blueprint.post("/unsubscribe/<token>/undo")
def undo(token: str) -> Response:
    """Reverse the unsubscribe this page made, if the undo button is recent and still applies."""
    claim = verified(token)
    store = context().store
    subscriber = store.get(claim.subscriber_id)
    value = unsign(context().settings, "undo", _form_field("undo"), UNDO_MAX_AGE)
    if subscriber is None or value is None:
        raise Refusal("400.html.j2", reason="undo")
    if subscriber.status is Status.ACTIVE and value.partition(":")[0] == str(subscriber.id):
        return page("resubscribed.html.j2")  # pressed twice
    if value != _undo_value(subscriber) or not undoable(subscriber):
        raise Refusal("400.html.j2", reason="undo")
    store.set_status(subscriber.id, Status.ACTIVE, reason=BY_UNDO, issue=claim.issue,
                     resubscribe=True)
    return page("resubscribed.html.j2")


def verified(token: str) -> Token:
    """The unsubscribe token's claims; a 400 page (nothing changed) if it is not one of ours."""
    try:
        return read_token(context().settings, token, Purpose.UNSUBSCRIBE)
    except InvalidToken:
        raise Refusal("400.html.j2", reason="link") from None


def undoable(subscriber: Standing | Subscriber) -> bool:
    """Only an unsubscribe made through our links may be undone from the page."""
    return subscriber.status is Status.UNSUBSCRIBED and subscriber.status_reason in UNDOABLE


def undo_token(subscriber: Standing | Subscriber) -> str:
    return sign(context().settings, "undo", _undo_value(subscriber))


def _undo_value(subscriber: Standing | Subscriber) -> str:
    """Names the subscriber and the very unsubscribe (its time, to the microsecond)."""
    when = subscriber.unsubscribed_at
    micros = (when - _EPOCH) // dt.timedelta(microseconds=1) if when else 0
    return f"{subscriber.id}:{micros}"


def _masked(subscriber: Standing | Subscriber | None) -> str | None:
    return mask_address(subscriber.email) if subscriber is not None else None


def _from_our_page() -> bool:
    """True for our page's button (``via=page``, form-encoded); mailbox providers send only
    ``List-Unsubscribe=One-Click``. Reads the raw body: cheaper than parsing a form."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return False
    return b"via=page" in request.get_data(cache=True).split(b"&")


def _form_field(name: str) -> str:
    """A form field, or "" when the body is not a form we can read."""
    try:
        return str(request.form.get(name, ""))[:2000]
    except ValueError:
        return ""
