"""Headless Chromium clicks through unsubscribe (and undo) and sign-up → email → confirm.

JavaScript is off in every page: the app must work without it. The unsubscribe page is
screenshotted at 375 px (kept in $WEB_SCREENSHOTS when set, else in the test's tmp folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newsletter.store import Status
from newsletter.tokens import unsubscribe_url
from tests.web.conftest import path_of
from tests.web.test_subscribe import confirm_link, confirmations

pytestmark = pytest.mark.browser
PHONE = {"width": 375, "height": 740}
# WCAG contrast ratio of an element's text against its background, computed by the browser.
CONTRAST = """element => {
  const rgb = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
  const lum = c => { const [r, g, b] = rgb(c); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  let node = element, bg = 'rgba(0, 0, 0, 0)';
  while (node && /rgba\\(.*, 0\\)$/.test(bg)) { bg = getComputedStyle(node).backgroundColor;
    node = node.parentElement; }
  const [a, b] = [lum(getComputedStyle(element).color), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


@pytest.fixture
def page(browser):
    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unsubscribe_then_undo_in_a_browser(page, server, web_settings, store, subscriber,
                                            tmp_path):
    link = server + path_of(unsubscribe_url(web_settings, subscriber.id, "2025-04"),
                            web_settings)
    page.goto(link)
    assert page.title() == "Unsubscribe · ASIT Newsletter"
    assert page.locator("html").get_attribute("lang") == "en"
    button = page.get_by_role("button", name="Unsubscribe")
    assert button.evaluate(CONTRAST) >= 4.5
    assert page.locator("main p").first.evaluate(CONTRAST) >= 4.5
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshots = Path(os.environ.get("WEB_SCREENSHOTS") or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshots / "unsubscribe-375.png"), full_page=True)
    assert store.get(subscriber.id).status is Status.ACTIVE

    button.click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert page.url == link  # answered in place: no redirect
    left = store.get(subscriber.id)
    assert (left.status, left.status_reason) == (Status.UNSUBSCRIBED, "unsubscribe page")
    page.screenshot(path=str(screenshots / "unsubscribed-375.png"), full_page=True)

    undo = page.get_by_role("button", name="Undo: keep me subscribed")
    undo.focus()  # keyboard users: the button takes focus and Enter presses it
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="You are subscribed again").wait_for()
    assert store.get(subscriber.id).status is Status.ACTIVE


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sign_up_and_confirm_in_a_browser(page, server, web_settings, store, ctx, tmp_path):
    page.goto(f"{server}/subscribe")
    page.get_by_label("Email address").fill("marta.nowak@example.org")
    page.get_by_label("Your name").fill("Marta Nowak")
    screenshots = Path(os.environ.get("WEB_SCREENSHOTS") or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshots / "subscribe-375.png"), full_page=True)
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    ctx.signups.drain()
    pending = store.get_by_email("marta.nowak@example.org")
    assert pending.status is Status.PENDING

    [message] = confirmations(web_settings)
    page.goto(server + confirm_link(message, web_settings))
    page.get_by_role("heading", name="Confirm your subscription").wait_for()
    assert store.get(pending.id).status is Status.PENDING  # opening the link is not enough
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_role("heading", name="You are subscribed").wait_for()
    confirmed = store.get(pending.id)
    assert confirmed.status is Status.ACTIVE and confirmed.name == "Marta Nowak"
