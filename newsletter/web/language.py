"""Which language a page is in, and the headers and cookie that go with it.

In order: the reader's explicit choice (``?lang=el`` on any page, remembered in the ``lang``
cookie for the pages after it), the language of the subscriber a link names (see
``follow_subscriber``), the browser's Accept-Language, and the newsletter's ``language``. Only
languages with a catalogue are chosen (``newsletter.i18n.page_languages``); anything else falls
through to the next rule.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, has_request_context, request

from newsletter.config import Settings
from newsletter.i18n import display_name, match, negotiate, page_languages, translations

COOKIE = "lang"
PARAMETER = "lang"
COOKIE_SECONDS = 365 * 86400


def follow_subscriber(language: str | None) -> None:
    """The hook for pages reached through a subscriber's own link (unsubscribe, confirm): call
    it with the subscriber's language before rendering, and the page is in that language
    unless the reader chose another one (``?lang=``, the cookie). ``None``: not known."""
    g.subscriber_language = language
    g.pop("page_language", None)


def follow_form(language: str | None) -> None:
    """A form's record of the language it was shown in (its hidden ``lang`` field): the answer
    and what the form sets off (the confirmation email) stay in that language, cookie or not."""
    found = match(language, page_languages(_settings()))
    if found is not None:
        g.page_language = found


def page_language() -> str:
    """This request's page language (worked out once per request)."""
    if not has_request_context():
        return _settings().language
    found: str | None = g.get("page_language")
    if found is None:
        found = g.page_language = choose(g.get("subscriber_language"))
    return found


def choose(subscriber_language: str | None = None) -> str:
    """The language for the current request, by the rules in this module's docstring."""
    settings = _settings()
    offered = page_languages(settings)
    return (chosen_language(offered)
            or match(subscriber_language, offered)
            or negotiate(request.headers.get("Accept-Language"), offered)
            or settings.language)


def chosen_language(offered: tuple[str, ...]) -> str | None:
    """The reader's explicit choice: ``?lang=`` on this request, else the cookie."""
    return (match(request.args.get(PARAMETER), offered)
            or match(request.cookies.get(COOKIE), offered))


def gettext(message: str, **values: Any) -> str:
    """``message`` in the page's language, with ``%(name)s`` values filled in."""
    settings = _settings()
    translated = translations(page_language(), settings).gettext(message)
    return translated % values if values else translated


def switch() -> list[dict[str, str | bool]]:
    """The language switch of every page: links that keep the page and change the language
    (query-only links, so the page's own path, which may carry a token, is never written)."""
    current = page_language()
    return [{"code": code, "name": display_name(code), "href": f"?{PARAMETER}={code}",
             "current": code == current} for code in page_languages(_settings())]


def template_values() -> dict[str, Any]:
    """What every page template gets: its language and the switch."""
    return {"language": page_language(), "languages": switch()}


def finish(response: Response) -> Response:
    """A page's language headers; the cookie when the reader has just chosen with ``?lang=``."""
    response.headers["Content-Language"] = page_language()
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    chosen = match(request.args.get(PARAMETER), page_languages(_settings()))
    if chosen is not None and request.cookies.get(COOKIE) != chosen:
        response.set_cookie(COOKIE, chosen, max_age=COOKIE_SECONDS, path="/",
                            secure=request.is_secure, httponly=True, samesite="Lax")
    return response


def _settings() -> Settings:
    found: Settings = current_app.extensions["newsletter"].settings
    return found
