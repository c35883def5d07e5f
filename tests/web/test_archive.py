"""The archive: sent issues only, neutral placeholders, no token, the issue's own images."""

from __future__ import annotations

import base64
import os
import re

import pytest

from newsletter.store.ledger import Ledger
from newsletter.web import archive
from tests.helpers import write_issue

# A 1×1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
                       "hKmMIQAAAABJRU5ErkJggg==")
ISSUE = """\
    ---
    subject: "Pictures from Kraków"
    preheader: "The web version"
    date: 2025-06-01
    ---
    Dear {{first_name}}, this went to {{email}} at {{organisation}}.

    ![Participants in Kraków](photos/group.png)

    ## Next steps

    Read [the report](https://example.org/report.pdf).
    """


@pytest.fixture
def sent(workspace, store):
    """Two ASIT issues and one with a local image, "sent" (a sends row each), oldest first."""
    folder = write_issue(workspace, "2025-06-pictures", ISSUE)
    (folder / "photos").mkdir()
    (folder / "photos" / "group.png").write_bytes(PNG)
    (folder / "notes.txt").write_text("not published")
    ledger = Ledger(store)
    for slug, subject in (("2025-04-asit-highlights", "ASIT April"),
                          ("2025-06-pictures", "Pictures from Kraków")):
        ledger.plan(slug, subject, "hash")
    return folder


def test_the_index_lists_sent_issues_newest_first(client, sent):
    response = client.get("/archive/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    links = re.findall(r'<a href="(/archive/[^"]+)">([^<]+)</a>', html)
    assert links == [("/archive/2025-06-pictures/", "Pictures from Kraków"),
                     ("/archive/2025-04-asit-highlights/", "ASIT April")]
    assert "2025-05-twinning-and-training" not in html  # never sent
    assert response.headers["Cache-Control"].startswith("public")


def test_a_personalised_subject_is_listed_for_nobody_in_particular(client, sent, store):
    Ledger(store).plan("2025-05-twinning-and-training", "Twinning news for {{ first_name }}",
                       "hash")
    html = client.get("/archive/").get_data(as_text=True)
    assert ">Twinning news for friend</a>" in html and "{{" not in html


def test_an_empty_archive_says_so(client):
    assert "No issue has been sent yet" in client.get("/archive/").get_data(as_text=True)


def test_an_issue_page_has_neutral_values_and_no_token(client, sent, web_settings):
    response = client.get("/archive/2025-06-pictures/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "{{" not in html and "%7B%7B" not in html
    assert "Dear friend, this went to  at ." in html  # attributes are nobody's either
    assert f'href="{web_settings.base_url}/unsubscribe/"' in html
    assert f'href="{web_settings.base_url}/preferences/"' in html and 'href=""' not in html
    assert f'href="{web_settings.base_url}/archive/2025-06-pictures/"' in html
    assert not re.search(r"/unsubscribe/[A-Za-z0-9_-]{10,}", html)
    assert f'src="{web_settings.base_url}/archive/2025-06-pictures/photos/group.png"' in html


def test_the_asit_issue_renders_without_placeholders(client, sent):
    html = client.get("/archive/2025-04-asit-highlights/").get_data(as_text=True)
    assert "{{" not in html and "Consortium" in html


def test_unknown_and_unsent_issues_are_404(client, sent):
    for path in ("/archive/nope/", "/archive/2025-05-twinning-and-training/", "/archive/../",
                 "/archive/.hidden/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Page not found" in response.get_data(as_text=True)


def test_only_the_issues_own_images_are_served(client, sent):
    with client.get("/archive/2025-06-pictures/photos/group.png") as image:
        assert image.status_code == 200 and image.data == PNG
        assert image.mimetype == "image/png"
    for name in ("issue.md", "notes.txt", "photos/", "../2025-04-asit-highlights/issue.md",
                 "photos/../issue.md", "nope.png"):
        assert client.get(f"/archive/2025-06-pictures/{name}").status_code == 404, name
    assert client.get("/archive/2025-05-twinning-and-training/issue.md").status_code == 404


def test_pages_are_rendered_once_per_version_of_the_folder(client, sent, monkeypatch):
    calls = []
    real = archive.render_issue
    monkeypatch.setattr(archive, "render_issue", lambda *a: calls.append(1) or real(*a))
    client.get("/archive/2025-06-pictures/")
    client.get("/archive/2025-06-pictures/")
    assert len(calls) == 1
    issue = sent / "issue.md"
    issue.write_text(issue.read_text().replace("Next steps", "What comes next"))
    later = issue.stat().st_mtime + 2
    os.utime(issue, (later, later))
    assert "What comes next" in client.get("/archive/2025-06-pictures/").get_data(as_text=True)
    assert len(calls) == 2
