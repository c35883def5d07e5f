"""The catalogues of pages and emails: complete, current and compiled; chosen by language tag;
and a newsletter folder's own ``locale/`` adding a language without any change to the code."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import render_issue
from newsletter.i18n import (
    DOMAIN,
    PACKAGE_LOCALE,
    display_name,
    long_date,
    negotiate,
    page_languages,
    translations,
)
from newsletter.subscribers.optin import render_confirmation

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("sk", "bg", "es", "ca", "el", "it", "pl", "de", "fr")  # English is the source
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
TEMPLATE = PACKAGE_LOCALE / f"{DOMAIN}.pot"


def catalogue(language: str):
    with (PACKAGE_LOCALE / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as file:
        return read_po(file, locale=language)


def message_ids(messages) -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in messages if m.id}


def test_every_language_has_a_catalogue():
    found = {p.parents[1].name for p in PACKAGE_LOCALE.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    assert found == set(SHIPPED)


def test_the_template_holds_what_the_sources_mark():
    """``make translations`` has been run since the last marked message was added or changed."""
    with (ROOT / "babel.cfg").open() as file:
        method_map, options_map = parse_mapping_cfg(file)
    extracted = {message[2] if isinstance(message[2], str) else message[2][0]
                 for message in extract_from_dir(str(ROOT), method_map, options_map,
                                                 keywords=DEFAULT_KEYWORDS)}
    with TEMPLATE.open("rb") as file:
        template = message_ids(read_po(file))
    new, gone = sorted(extracted - template), sorted(template - extracted)
    assert not new and not gone, f"run `make translations`: new {new}, gone {gone}"


@pytest.mark.parametrize("language", SHIPPED)
def test_a_catalogue_is_complete_and_current(language):
    po = catalogue(language)
    with TEMPLATE.open("rb") as file:
        template = read_po(file)
    assert message_ids(po) == message_ids(template), "run `make translations` (pybabel update)"
    assert not po.fuzzy, "the header is marked fuzzy: pybabel compile would skip the catalogue"
    for message in po:
        if not message.id:
            continue
        where = f"{language}: {message.id!r}"
        assert not message.fuzzy, f"{where} is fuzzy: check the translation, drop the flag"
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        sources = message.id if isinstance(message.id, tuple) else (message.id,)
        assert len(forms) == (po.num_plurals if isinstance(message.id, tuple) else 1), where
        wanted = set(PLACEHOLDER.findall(sources[-1]))
        for form in forms:
            assert form.strip(), f"{where} is not translated"
            assert set(PLACEHOLDER.findall(form)) == wanted, f"{where}: placeholders differ"
            assert form.count("<") == sources[-1].count("<"), f"{where}: markup differs"


@pytest.mark.parametrize("language", SHIPPED)
def test_a_compiled_catalogue_matches_its_source(language):
    """The .mo says what its .po says. (Compared by content: a checkout does not keep the files'
    times, so "older than" is only knowable as "different from".)"""
    compiled = io.BytesIO()
    write_mo(compiled, catalogue(language))
    compiled.seek(0)
    mo = PACKAGE_LOCALE / language / "LC_MESSAGES" / f"{DOMAIN}.mo"
    with mo.open("rb") as file:
        shipped = Translations(file, domain=DOMAIN)
    fresh = Translations(compiled, domain=DOMAIN)
    assert shipped._catalog == fresh._catalog, f"{mo} is stale: run `make translations`"


def test_a_language_tag_finds_its_catalogue_or_falls_back_to_english():
    assert translations("el").gettext("Unsubscribe") == "Διαγραφή"
    assert translations("el-GR").gettext("Unsubscribe") == "Διαγραφή"
    assert translations("bg").gettext("Past issues") == "Предишни броеве"
    assert translations("pt-BR").gettext("Unsubscribe") == "Unsubscribe"
    assert translations("x-not a tag").gettext("Unsubscribe") == "Unsubscribe"
    assert translations("pl").ngettext("a %(count)s day", "%(count)s days", 5) == "%(count)s days"


def test_negotiation_follows_accept_language():
    offered = ("en", "bg", "el", "pt")
    assert negotiate("el-GR,el;q=0.9,en;q=0.5", offered) == "el"
    assert negotiate("de-DE,de;q=0.9,bg;q=0.5", offered) == "bg"
    assert negotiate("pt-BR", offered) == "pt"
    assert negotiate("ja, zh;q=0.8", offered, "en") == "en"
    assert negotiate(None, offered, "en") == "en"
    assert negotiate("el;q=0, bg", offered) == "bg"


def test_languages_are_named_in_themselves():
    assert display_name("el") == "Ελληνικά"
    assert display_name("bg") == "Български"
    assert display_name("sk") == "Slovenčina"
    assert display_name("xx-unknown") == "xx-unknown"


def test_dates_are_written_in_the_language():
    import datetime as dt

    day = dt.date(2025, 4, 15)
    assert long_date(day, "en") == "15 April 2025"
    assert long_date(day, "el") == "15 Απριλίου 2025"
    assert long_date(day, "de") == "15. April 2025"


def test_every_shipped_language_is_offered_the_newsletters_own_first(settings):
    assert page_languages(settings) == ("en", *sorted(SHIPPED))


@pytest.mark.parametrize(("language", "subject", "words"), [
    ("el", "Επιβεβαιώστε την εγγραφή σας στο ASIT Newsletter", "Επιβεβαίωση εγγραφής"),
    ("bg", "Моля, потвърдете абонамента си за ASIT Newsletter", "Потвърждавам абонамента"),
])
def test_the_confirmation_email_in_another_language(settings, language, subject, words):
    settings = settings.model_copy(update={"secret_key": "i18n-test-secret-0123456789"})
    email = render_confirmation(settings, SimpleNamespace(id=7, first_name="Anna"),
                                language=language)
    assert email.subject == subject
    assert f'<html lang="{language}">' in email.html and words in email.html
    assert "Anna" in email.text and "/confirm/" in email.text
    assert "Hello" not in email.text and "Someone" not in email.html
    english = render_confirmation(settings, SimpleNamespace(id=7, first_name="Anna"))
    assert english.subject == "Please confirm your subscription to ASIT Newsletter"


def test_the_issue_emails_own_words_follow_the_newsletters_language(workspace_settings):
    german = workspace_settings.model_copy(update={"language": "de"})
    folder = find_issue(german, "2025-04-asit-highlights")
    rendered = render_issue(load_issue(folder, german), german)
    assert "Sie erhalten diese E-Mail, weil Sie ASIT Newsletter abonniert haben." in rendered.html
    assert ">Abmelden</a>" in rendered.html and "Im Browser ansehen" in rendered.html
    assert "Abmelden: {{unsubscribe_url}}" in rendered.text
    assert "You receive this" not in rendered.html + rendered.text


# ---------------------------------------------------------------- a language of the folder's


PORTUGUESE = {
    "Subscribe to %(name)s": "Assine %(name)s",
    "Email address": "Endereço de e-mail",
    "Please confirm your subscription to %(name)s": "Confirme a sua assinatura de %(name)s",
    "Confirm my subscription": "Confirmar a minha assinatura",
}


def folder_catalogue(root: Path, language: str, translated: dict[str, str]) -> None:
    """What a newsletter's editors do for a language the tool does not ship: take the tool's
    template, translate, compile (here with Babel, as `pybabel init` and `compile` would)."""
    with TEMPLATE.open("rb") as file:
        po = read_po(file, locale=language)
    for message in po:
        if message.id in translated:
            message.string = translated[message.id]
    po.fuzzy = False
    folder = root / "locale" / language / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / f"{DOMAIN}.mo").open("wb") as file:
        write_mo(file, po)


def test_a_folder_adds_a_language_with_a_catalogue_and_no_code(workspace_settings, workspace):
    folder_catalogue(workspace, "pt", PORTUGUESE)
    assert "pt" in page_languages(workspace_settings)
    assert translations("pt-BR", workspace_settings).gettext("Email address") == (
        "Endereço de e-mail")
    assert translations("pt", workspace_settings).gettext("Past issues") == "Past issues"
    settings = workspace_settings.model_copy(update={"secret_key": "i18n-test-secret-0123456789"})
    email = render_confirmation(settings, SimpleNamespace(id=7, first_name="Ana"), language="pt")
    assert email.subject == "Confirme a sua assinatura de ASIT Newsletter"
    assert "Confirmar a minha assinatura" in email.html and '<html lang="pt">' in email.html


def test_a_folder_rewords_a_shipped_language_message_by_message(workspace_settings, workspace):
    folder_catalogue(workspace, "de", {"Past issues": "Archiv"})
    german = translations("de", workspace_settings)
    assert german.gettext("Past issues") == "Archiv"  # the folder's
    assert german.gettext("Unsubscribe") == "Abmelden"  # the package's
