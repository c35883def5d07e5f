"""A reader's own page, ``/preferences/<token>``: the language they read and the topics they
receive, or leaving the list.

The token (the ``{{preferences_url}}`` of every email) is the only credential, as for the
unsubscribe link: signed, bound to the subscriber, never expiring. GET only shows the page
(link scanners and previews follow links); POST applies the form at once. Only languages the
newsletter offers and topics ``[topics]`` configures are accepted: anything else is refused
with nothing changed. Topics are tags: saving sets and clears the configured ones and leaves
every other tag (those the list's keepers gave) as it is. The Unsubscribe button posts to the
unsubscribe page's own endpoint, so leaving from here is recorded, and can be undone, the same
way.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request, url_for
from werkzeug.datastructures import MultiDict

from newsletter.errors import InvalidToken, SubscriberNotFound
from newsletter.i18n import display_name
from newsletter.store import Subscriber
from newsletter.tokens import Purpose, make_token, read_token
from newsletter.web import language
from newsletter.web.pages import Refusal, context, mask_address, page

blueprint = Blueprint("preferences", __name__)

FORM_LIMIT = 8 * 1024  # bytes; the form holds a language and a few topic names


@blueprint.get("/preferences/")
def explain() -> Response:
    """Where a link without a token (the archive's) leads: how to reach one's own page."""
    return page("preferences-help.html.j2")


@blueprint.get("/preferences/<token>")
def show(token: str) -> Response:
    """The form, filled with what the subscriber has now. Changes nothing."""
    subscriber = _subscriber(token)
    if subscriber is None or subscriber.status.suppressed:
        return _left(subscriber)
    return page("preferences.html.j2", **_form_values(subscriber))


@blueprint.post("/preferences/<token>")
def save(token: str) -> Response:
    """Apply the form: the language, then the topics. A 400 page, nothing changed, for a
    language the newsletter does not offer or a topic it does not configure."""
    subscriber = _subscriber(token)
    if subscriber is None or subscriber.status.suppressed:
        return _left(subscriber)
    settings, store = context().settings, context().store
    form = _form()
    chosen = form.get("language", "")
    topics = set(form.getlist("topic"))
    if chosen not in settings.offered_languages or not topics <= set(settings.topics):
        raise Refusal("400.html.j2")
    # The language they get now is kept as recorded ("fr" reading the original, "pt-BR"
    # reading "pt"): only a different choice replaces it.
    changed = chosen != _reads(subscriber)
    try:
        if changed:
            subscriber = store.set_language(subscriber.id, chosen)
        subscriber = store.set_topics(subscriber.id, topics, settings.topics)
    except SubscriberNotFound:  # erased meanwhile
        return _left(None)
    if changed:  # the answer is in the language just chosen, whatever the cookie says
        language.follow_subscriber(chosen)
        language.follow_form(chosen)
    return page("preferences-saved.html.j2", masked=mask_address(subscriber.email),
                reads=display_name(chosen), topics=_topics(subscriber, checked_only=True),
                again=request.path)


def _subscriber(token: str) -> Subscriber | None:
    """The subscriber a preferences token names (None once erased), the page following their
    language; a 400 page, nothing changed, for a token that is not one of ours."""
    try:
        claim = read_token(context().settings, token, Purpose.PREFERENCES)
    except InvalidToken:
        raise Refusal("400.html.j2", reason="link") from None
    subscriber = context().store.get(claim.subscriber_id)
    if subscriber is not None:
        language.follow_subscriber(subscriber.language)
    return subscriber


def _left(subscriber: Subscriber | None) -> Response:
    """Someone who unsubscribed, bounced, complained or was erased: nothing to choose."""
    masked = mask_address(subscriber.email) if subscriber is not None else None
    return page("unsubscribed.html.j2", masked=masked, undo=None)


def _form_values(subscriber: Subscriber) -> dict[str, Any]:
    settings = context().settings
    reads = _reads(subscriber)
    return {
        "masked": mask_address(subscriber.email),
        "choices": [{"code": code, "name": display_name(code), "selected": code == reads}
                    for code in settings.offered_languages],
        "topics": _topics(subscriber),
        "unsubscribe": url_for("unsubscribe.unsubscribe", token=make_token(
            settings, Purpose.UNSUBSCRIBE, subscriber.id)),
    }


def _reads(subscriber: Subscriber) -> str:
    """The language of the versions the subscriber gets now (see ``Edition.version_for``)."""
    return context().settings.fallback_chain(subscriber.language)[0]


def _topics(subscriber: Subscriber, *, checked_only: bool = False) -> list[dict[str, Any]]:
    """The configured topics, named in the page's language, each with whether it is chosen."""
    page_language, tags = language.page_language(), set(subscriber.tags)
    return [{"tag": tag, "name": topic.in_language(page_language), "checked": tag in tags}
            for tag, topic in context().settings.topics.items()
            if tag in tags or not checked_only]


def _form() -> MultiDict[str, str]:
    """The posted form, refusing (413) a body larger than the form could ever be."""
    request.max_content_length = FORM_LIMIT
    try:
        return request.form
    except ValueError:
        raise Refusal("400.html.j2") from None
