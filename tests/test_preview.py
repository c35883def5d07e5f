"""The preview server, over real HTTP on a loopback port."""

import json
import os
import time
import urllib.parse
import urllib.request

import pytest

from newsletter.authoring.preview import Preview, make_server
from newsletter.config import load_settings
from tests.helpers import serving


def previewing(workspace, slug):
    """A preview server of one issue of the workspace: (its folder, its URL) while it runs."""
    folder = workspace / "issues" / slug
    server = make_server(Preview(folder, lambda: load_settings(workspace / "newsletter.toml",
                                                               env={})), port=0)
    with serving(server):
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def preview(workspace):
    yield from previewing(workspace, "2025-05-twinning-and-training")


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read().decode("utf-8", "replace")
        return response.status, response.headers["Content-Type"], body


def touch_and_write(path, text):
    path.write_text(text, encoding="utf-8")
    later = time.time() + 2  # make sure the mtime moves even on coarse clocks
    os.utime(path, (later, later))


def test_page_shows_desktop_and_phone_frames(preview):
    _, base = preview
    status, kind, page = get(base + "/")
    assert status == 200 and kind.startswith("text/html")
    assert 'id="desktop"' in page and 'id="mobile"' in page and "#mobile { width: 375px; }" in page


def test_reloads_after_an_edit_and_survives_a_broken_one(preview):
    folder, base = preview
    state = json.loads(get(base + "/state.json")[2])
    assert state["error"] is None and state["subject"].startswith("ASIT news")
    assert "Project Highlights" in get(base + "/email.html")[2]
    issue = folder / "issue.md"
    original = issue.read_text()

    touch_and_write(issue, original.replace("## Project Highlights", "## Project Milestones"))
    edited = json.loads(get(base + "/state.json")[2])
    assert edited["version"] != state["version"]
    assert "Project Milestones" in get(base + "/email.html")[2]
    assert "PROJECT MILESTONES" in get(base + "/email.txt")[2]

    touch_and_write(issue, original.replace("date: 2025-05-20", "date: someday"))
    broken = json.loads(get(base + "/state.json")[2])
    assert "date: Input should be a valid date" in broken["error"]
    status, _, page = get(base + "/email.html")
    assert status == 200 and "This issue does not render" in page and "date: Input" in page

    touch_and_write(issue, original)
    assert json.loads(get(base + "/state.json")[2])["error"] is None


def test_template_edits_reload_too(preview, workspace):
    _, base = preview
    before = json.loads(get(base + "/state.json")[2])["version"]
    touch_and_write(workspace / "templates/blocks/button.mjml.j2",
                    '<mj-button href="{{ block.url }}">→ {{ block.label }}</mj-button>\n')
    assert json.loads(get(base + "/state.json")[2])["version"] != before
    assert "→ Visit the ASIT website" in get(base + "/email.html")[2]


def test_serves_local_images_of_the_issue_only(preview):
    folder, base = preview
    (folder / "photo.png").write_bytes(b"\x89PNG fake")
    status, kind, _ = get(f"{base}/archive/{folder.name}/photo.png")
    assert status == 200 and kind == "image/png"
    with pytest.raises(urllib.error.HTTPError) as caught:
        get(f"{base}/archive/{folder.name}/issue.md")
    assert caught.value.code == 404
    caught.value.close()


@pytest.fixture
def translated(workspace):
    """A preview of the ASIT highlights, which has a Spanish translation (Spanish is offered)."""
    yield from previewing(workspace, "2025-04-asit-highlights")


