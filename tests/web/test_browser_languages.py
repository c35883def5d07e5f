"""Headless Chromium at phone width: the sign-up and unsubscribed pages in Greek and Bulgarian fit
375 px (longer words than English, the language switch in the masthead) and show their script.

Greek comes from the browser's own language (Accept-Language), Bulgarian from the switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newsletter.store import Status
from newsletter.tokens import unsubscribe_url
from tests.web.conftest import path_of

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
PHONE = {"width": 375, "height": 740}
SCRIPTS = {"el": r"[\u0370-\u03ff]", "bg": r"[\u0400-\u04ff]"}
WORDS = {
    "el": {"subscribe": "Εγγραφή στο ASIT Newsletter", "button": "Εγγραφή",
           "unsubscribe": "Διαγραφή", "unsubscribed": "Η διαγραφή σας ολοκληρώθηκε"},
    "bg": {"subscribe": "Абонамент за ASIT Newsletter", "button": "Абониране",
           "unsubscribe": "Отписване", "unsubscribed": "Отписахте се"},
}


def opened(browser, language: str):
    """A page whose browser speaks ``language`` (el) or English (bg, chosen on the page)."""
    locale = "el-GR" if language == "el" else "en-GB"
    return browser.new_context(java_script_enabled=False, viewport=PHONE, locale=locale)


def choose(url: str, language: str) -> str:
    return url if language == "el" else f"{url}?lang={language}"


def fits_and_shows(page, language: str, heading: str, screenshots: Path, name: str) -> None:
    assert page.locator("html").get_attribute("lang") == language
    title = page.get_by_role("heading", level=1)
    assert title.inner_text() == heading
    assert title.is_visible() and title.bounding_box()["width"] > 0
    # Real glyphs, not blanks: the heading is as wide as its text, wider than a few letters.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    visible = page.locator("main").inner_text()
    assert page.evaluate(f"/{SCRIPTS[language]}/.test(document.querySelector('main').innerText)")
    assert visible.strip()
    page.screenshot(path=str(screenshots / f"{name}-{language}-375.png"), full_page=True)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("WEB_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("language", ["el", "bg"])
def test_the_subscribe_page_at_375_px(browser, server, language, screenshots):
    context = opened(browser, language)
    page = context.new_page()
    try:
        page.goto(choose(f"{server}/subscribe", language))
        words = WORDS[language]
        fits_and_shows(page, language, words["subscribe"], screenshots, "subscribe")
        button = page.get_by_role("button", name=words["button"])
        assert button.is_visible()
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        switch = page.locator("nav.languages")
        assert switch.is_visible()
        switch_box = switch.bounding_box()
        assert switch_box["x"] + switch_box["width"] <= PHONE["width"]
    finally:
        context.close()


@pytest.mark.parametrize("language", ["el", "bg"])
def test_the_unsubscribed_page_at_375_px(browser, server, web_settings, store, subscriber,
                                         language, screenshots):
    context = opened(browser, language)
    page = context.new_page()
    try:
        link = server + path_of(unsubscribe_url(web_settings, subscriber.id, "2025-04"),
                                web_settings)
        page.goto(choose(link, language))
        words = WORDS[language]
        page.get_by_role("button", name=words["unsubscribe"], exact=True).click()
        page.get_by_role("heading", name=words["unsubscribed"]).wait_for()
        assert store.get(subscriber.id).status is Status.UNSUBSCRIBED
        fits_and_shows(page, language, words["unsubscribed"], screenshots, "unsubscribed")
        undo = page.locator("form button")
        assert undo.is_visible() and undo.bounding_box()["width"] <= PHONE["width"]
    finally:
        context.close()


def test_the_preferences_page_at_375_px_in_greek(browser, server, web_settings, store,
                                                 subscriber, screenshots):
    """The longest words of the page (topic names, the language select, two buttons) fit a
    phone; ticking a topic and saving works without JavaScript."""
    from newsletter.tokens import preferences_url

    store.set_language(subscriber.id, "el")
    context = opened(browser, "el")
    page = context.new_page()
    try:
        page.goto(server + path_of(preferences_url(web_settings, subscriber.id), web_settings))
        fits_and_shows(page, "el", "Οι προτιμήσεις σας για το ASIT Newsletter", screenshots,
                       "preferences")
        for name in ("Αποθήκευση", "Διαγραφή"):
            box = page.get_by_role("button", name=name, exact=True).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        topic = page.get_by_role("checkbox", name="Δικαιοσύνη και ποινική δίωξη")
        box = topic.bounding_box()
        assert box["width"] >= 18 and box["x"] + box["width"] <= PHONE["width"]
        topic.check()
        page.get_by_role("button", name="Αποθήκευση", exact=True).click()
        page.get_by_role("heading", name="Οι προτιμήσεις σας αποθηκεύτηκαν").wait_for()
        assert store.get(subscriber.id).tags == ["justice"]
        fits_and_shows(page, "el", "Οι προτιμήσεις σας αποθηκεύτηκαν", screenshots,
                       "preferences-saved")
    finally:
        context.close()
