"""``newsletter serve``: the public web app (unsubscribe, sign-up, archive, SES webhook)."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

import click

from newsletter.cli import Env, pass_env

if TYPE_CHECKING:
    from newsletter.config import Settings

THREADS = 16  # waitress worker threads: requests handled at once (each may wait on the database)
SERVE_HELP = ("Put it behind a reverse proxy that terminates TLS at base_url, and set "
              "trusted_proxies to the number of proxies in front so the client address "
              "(rate limits, consent records, logs) is read from X-Forwarded-For.")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one).")
@click.option("--threads", default=THREADS, show_default=True, type=click.IntRange(1, 256),
              help="Requests handled at once.")
@pass_env
def serve(env: Env, host: str, port: int, threads: int) -> None:
    """Serve the web app: one-click unsubscribe, sign-up, the archive, the SES webhook.

    Logs one JSON line per request on stderr."""
    import waitress

    from newsletter.web import close_app, create_app

    settings = env.settings
    app = create_app(settings)
    _log_to_stderr()
    # The app reads X-Forwarded-* itself (ProxyFix, settings.trusted_proxies); without trusted
    # proxies waitress drops those headers before the app sees them.
    server = waitress.create_server(app, host=host, port=port, threads=threads, ident=None,
                                    clear_untrusted_proxy_headers=not settings.trusted_proxies)
    _announce(settings, f"http://{_url_host(host)}:{server.effective_port}", host, threads)
    # SIGTERM (systemd, docker stop) ends the loop like Ctrl+C, so queued sign-ups are finished.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        close_app(app)


def _announce(settings: Settings, bound: str, host: str, threads: int) -> None:
    click.echo(f"serving {settings.name} on {bound}/ (public address {settings.base_url}/)")
    click.echo(f"{threads} threads, trusted proxies: {settings.trusted_proxies}; Ctrl+C stops")
    if settings.trusted_proxies == 0 and host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(f"note: {SERVE_HELP}", err=True)


def _log_to_stderr() -> None:
    import logging

    from newsletter.web.access import BatchedLines, JsonLines

    handler = BatchedLines(sys.stderr)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("newsletter")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # waitress warns "Task queue depth is N" whenever requests wait for a thread: under a burst
    # of one-click POSTs that is thousands of lines saying the server is busy, which it knows.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


COMMANDS = (serve,)