def test_the_page_has_a_switch_between_the_versions(translated):
    _, base = translated
    page = get(base + "/?lang=es")[2]
    assert '<nav id="languages"' in page and 'get("lang")' in page
    assert '"/state.json?" + query' in page and '"/email.html?" + query' in page
    original = json.loads(get(base + "/state.json")[2])
    assert original["language"] == "" and original["error"] is None
    assert original["languages"] == [{"code": "", "name": "Original", "current": True},
                                     {"code": "es", "name": "Español", "current": False}]
    spanish = json.loads(get(base + "/state.json?lang=es")[2])
    assert spanish["error"] is None and spanish["subject"].startswith("Lo más destacado")
    assert [c["code"] for c in spanish["languages"] if c["current"]] == ["es"]
    assert not [f for f in spanish["findings"] if f["severity"] == "error"]
    html = get(base + "/email.html?lang=es&v=" + spanish["version"])[2]
    assert html.startswith('<!DOCTYPE html>\n<html lang="es"') and "Ver en el navegador" in html
    assert '<html lang="en"' in get(base + "/email.html")[2]
    assert json.loads(get(base + "/state.json?lang=en")[2])["language"] == ""  # the original
    assert "LO MÁS DESTACADO" in get(base + "/email.txt?lang=es")[2].upper()


def test_a_translation_reloads_on_save_and_is_checked_against_the_original(translated):
    folder, base = translated
    translation = folder / "issue.es.md"
    text = translation.read_text(encoding="utf-8")
    before = json.loads(get(base + "/state.json?lang=es")[2])
    touch_and_write(translation, text.replace("## Refuerzo de las alianzas",
                                              "## Alianzas más fuertes"))
    after = json.loads(get(base + "/state.json?lang=es")[2])
    assert after["version"] != before["version"]
    assert "Alianzas más fuertes" in get(base + "/email.html?lang=es")[2]
    assert "Refuerzo de las alianzas" not in get(base + "/email.html?lang=es")[2]
    assert "Alianzas más fuertes" not in get(base + "/email.html")[2]

    touch_and_write(translation, text.replace("## Refuerzo de las alianzas", "Refuerzo"))
    findings = json.loads(get(base + "/state.json?lang=es")[2])["findings"]
    assert any(f["severity"] == "error" and f["rule"] == "sections"
               and "issue.es.md" in f["message"] for f in findings)

    touch_and_write(translation, text.replace("date: 2025-04-15", "date: someday"))
    broken = json.loads(get(base + "/state.json?lang=es")[2])
    assert "issue.es.md:4: date" in broken["error"]
    assert json.loads(get(base + "/state.json")[2])["error"] is None  # the original is fine


def test_a_new_translation_joins_the_switch(translated):
    folder, base = translated
    touch_and_write(folder / "issue.de.md", (folder / "issue.es.md").read_text(encoding="utf-8"))
    state = json.loads(get(base + "/state.json?lang=de")[2])
    assert [c["name"] for c in state["languages"]] == ["Original", "Deutsch", "Español"]
    assert state["error"] is None
    assert any(f["rule"] == "language" and f["severity"] == "warning" for f in state["findings"])


def test_a_language_without_a_translation_says_so(translated):
    _, base = translated
    for language in ("el", "../issue", "es/../x"):
        state = json.loads(get(base + "/state.json?lang=" + urllib.parse.quote(language))[2])
        assert "has no translation into" in state["error"], language
        assert state["subject"] is None


def test_the_switch_works_in_a_browser(browser, translated):
    _, base = translated
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    try:
        page.goto(base + "/")
        page.wait_for_selector("#languages a[lang=es]")
        assert page.inner_text("#languages [aria-current]") == "Original"
        page.click("#languages a[lang=es]")
        page.wait_for_url(base + "/?lang=es")  # a new page: wait before looking into it
        page.wait_for_function("document.getElementById('subject').textContent"
                               ".startsWith('Lo más destacado')")
        assert page.inner_text("#languages [aria-current]") == "Español"
        page.wait_for_function("['desktop', 'mobile'].every(id => document.getElementById(id)"
                               ".contentDocument?.documentElement.lang === 'es')")
        assert "navegador" in page.inner_text("#text")
    finally:
        page.close()
