"""Pages in the reader's language, over HTTP from a real server: ``?lang=``, the ``lang`` cookie,
Accept-Language, the newsletter's language; the switch; the confirmation email of a sign-up."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from newsletter.i18n import DOMAIN, PACKAGE_LOCALE
from newsletter.store import Status
from newsletter.tokens import unsubscribe_url
from newsletter.web import close_app, create_app
from newsletter.web.language import follow_subscriber, page_language
from tests.web.conftest import path_of
from tests.web.test_subscribe import confirmations, sign_up

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def get(url: str, **headers: str) -> tuple[str, dict[str, str]]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return r.read().decode(), {k.lower(): v for k, v in r.headers.items()}


def html_lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)">', html)
    assert found, html[:200]
    return found.group(1)


@pytest.mark.parametrize(("language", "heading"), [
    ("el", "Εγγραφή στο ASIT Newsletter"), ("bg", "Абонамент за ASIT Newsletter")])
def test_a_page_in_the_browsers_language(server, language, heading):
    html, headers = get(f"{server}/subscribe", **{"Accept-Language": f"{language},en;q=0.5"})
    assert html_lang(html) == language and headers["content-language"] == language
    assert f"<h1>{heading}</h1>" in html
    assert {v.strip() for v in headers["vary"].split(",")} >= {"Accept-Language", "Cookie"}
    assert "set-cookie" not in headers  # only a choice is remembered


@pytest.mark.parametrize(("language", "word"), [("el", "Προηγούμενα τεύχη"),
                                                 ("bg", "Предишни броеве")])
def test_a_page_in_the_language_chosen_with_lang(server, language, word):
    html, headers = get(f"{server}/unsubscribe/?lang={language}", **{"Accept-Language": "de"})
    assert html_lang(html) == language and headers["content-language"] == language
    assert word in html
    assert headers["set-cookie"].startswith(f"lang={language};")
    assert "Path=/" in headers["set-cookie"] and "SameSite=Lax" in headers["set-cookie"]


def test_the_cookie_keeps_the_choice_for_later_pages(server):
    _, headers = get(f"{server}/subscribe?lang=bg")
    cookie = headers["set-cookie"].split(";")[0]
    html, later = get(f"{server}/archive/", Cookie=cookie, **{"Accept-Language": "el"})
    assert html_lang(html) == "bg" and later["content-language"] == "bg"
    assert "set-cookie" not in later
    html, again = get(f"{server}/archive/?lang=el", Cookie=cookie)  # a new choice wins
    assert html_lang(html) == "el" and again["set-cookie"].startswith("lang=el;")
    assert again["cache-control"].startswith("private")  # a shared cache must not keep it


def test_the_switch_offers_every_language_by_its_own_name(server):
    html, _ = get(f"{server}/subscribe?lang=el")
    nav = re.search(r'<nav class="languages" aria-label="Γλώσσα">(.*?)</nav>', html, re.S)
    assert nav, html
    links = dict(re.findall(r'<a href="\?lang=([a-z-]+)"[^>]*>([^<]+)</a>', nav.group(1)))
    assert links == {"en": "English", "bg": "Български", "ca": "Català", "de": "Deutsch",
                     "es": "Español", "fr": "Français", "it": "Italiano", "pl": "Polski",
                     "sk": "Slovenčina"}
    assert '<span lang="el" aria-current="true">Ελληνικά</span>' in nav.group(1)
    followed, _ = get(f"{server}/subscribe?lang=bg")  # where a switch link leads
    assert html_lang(followed) == "bg"


@pytest.mark.parametrize("asked", ["?lang=xx", "?lang=", "?lang=%3Cscript%3E", ""])
def test_unknown_languages_fall_back(server, asked):
    html, headers = get(f"{server}/subscribe{asked}",
                        **{"Accept-Language": "ja, zh;q=0.9", "Cookie": "lang=tlh"})
    assert html_lang(html) == "en" and headers["content-language"] == "en"
    assert "<h1>Subscribe to ASIT Newsletter</h1>" in html and "set-cookie" not in headers


def test_a_subscribers_link_in_their_language(server, web_settings, subscriber):
    link = server + path_of(unsubscribe_url(web_settings, subscriber.id, "2025-04"),
                            web_settings)
    html, headers = get(link, **{"Accept-Language": "el"})
    assert "Διαγραφή από το ASIT Newsletter;" in html and headers["content-language"] == "el"


def test_a_link_opens_in_its_subscribers_language(server, web_settings, subscriber, store):
    """Without a choice of their own, the reader's pages follow the language on their record,
    before the browser's."""
    store.set_language(subscriber.id, "bg")
    link = server + path_of(unsubscribe_url(web_settings, subscriber.id, "2025-04"),
                            web_settings)
    html, headers = get(link, **{"Accept-Language": "el"})
    assert headers["content-language"] == "bg" and html_lang(html) == "bg"
    html, headers = get(link + "?lang=el")
    assert headers["content-language"] == "el"


