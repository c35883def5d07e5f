"""Double opt-in building blocks: the confirmation email a pending subscriber receives.

The web app (``/subscribe``) adds a pending subscriber with ``Store.add``, records consent, sends
this email, and ``GET /confirm/<token>`` calls ``Store.confirm``. Rendering is pure: no database,
no network. Templates: ``templates/emails/confirm.txt.j2`` (which also sets the subject) and
``confirm.html.j2``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import jinja2

from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.i18n import SOURCE_LANGUAGE, install, locale_dirs
from newsletter.templating import TemplateLoader
from newsletter.tokens import CONFIRM_MAX_AGE, confirm_url

TEXT_TEMPLATE, HTML_TEMPLATE = "emails/confirm.txt.j2", "emails/confirm.html.j2"


@dataclass(frozen=True)
class ConfirmationEmail:
    subject: str
    text: str
    html: str


class Person(Protocol):
    """A Subscriber or a store Recipient."""

    @property
    def id(self) -> int: ...

    @property
    def first_name(self) -> str: ...


def render_confirmation(settings: Settings, subscriber: Person, *, url: str | None = None,
                        language: str | None = None) -> ConfirmationEmail:
    """The confirmation email for a pending subscriber, in ``language`` (that of the page they
    signed up on; default the newsletter's); ``url`` defaults to a fresh signed link
    (ConfigError without NEWSLETTER_SECRET_KEY)."""
    language = language or settings.language
    context = {
        "settings": settings, "brand": settings.brand,
        "footer": settings.footer.in_language(language), "language": language,
        "first_name": subscriber.first_name or settings.first_name_fallback,
        "confirm_url": url or confirm_url(settings, subscriber.id),
        "expires_days": CONFIRM_MAX_AGE // 86400,
    }
    env = _environment(settings.template_dirs, locale_dirs(settings))
    try:
        text = env.get_template(TEXT_TEMPLATE).make_module(context)
        subject = str(getattr(text, "subject", "")).strip()
        html = env.get_template(HTML_TEMPLATE).render(context, subject=subject)
    except jinja2.TemplateNotFound as error:
        raise RenderError(f"{error.name}: template missing from {settings.templates_dir} "
                          "and the default theme") from None
    except jinja2.TemplateError as error:
        raise RenderError(f"confirmation email template: {error}") from None
    if not subject:
        raise RenderError(f"{settings.templates_dir / TEXT_TEMPLATE}: set a subject with "
                          "{% set subject = \"...\" %}")
    return ConfirmationEmail(subject, str(text).strip() + "\n", html)


@functools.lru_cache(maxsize=4)
def _environment(template_dirs: tuple[Path, ...],
                 locales: tuple[Path, ...]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=TemplateLoader(template_dirs),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    install(env, locales, SOURCE_LANGUAGE)  # each render names its language
    return env
