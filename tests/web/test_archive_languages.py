"""The archive in every language, over HTTP from a real server: a page per translation offered,
hreflang links and a switch between the versions, 404 for any other language, shared images."""

from __future__ import annotations

import os
import re
import textwrap
import urllib.error
import urllib.request

import pytest

from newsletter.config import Settings
from newsletter.store.ledger import Ledger
from newsletter.web import archive
from tests.helpers import write_issue
from tests.web.test_archive import ISSUE, PNG

SLUG = "2025-04-asit-highlights"
PICTURES = "2025-06-pictures"
SPANISH = """\
    ---
    subject: "Fotos de Cracovia"
    preheader: "La versión web"
    date: 2025-06-01
    ---
    Estimado/a {{first_name}}, esto se envió a {{email}} en {{organisation}}.

    ![Participantes en Cracovia](photos/group.png)

    ## Próximos pasos

    Lea [el informe](https://example.org/report.pdf) y vea [el mapa](mapa.png).

    ![Mapa de los socios](mapa.png)
    """


@pytest.fixture
def web_settings(web_settings: Settings) -> Settings:
    """Spanish and Greek offered; only Spanish is translated."""
    return web_settings.model_copy(update={"languages": ("es", "el")})


@pytest.fixture
def sent(workspace, store):
    """The ASIT highlights (with issue.es.md) and an issue with local images in two languages,
    "sent"; the twinning issue (never sent) gets a Spanish translation too."""
    folder = write_issue(workspace, PICTURES, ISSUE)
    (folder / "issue.es.md").write_text(textwrap.dedent(SPANISH), encoding="utf-8")
    (folder / "photos").mkdir()
    (folder / "photos" / "group.png").write_bytes(PNG)
    (folder / "mapa.png").write_bytes(PNG)
    (folder / "unused.png").write_bytes(PNG)
    highlights = workspace / "issues" / SLUG
    (highlights / "issue.de.md").write_text(  # German is not offered: never published
        (highlights / "issue.es.md").read_text(encoding="utf-8"), encoding="utf-8")
    twinning = workspace / "issues" / "2025-05-twinning-and-training"
    (twinning / "issue.es.md").write_text((twinning / "issue.md").read_text(encoding="utf-8"),
                                          encoding="utf-8")
    ledger = Ledger(store)
    for slug, subject in ((SLUG, "ASIT April"), (PICTURES, "Pictures from Kraków")):
        ledger.plan(slug, subject, "hash")
    return folder


def get(url: str) -> tuple[int, str, dict[str, str], bytes]:
    """Status, final URL, headers (lower-case names) and body, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return (response.status, response.url,
                    {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, url, {k.lower(): v for k, v in error.headers.items()}, error.read()


def page(url: str) -> tuple[str, dict[str, str]]:
    status, _, headers, body = get(url)
    assert status == 200, url
    return body.decode(), headers


def alternates(html: str) -> dict[str, str]:
    head = html.partition("</head>")[0]
    return dict(re.findall(r'<link rel="alternate" hreflang="([^"]+)" href="([^"]+)">', head))


def switch(html: str) -> tuple[str, str]:
    """The switch's label and its contents, checked to open the body."""
    found = re.search(r'<body[^>]*><nav aria-label="([^"]+)"[^>]*>(.*?)</nav>', html, re.S)
    assert found, html[:300]
    return found.group(1), found.group(2)


def test_a_translation_has_its_own_page(server, sent, web_settings):
    html, headers = page(f"{server}/archive/{SLUG}/es/")
    assert html.startswith("<!DOCTYPE html>\n<html lang=\"es\"")
    assert headers["content-language"] == "es"
    assert headers["cache-control"].startswith("public")
    assert "<title>Lo más destacado de ASIT" in html
    assert "{{" not in html and not re.search(r"/unsubscribe/[A-Za-z0-9_-]{10,}", html)
    own = f"{web_settings.base_url}/archive/{SLUG}/es/"
    assert f'href="{own}"' in html  # "View in your browser" stays on the Spanish page
    assert "Ver en el navegador" in html
    original, headers = page(f"{server}/archive/{SLUG}/")
    assert original.startswith("<!DOCTYPE html>\n<html lang=\"en\"")
    assert headers["content-language"] == "en"
    assert f'href="{own}"' in original  # only in the switch, as the link to Spanish
    assert original.count(f'href="{web_settings.base_url}/archive/{SLUG}/"') >= 2