def test_the_one_click_answer_is_stamped_per_language(client, web_settings, add):
    """The unsubscribed page is rendered once per language and filled per request."""
    answers = {}
    for language in ("el", "bg", "el"):
        subscriber = add(f"{language}-{len(answers)}@example.org")
        url = path_of(unsubscribe_url(web_settings, subscriber.id, "2025-04"), web_settings)
        response = client.post(url, data={"List-Unsubscribe": "One-Click"},
                               headers={"Accept-Language": language})
        answers[len(answers)] = response.get_data(as_text=True)
        assert response.headers["Content-Language"] == language
    assert "Η διαγραφή σας ολοκληρώθηκε" in answers[0] and "el-0@" not in answers[2]
    assert "Отписахте се" in answers[1] and "b•••" not in answers[0]


def test_the_hook_for_a_subscribers_language(app):
    """Once subscribers carry a language, a link's page follows it, below an explicit choice."""
    with app.test_request_context("/unsubscribe/x", headers={"Accept-Language": "de"}):
        follow_subscriber("el")
        assert page_language() == "el"
    with app.test_request_context("/unsubscribe/x?lang=fr", headers={"Accept-Language": "de"}):
        follow_subscriber("el")
        assert page_language() == "fr"
    with app.test_request_context("/unsubscribe/x", headers={"Accept-Language": "de"}):
        follow_subscriber(None)
        assert page_language() == "de"
    with app.test_request_context("/unsubscribe/x"):
        follow_subscriber("tlh")
        assert page_language() == "en"


def test_a_sign_up_gets_its_confirmation_in_the_pages_language(client, ctx, store,
                                                              web_settings):
    form = client.get("/subscribe?lang=el").get_data(as_text=True)
    assert 'name="lang" value="el"' in form and "Διεύθυνση email" in form
    client.delete_cookie("lang")  # the form's own field carries the language
    answer = sign_up(client, "eleni@example.org", "Ελένη", lang="el")
    assert "Ελέγξτε τα εισερχόμενά σας" in answer.get_data(as_text=True)
    ctx.signups.drain()
    [message] = confirmations(web_settings)
    assert message["Subject"] == "Επιβεβαιώστε την εγγραφή σας στο ASIT Newsletter"
    assert "Γεια σας, Ελένη," in message.get_body(("plain",)).get_content()
    assert '<html lang="el">' in message.get_body(("html",)).get_content()
    subscriber = store.get_by_email("eleni@example.org")
    assert subscriber.status is Status.PENDING and subscriber.language == "el"
    [consent] = store.personal_data("eleni@example.org")["consents"]
    evidence = json.loads(consent["evidence"])
    assert evidence["language"] == "el" and evidence["wording"].startswith(
        "Επιθυμώ να λαμβάνω το ASIT Newsletter μέσω email.")


def test_a_sign_up_in_english_stays_english(client, ctx, web_settings):
    sign_up(client, "anna@example.org", "Anna")
    ctx.signups.drain()
    [message] = confirmations(web_settings)
    assert message["Subject"] == "Please confirm your subscription to ASIT Newsletter"


def test_pages_in_a_language_only_the_folder_has(web_settings, store, workspace):
    """A newsletter folder's locale/nl/…/newsletter.mo: Dutch pages with no change to code."""
    with (PACKAGE_LOCALE / f"{DOMAIN}.pot").open("rb") as file:
        po = read_po(file, locale="nl")
    for message in po:
        message.string = {"Subscribe to %(name)s": "Abonneren op %(name)s",
                          "Language": "Taal"}.get(message.id, "")
    folder = Path(workspace) / "locale" / "nl" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / f"{DOMAIN}.mo").open("wb") as file:
        write_mo(file, po)
    app = create_app(web_settings, store=store)
    try:
        response = app.test_client().get("/subscribe",
                                         headers={"Accept-Language": "nl-BE, nl;q=0.9"})
    finally:
        close_app(app)
    html = response.get_data(as_text=True)
    assert html_lang(html) == "nl" and response.headers["Content-Language"] == "nl"
    assert "<h1>Abonneren op ASIT Newsletter</h1>" in html and 'aria-label="Taal"' in html
    assert "Nederlands" in html
    assert "Email address" in html  # not translated there: English, never an empty label
