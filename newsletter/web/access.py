"""Structured access logs: one JSON line per request on the ``newsletter.web`` logger.

Tokens in paths are capabilities (whoever holds an unsubscribe link can use it), so they are
masked before anything is logged; query strings, which may carry an address, are left out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wsgi import ClosingIterator

logger = logging.getLogger("newsletter.web")
_TOKEN_PATH = re.compile(r"^/(unsubscribe|confirm)/[^/]+")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def mask_path(path: str) -> str:
    """``/unsubscribe/<the token>/undo`` → ``/unsubscribe/***/undo``."""
    return _TOKEN_PATH.sub(r"/\1/***", path)


class AccessLog:
    """WSGI middleware that logs each request once its response has been sent."""

    def __init__(self, app: WSGIApp):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not logger.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started = time.perf_counter()
        status: list[str] = []

        def recording(code: str, headers: list[Any], exc_info: Any = None) -> Any:
            status[:] = [code]
            return start_response(code, headers, exc_info)

        try:
            body = self.app(environ, recording)
        except BaseException:
            self.log(environ, "500", started)
            raise
        return ClosingIterator(body, lambda: self.log(environ, status[0] if status else "500",
                                                      started))

    @staticmethod
    def log(environ: dict[str, Any], status: str, started: float) -> None:
        logger.info("request", extra={"fields": {
            "method": environ.get("REQUEST_METHOD", ""),
            "path": mask_path(environ.get("PATH_INFO", "")),
            "status": int(status.split(" ", 1)[0]),
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "remote": environ.get("REMOTE_ADDR", ""),
        }})


class JsonLines(logging.Formatter):
    """Every record as one JSON object: time, level, logger, then its ``fields`` or message."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
