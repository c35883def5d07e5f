"""What every view shares: the app's context object, page rendering, and refusals as pages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Response, current_app, render_template
from markupsafe import escape
from werkzeug.exceptions import BadRequest

from newsletter.web import language
from newsletter.web.context import Context


def context() -> Context:
    """The running app's context (store, limits, archive): see ``create_app``."""
    found: Context = current_app.extensions["newsletter"]
    return found


def page(template: str, status: int = 200, **values: Any) -> Response:
    """A page from ``web/`` of the templates, in the reader's language, as a response with
    ``status``."""
    html = render_template(f"web/{template}", **language.template_values(), **values)
    return language.finish(Response(html, status, mimetype="text/html"))


def stamped_page(template: str, **values: str | None) -> Response:
    """Like ``page``, for a hot page whose values only fill slots (the template tests them for
    truth, nothing else): rendered by Jinja once per template and set of present values, with
    markers in the slots, then filled by substitution. The one-click unsubscribe answer thus
    costs a few µs instead of ~150 µs of template rendering."""
    lang = language.page_language()
    key = (template, lang, tuple(sorted((name, bool(value)) for name, value in values.items())))
    stamps = context().stamps
    skeleton = stamps.get(key)
    if skeleton is None:
        marked = {name: _MARK.format(name) if value else value for name, value in values.items()}
        skeleton = stamps[key] = render_template(f"web/{template}", **language.template_values(),
                                                 **marked)
    for name, value in values.items():
        if value:
            skeleton = skeleton.replace(_MARK.format(name), escape(value))
    return language.finish(Response(skeleton, 200, mimetype="text/html"))


_MARK = "\x1a{}\x1a"  # a control character no template or value contains


class Refusal(BadRequest):
    """A 400 shown as one of our pages: a damaged link, an expired form, an old undo button."""

    def __init__(self, template: str = "400.html.j2", **values: Any):
        super().__init__()
        self.template, self.values = template, values


def mask_address(email: str) -> str:
    """``anna.kowalska@kwp-krakow.example.org`` → ``a•••a@k•••.org``: recognisable to its owner,
    useless to whoever a link was forwarded to."""
    local, _, domain = email.rpartition("@")
    head, _, tld = domain.rpartition(".")
    return f"{_mask(local)}@{_mask(head)}.{tld}" if head else f"{_mask(local)}@{_mask(domain)}"


def _mask(part: str) -> str:
    if len(part) <= 2:
        return part[:1] + "•••"
    return f"{part[0]}•••{part[-1]}"


_HEX = re.compile(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


def readable_on(colour: str) -> str:
    """White or near-black, whichever reads better on ``colour`` (WCAG contrast ratio)."""
    luminance = _luminance(colour)
    white = 1.05 / (luminance + 0.05)
    black = (luminance + 0.05) / (_luminance("#111111") + 0.05)
    return "#ffffff" if white >= black else "#111111"


def _luminance(colour: str) -> float:
    match = _HEX.fullmatch(colour)
    if match is None:
        return 0.0
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def form_value(form: Mapping[str, str], name: str, limit: int) -> str:
    """A trimmed form field, cut at ``limit`` characters (longer input is never legitimate)."""
    return str(form.get(name, ""))[:limit].strip()
