"""The preview server, over real HTTP on a loopback port."""

import json
import os
import threading
import time
import urllib.request

import pytest

from newsletter.authoring.preview import Preview, make_server
from newsletter.config import load_settings


@pytest.fixture
def preview(workspace):
    folder = workspace / "issues" / "2025-05-twinning-and-training"
    server = make_server(Preview(folder, lambda: load_settings(workspace / "newsletter.toml",
                                                               env={})), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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
