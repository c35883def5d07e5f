"""The reader's language: gettext catalogues for the words of pages and emails, and choosing one.

Messages are written in English in the templates (``{% trans %}`` and ``_()``) and in Python
(``gettext``); their translations are compiled gettext catalogues, ``newsletter.mo``, in
``locale/<lang>/LC_MESSAGES/``: a newsletter folder's own ``locale/`` first, then the
package's. A folder can thus add a language, or reword one message, with a catalogue and no
code. English is the source language: it needs no catalogue, and any message a catalogue lacks
falls back to it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from babel import Locale, UnknownLocaleError
from babel.core import parse_locale
from babel.support import NullTranslations, Translations

if TYPE_CHECKING:
    import datetime as dt

    from newsletter.config import Settings

DOMAIN = "newsletter"
SOURCE_LANGUAGE = "en"  # the language the messages are written in
PACKAGE_LOCALE = Path(__file__).resolve().parent / "locale"


def N_(message: str) -> str:  # the name gettext extractors look for
    """Marks a message for extraction where it is defined; translated where it is shown."""
    return message


def locale_dirs(settings: Settings | None = None) -> tuple[Path, ...]:
    """Where catalogues are looked up, first match wins: the folder's, then the package's."""
    if settings is None:
        return (PACKAGE_LOCALE,)
    return (settings.root / "locale", PACKAGE_LOCALE)


def translations(language: str, settings: Settings | None = None) -> NullTranslations:
    """The translations for a BCP 47 tag: ``pt-BR`` uses a ``pt_BR`` catalogue, else ``pt``;
    a language without a catalogue gets the English messages untranslated."""
    return load_translations(language, locale_dirs(settings))


@functools.lru_cache(maxsize=128)
def load_translations(language: str, dirs: tuple[Path, ...]) -> NullTranslations:
    """Every catalogue for ``language`` in ``dirs``, chained: a message missing from the most
    specific (a folder's ``pt_BR``) is looked up in the next (the package's ``pt``), and finally
    left in English. Loaded once per process, like the settings."""
    found: Translations | None = None
    for name in _catalogue_names(language):
        for folder in dirs:
            path = folder / name / "LC_MESSAGES" / f"{DOMAIN}.mo"
            if not path.is_file():
                continue
            with path.open("rb") as file:
                loaded = Translations(file, domain=DOMAIN)
            if found is None:
                found = loaded
            else:
                found.add_fallback(loaded)
    return found if found is not None else NullTranslations()


def _catalogue_names(language: str) -> list[str]:
    """``pt-BR`` → ``["pt_BR", "pt"]``; ``zh-Hant-TW`` → ``["zh_Hant_TW", "zh_Hant", "zh"]``."""
    try:
        parts = parse_locale(language.replace("_", "-"), sep="-")
    except ValueError:
        return []
    lang, territory, script = parts[0], parts[1], parts[2]
    names = []
    if script and territory:
        names.append(f"{lang}_{script}_{territory}")
    if script:
        names.append(f"{lang}_{script}")
    if territory:
        names.append(f"{lang}_{territory}")
    return [*names, lang]


def page_languages(settings: Settings) -> tuple[str, ...]:
    """The languages pages are offered in, as BCP 47 tags: the newsletter's own language
    first, English, then every language with a catalogue in the package or the folder."""
    return _languages(settings.language, locale_dirs(settings))


@functools.lru_cache(maxsize=16)
def _languages(default: str, dirs: tuple[Path, ...]) -> tuple[str, ...]:
    found = {catalogue.parents[1].name.replace("_", "-") for directory in dirs
             for catalogue in directory.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")}
    return tuple(dict.fromkeys([default, SOURCE_LANGUAGE, *sorted(found)]))


@functools.lru_cache(maxsize=512)
def negotiate(header: str | None, offered: tuple[str, ...], default: str | None = None
              ) -> str | None:
    """The best of ``offered`` for an Accept-Language header (quality values, ``*``, and a
    base language for a regional one: ``pt-BR`` takes ``pt``); ``default`` if none fits."""
    if not header:
        return default
    # Imported here: rendering an issue (``newsletter check``) needs no web library.
    from werkzeug.datastructures import LanguageAccept
    from werkzeug.http import parse_accept_header

    accepted = parse_accept_header(header, LanguageAccept)
    return accepted.best_match(offered) or default


def match(language: str | None, offered: Iterable[str]) -> str | None:
    """``language`` as one of ``offered`` (``EL`` → ``el``, ``pt-BR`` → ``pt``), or None."""
    if not language:
        return None
    return negotiate(language, tuple(offered))


@functools.lru_cache(maxsize=64)
def display_name(language: str) -> str:
    """A language's name in that language, as a language switch shows it: "Ελληνικά"."""
    try:
        name = Locale.parse(language, sep="-").display_name or language
    except (ValueError, UnknownLocaleError):
        return language
    return name[:1].upper() + name[1:]


def long_date(value: dt.date, language: str) -> str:
    """A date written out in ``language`` (15 April 2025, 15. April 2025, 15 Απριλίου 2025).
    English is that of Europe (day before month), as this tool's English wording is."""
    from babel.dates import format_date

    locale = "en_150" if language.split("-")[0] == SOURCE_LANGUAGE else language
    try:
        return format_date(value, "long", locale=Locale.parse(locale, sep="-"))
    except (ValueError, UnknownLocaleError):
        return format_date(value, "long", locale="en_150")


def install(env: jinja2.Environment, dirs: tuple[Path, ...], default: str,
            language: Callable[[], str | None] | None = None) -> None:
    """Add ``{% trans %}`` and ``_()`` to ``env`` (newstyle: ``%(name)s`` values are escaped
    like any other). Each render is translated into the template's ``language`` variable, or
    else what ``language()`` returns, or else ``default``."""
    env.add_extension("jinja2.ext.i18n")

    def pick(context: Any) -> NullTranslations:
        chosen = context.get("language") or (language() if language else None) or default
        return load_translations(chosen, dirs)

    @jinja2.pass_context
    def gettext(context: Any, message: str) -> str:
        return pick(context).gettext(message)

    @jinja2.pass_context
    def ngettext(context: Any, singular: str, plural: str, n: int) -> str:
        return pick(context).ngettext(singular, plural, n)

    @jinja2.pass_context
    def pgettext(context: Any, message_context: str, message: str) -> str:
        return str(pick(context).pgettext(message_context, message))

    @jinja2.pass_context
    def npgettext(context: Any, message_context: str, singular: str, plural: str,
                  n: int) -> str:
        return str(pick(context).npgettext(message_context, singular, plural, n))

    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext, ngettext, newstyle=True, pgettext=pgettext, npgettext=npgettext)
