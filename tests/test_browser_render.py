"""The ASIT issues in a real browser: no horizontal scroll on a phone, full width on desktop."""

import pytest

from tests.conftest import ASIT_ISSUES

SCROLL = "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"


@pytest.mark.parametrize("slug", ASIT_ISSUES)
@pytest.mark.parametrize("width", [375, 600])
def test_no_horizontal_scroll(browser, asit_rendered, slug, width):
    page = browser.new_page(viewport={"width": width, "height": 800})
    try:
        page.set_content(asit_rendered[slug].html)
        scroll_width, client_width = page.evaluate(SCROLL)
        assert scroll_width <= client_width
        # the content column fills the phone screen rather than shrinking to a sliver
        body_width = page.evaluate("document.querySelector('h2').getBoundingClientRect().width")
        assert body_width > width * 0.7
        assert page.locator("text=Unsubscribe").first.is_visible()
    finally:
        page.close()