def test_every_version_links_to_every_other(server, sent, web_settings):
    base = f"{web_settings.base_url}/archive/{SLUG}/"
    expected = {"en": base, "es": f"{base}es/", "x-default": base}
    spanish, _ = page(f"{server}/archive/{SLUG}/es/")
    original, _ = page(f"{server}/archive/{SLUG}/")
    assert alternates(spanish) == alternates(original) == expected

    label, choices = switch(spanish)
    assert label == "Idioma"
    assert f'<a href="{base}" hreflang="en" lang="en"' in choices and ">English</a>" in choices
    assert '<strong lang="es" aria-current="true">Español</strong>' in choices
    assert "Deutsch" not in choices and "Ελληνικά" not in choices  # not offered; no file

    label, choices = switch(original)
    assert label == "Language"
    assert f'<a href="{base}es/" hreflang="es" lang="es"' in choices and ">Español</a>" in choices
    assert '<strong lang="en" aria-current="true">English</strong>' in choices


def test_an_issue_in_one_language_has_no_switch(server, sent):
    page(f"{server}/archive/{SLUG}/es/")
    (sent.parent / SLUG / "issue.es.md").unlink()
    html, _ = page(f"{server}/archive/{SLUG}/")
    assert 'rel="alternate"' not in html and "<nav" not in html
    assert get(f"{server}/archive/{SLUG}/es/")[0] == 404


@pytest.mark.parametrize("path", [
    f"/archive/{SLUG}/de/",  # a translation, but German is not offered
    f"/archive/{SLUG}/el/",  # Greek is offered, but there is no issue.el.md
    f"/archive/{SLUG}/fr/",  # neither
    f"/archive/{SLUG}/ES/",
    f"/archive/{SLUG}/es-ES/",
    "/archive/2025-05-twinning-and-training/es/",  # translated, never sent
    "/archive/nope/es/",
    f"/archive/{PICTURES}/photos/",
])
def test_other_languages_are_404(server, sent, path):
    status, _, _, body = get(server + path)
    assert status == 404
    assert "Page not found" in body.decode()


def test_the_original_language_is_the_issues_own_address(client, sent):
    response = client.get(f"/archive/{SLUG}/en/")
    assert response.status_code == 308
    assert response.headers["Location"] == f"/archive/{SLUG}/"


def test_the_images_are_shared_by_every_version(server, sent, web_settings):
    spanish, _ = page(f"{server}/archive/{PICTURES}/es/")
    assert "Estimado/a friend, esto se envió a  en ." in spanish
    sources = re.findall(r'<img [^>]*src="([^"]+)"', spanish)
    shared = f"{web_settings.base_url}/archive/{PICTURES}/photos/group.png"
    assert shared in sources
    assert f"{web_settings.base_url}/archive/{PICTURES}/mapa.png" in sources
    for path in (f"/archive/{PICTURES}/photos/group.png",  # both versions show it
                 f"/archive/{PICTURES}/mapa.png"):  # only the Spanish version does
        status, url, headers, body = get(server + path)
        assert (status, url, body) == (200, server + path, PNG), path  # no redirect to …/
        assert headers["content-type"] == "image/png"
    for name in ("unused.png", "issue.es.md", "es/photos/group.png", "photos/../issue.es.md"):
        assert get(f"{server}/archive/{PICTURES}/{name}")[0] == 404, name


def test_the_index_names_the_languages_of_each_issue(server, sent):
    html, _ = page(f"{server}/archive/")
    items = dict(re.findall(r'<a href="(/archive/[^"/]+/)">[^<]+</a>(.*?)</li>', html, re.S))
    assert set(items) == {f"/archive/{SLUG}/", f"/archive/{PICTURES}/"}
    for path, item in items.items():
        assert "Also in:" in item
        assert re.findall(r'<a href="([^"]+)" hreflang="([^"]+)" lang="[^"]+">([^<]+)</a>',
                          item) == [(f"{path}es/", "es", "Español")]
    greek, _ = page(f"{server}/archive/?lang=el")
    assert "Διαθέσιμο και στα:" in greek


def test_each_version_is_rendered_once_per_version_of_the_folder(client, sent, monkeypatch):
    calls: list[str] = []
    real = archive.render_issue
    monkeypatch.setattr(archive, "render_issue",
                        lambda issue, *a: calls.append(issue.language) or real(issue, *a))
    for _ in range(2):
        for path in (f"/archive/{PICTURES}/", f"/archive/{PICTURES}/es/",
                     f"/archive/{PICTURES}/mapa.png"):
            with client.get(path) as response:
                assert response.status_code == 200, path
    assert sorted(calls) == ["en", "es"]
    translation = sent / "issue.es.md"
    translation.write_text(translation.read_text().replace("Próximos pasos", "Lo que viene"))
    later = translation.stat().st_mtime + 2
    os.utime(translation, (later, later))
    assert "Lo que viene" in client.get(f"/archive/{PICTURES}/es/").text
    assert sorted(calls) == ["en", "es", "es"]
