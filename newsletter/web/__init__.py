"""The public web app: unsubscribe (RFC 8058 one-click), sign-up with double opt-in, the SES
webhook, the archive of sent issues and a health check. ``create_app(settings)`` builds it;
``newsletter serve`` runs it on waitress.

    /unsubscribe/<token>        GET page, POST one-click (and /undo)   newsletter.web.unsubscribe
    /subscribe, /confirm/<token>                                       newsletter.web.subscribe
    /archive/, /archive/<slug>/, /archive/<slug>/<image>               newsletter.web.archive_views
    /webhooks/ses, /healthz                                            newsletter.web.app
"""

from newsletter.web.app import close_app, create_app

__all__ = ["close_app", "create_app"]
