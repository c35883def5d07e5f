"""The preferences page over HTTP from a real server: what it shows, what POST changes (and
what it leaves alone), every refusal, and readers who already left."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from newsletter.errors import InvalidValue
from newsletter.store import Status
from newsletter.tokens import Purpose, make_token, preferences_url, unsubscribe_url
from tests.web.conftest import OLD_SECRET, path_of
from tests.web.test_get_is_safe import snapshot
from tests.web.test_subscribe import flip

EVERY_TOPIC = ["justice", "research", "training", "victim support"]


def call(url: str, form: dict[str, str | list[str]] | bytes | None = None,
         **headers: str) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of a GET, or of a POST when ``form`` is given."""
    data = form if isinstance(form, bytes) or form is None else urllib.parse.urlencode(
        form, doseq=True).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers.items())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers.items())


@pytest.fixture
def reader(add, store):
    """An active reader with a topic and a tag given by the list's keepers."""
    person = add("anna.kowalska@kwp-krakow.example.org", name="Anna Kowalska",
                 tags=["police", "training"])
    return person


@pytest.fixture
def page_url(server, web_settings, reader) -> str:
    return server + path_of(preferences_url(web_settings, reader.id), web_settings)


def row(store, subscriber_id: int) -> tuple:
    found = store.get(subscriber_id)
    return (found.status, found.language, found.tags, found.updated_at)


def checked(html: str) -> list[str]:
    return sorted(re.findall(r'name="topic" value="([^"]+)"[^>]* checked', html))


def test_the_page_shows_the_reader_and_changes_nothing(page_url, store, reader):
    before = snapshot(store)
    status, html, headers = call(page_url)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert "a•••a@k•••e.org" in html and "anna.kowalska" not in html
    options = re.findall(r'<option value="([^"]+)" lang="[^"]+"( selected)?>([^<]+)</option>',
                         html)
    assert options == [("en", " selected", "English"), ("es", "", "Español")]
    assert re.findall(r'name="topic" value="([^"]+)"', html) == [
        "training", "research", "justice", "victim support"]
    assert checked(html) == ["training"]
    assert '<button class="button" type="submit">Save</button>' in html
    unsubscribe = re.search(r'<form method="post" action="(/unsubscribe/[^"]+)"', html)
    assert unsubscribe and 'name="via" value="page"' in html
    assert snapshot(store) == before


def test_save_sets_the_language_and_exactly_the_topics(page_url, store, reader):
    status, html, headers = call(page_url, {"language": "es",
                                            "topic": ["research", "victim support"]})
    assert status == 200
    after = store.get(reader.id)
    assert after.language == "es" and after.status is Status.ACTIVE
    assert after.tags == ["police", "research", "victim support"]  # "police" stays
    # The answer is in the language just chosen, topics named in it.
    assert headers["Content-Language"] == "es"
    assert "Sus preferencias se han guardado" in html and "Investigación y publicaciones" in html
    assert "Idioma de los números: Español" in html
    # Saved again with nothing ticked: the topics go, the keepers' tag stays.
    call(page_url, {"language": "es"})
    assert store.get(reader.id).tags == ["police"]
    _, html, _ = call(page_url)
    assert checked(html) == [] and 'value="es" lang="es" selected' in html


def test_saving_the_language_one_already_reads_keeps_the_recorded_one(page_url, store, reader):
    """A Greek reader gets the original (no Greek version is offered): saving topics with the
    language as shown must not turn them into an English reader."""
    store.set_language(reader.id, "el")
    _, html, headers = call(page_url)
    assert headers["Content-Language"] == "el"  # the page follows the reader's language
    assert 'value="en" lang="en" selected' in html
    call(page_url, {"language": "en", "topic": EVERY_TOPIC})
    after = store.get(reader.id)
    assert after.language == "el" and after.tags == sorted(["police", *EVERY_TOPIC])


def test_the_page_is_in_the_readers_language(page_url, store, reader):
    store.set_language(reader.id, "el")
    status, html, headers = call(page_url, **{"Accept-Language": "de"})
    assert status == 200 and headers["Content-Language"] == "el"
    assert '<html lang="el">' in html
    assert "<h1>Οι προτιμήσεις σας για το ASIT Newsletter</h1>" in html
    assert "<span>Εκπαίδευση και εκδηλώσεις</span>" in html  # topics by their Greek names
    assert "<span>Υποστήριξη θυμάτων</span>" in html
    assert ">Αποθήκευση</button>" in html and ">Διαγραφή</button>" in html
    status, html, headers = call(page_url + "?lang=bg")  # the reader's own choice wins
    assert headers["Content-Language"] == "bg" and "<span>Обучения и събития</span>" in html


