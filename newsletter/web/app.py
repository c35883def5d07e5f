"""The app factory: settings in, a Flask WSGI app out, with logs, headers and error pages."""

from __future__ import annotations

import importlib
from email.utils import parseaddr
from typing import Any

import jinja2
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from newsletter.config import Settings
from newsletter.i18n import N_, install, locale_dirs, long_date
from newsletter.store import Store
from newsletter.templating import TemplateLoader
from newsletter.tokens import CONFIRM_MAX_AGE, Purpose, make_token
from newsletter.web import archive_views, language, preferences, subscribe, unsubscribe
from newsletter.web.access import AccessLog, DefaultHeaders
from newsletter.web.context import Context
from newsletter.web.pages import context, page, readable_on

MAX_BODY = 1024 * 1024  # bytes; SNS messages are at most 256 KB, forms far less
ERROR_PAGES = {400: "400.html.j2", 404: "404.html.j2", 429: "429.html.j2"}
# The names error.html.j2 shows as its title (werkzeug's), marked for the catalogues.
ERROR_NAMES = (N_("Method Not Allowed"), N_("Request Entity Too Large"),
               N_("Unsupported Media Type"), N_("Internal Server Error"),
               N_("Service Unavailable"))


# Every template autoescaped (ours end in .html.j2, which Flask would not escape by default);
# an undefined name is an error, not an empty string.
JINJA_OPTIONS = {"autoescape": True, "undefined": jinja2.StrictUndefined, "trim_blocks": True,
                 "lstrip_blocks": True}


def create_app(settings: Settings, *, store: Store | None = None) -> Flask:
    """The web app for ``settings``; opens the configured database unless ``store`` is given.

    ConfigError at once, not at the first request, when no secret key is set."""
    make_token(settings, Purpose.UNSUBSCRIBE, 0)
    app = Flask(__name__, template_folder=None, static_folder=None)
    app.jinja_loader = TemplateLoader(settings.template_dirs)  # the folder's, then the theme's
    app.jinja_options = {**app.jinja_options, **JINJA_OPTIONS}
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    owns = store is None
    app.extensions["newsletter"] = Context(settings, store or Store.open(settings.database_url),
                                           owns_store=owns)
    for blueprint in (unsubscribe.blueprint, preferences.blueprint, subscribe.blueprint,
                      archive_views.blueprint):
        app.register_blueprint(blueprint)
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/webhooks/ses", view_func=ses_webhook, methods=["POST"])
    app.register_error_handler(HTTPException, error_page)
    _template_globals(app, settings)
    _middleware(app, settings)
    return app


def _template_globals(app: Flask, settings: Settings) -> None:
    app.context_processor(lambda: {"settings": settings, "brand": settings.brand,
                                   "footer": settings.footer.in_language(
                                       language.page_language()),
                                   "confirm_days": CONFIRM_MAX_AGE // 86400})
    app.jinja_env.filters.update(readable_on=readable_on,
                                 mail_address=lambda value: parseaddr(value)[1],
                                 long_date=lambda value: long_date(value, language.page_language()))
    install(app.jinja_env, locale_dirs(settings), settings.language, language.page_language)


def _middleware(app: Flask, settings: Settings) -> None:
    """Access log and security headers; the client address from ``trusted_proxies`` hops of
    X-Forwarded-For (and the scheme from X-Forwarded-Proto), never from anyone else."""
    wsgi: Any = AccessLog(DefaultHeaders(app.wsgi_app))
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        wsgi = ProxyFix(wsgi, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)
    app.wsgi_app = wsgi  # type: ignore[method-assign]


def close_app(app: Flask) -> None:
    """Finish queued sign-ups and release the transport and the database the app opened."""
    app.extensions["newsletter"].close()


def healthz() -> tuple[Response, int]:
    """For load balancers and uptime checks: 200 when the database answers, else 503."""
    if not context().store.ping():
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200


def ses_webhook() -> Response:
    """SES events through SNS: handled by ``feedback.events`` (503 where it is not built)."""
    try:
        events = importlib.import_module("newsletter.feedback.events")
    except ModuleNotFoundError as error:
        if error.name != "newsletter.feedback.events":
            raise
        return Response("SES events are not handled by this installation\n", 503,
                        mimetype="text/plain")
    ctx = context()
    status, message = events.handle_sns_request(request.get_data(), ctx.settings, ctx.store)
    return Response(f"{message}\n", status, mimetype="text/plain")


def error_page(error: HTTPException) -> Response:
    """Every refusal as a page in the newsletter's look, keeping headers like Retry-After."""
    code = error.code or 500
    template = getattr(error, "template", None) or ERROR_PAGES.get(code, "error.html.j2")
    values = {"reason": "request", **getattr(error, "values", {})}
    response = page(template, code, error=error, **values)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