@pytest.mark.parametrize("form", [
    {"language": "de", "topic": "research"},  # a page language, not one the newsletter offers
    {"language": "xx"},
    {"language": "ES"},
    {"topic": "research"},  # no language at all
    {"language": "es", "topic": "police"},  # a tag, but not a topic
    {"language": "es", "topic": ["research", "nope"]},
], ids=["not-offered", "unknown", "not-as-written", "missing", "not-a-topic", "unknown-topic"])
def test_what_the_form_never_offers_is_refused_and_changes_nothing(page_url, store, reader,
                                                                    form):
    before = snapshot(store)
    status, html, _ = call(page_url, form)
    assert status == 400 and "Nothing was changed." in html
    assert snapshot(store) == before


def test_damaged_and_foreign_tokens_are_refused_and_change_nothing(server, web_settings, store,
                                                                   reader):
    token = make_token(web_settings, Purpose.PREFERENCES, reader.id)
    forged = web_settings.model_copy(update={"secret_key": "someone-else-entirely-0123",
                                             "previous_secret_keys": ()})
    wrong = [flip(token, 3), flip(token, len(token) - 5), token + "A", "nonsense",
             make_token(forged, Purpose.PREFERENCES, reader.id),
             make_token(web_settings, Purpose.UNSUBSCRIBE, reader.id),  # another purpose
             make_token(web_settings, Purpose.CONFIRM, reader.id)]
    before = snapshot(store)
    for bad in wrong:
        for form in (None, {"language": "es", "topic": "research"}):
            status, html, _ = call(f"{server}/preferences/{bad}", form)
            assert status == 400 and "This link does not work" in html, bad
    assert snapshot(store) == before


def test_links_signed_with_a_previous_key_keep_working(server, web_settings, store, reader):
    old = web_settings.model_copy(update={"secret_key": OLD_SECRET, "previous_secret_keys": ()})
    link = server + path_of(preferences_url(old, reader.id), web_settings)
    status, _, _ = call(link, {"language": "es", "topic": "justice"})
    assert status == 200 and store.get(reader.id).tags == ["justice", "police"]


@pytest.mark.parametrize("status", [Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED])
def test_a_reader_who_left_has_nothing_to_change(server, web_settings, store, add, status):
    person = add(f"{status}@example.org", status=status, tags=["training"])
    link = server + path_of(preferences_url(web_settings, person.id), web_settings)
    before = snapshot(store)
    for form in (None, {"language": "es", "topic": "research"}):
        code, html, _ = call(link, form)
        assert code == 200 and "will not receive ASIT Newsletter any more" in html
        assert 'name="topic"' not in html and "<select" not in html
    assert snapshot(store) == before


def test_an_erased_reader_has_nothing_to_change(server, web_settings, store, reader):
    link = server + path_of(preferences_url(web_settings, reader.id), web_settings)
    store.forget(reader.email)
    before = snapshot(store)
    for form in (None, {"language": "es"}):
        code, html, _ = call(link, form)
        assert code == 200 and "This address will not receive ASIT Newsletter" in html
    assert snapshot(store) == before


def test_the_unsubscribe_button_leaves_through_the_unsubscribe_page(page_url, server, store,
                                                                    reader):
    _, html, _ = call(page_url)
    action = re.search(r'<form method="post" action="(/unsubscribe/[^"]+)" class="leave">', html)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">',
                             html[html.index('class="leave"'):]))
    assert action and fields == {"List-Unsubscribe": "One-Click", "via": "page"}
    status, html, _ = call(server + action.group(1), fields)
    assert status == 200 and "You are unsubscribed" in html and 'name="undo"' in html
    left = store.get(reader.id)
    assert (left.status, left.status_reason) == (Status.UNSUBSCRIBED, "unsubscribe page")
    assert left.tags == ["police", "training"]
    _, html, _ = call(page_url)  # the page now says they left
    assert "will not receive ASIT Newsletter any more" in html


def test_a_body_larger_than_the_form_is_refused(page_url, store, reader):
    before = snapshot(store)
    padding = b"language=es&topic=research&" + b"x=" + b"y" * 20_000
    status, _, _ = call(page_url, padding,
                        **{"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413 and snapshot(store) == before


def test_without_a_token_the_page_explains_where_the_link_is(server):
    status, html, _ = call(f"{server}/preferences/")
    assert status == 200 and "<strong>Manage your preferences</strong>" in html


def test_the_unsubscribe_link_is_not_a_preferences_link(server, web_settings, reader):
    """Each link does its own job: an unsubscribe token opens no preferences page."""
    token = unsubscribe_url(web_settings, reader.id).rpartition("/")[2]
    assert call(f"{server}/preferences/{token}")[0] == 400


def test_set_topics_touches_only_the_public_tags(store, reader):
    public = {"training", "research"}
    assert store.set_topics(reader.id, {"research"}, public).tags == ["police", "research"]
    with pytest.raises(InvalidValue, match="not a topic: police"):
        store.set_topics(reader.id, {"police"}, public)
    assert store.get(reader.id).tags == ["police", "research"]
