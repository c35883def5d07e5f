"""Translations of an issue: issue.<lang>.md beside issue.md, held to the original's shape."""

import json
import textwrap

import pytest
from click.testing import CliRunner

from newsletter.authoring.checks import check_issue
from newsletter.authoring.content import load_issue, translation_files
from newsletter.authoring.render import render_issue
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.errors import ConfigError, IssueNotFound
from newsletter.message import sample_message
from tests.helpers import write_issue

ORIGINAL = """\
    ---
    subject: "News for {{first_name}}"
    preheader: "Training and reports"
    date: 2026-03-02
    hero:
      title: News
    ---
    Dear {{first_name}}, welcome.

    ## Training

    A course in [Sofia](https://example.org/sofia).

    ::: button
    [Register](https://example.org/register)
    :::

    ## Reports

    ![A chart](https://example.org/chart.png)
    """

GREEK = """\
    ---
    subject: "Νέα για {{first_name}}"
    preheader: "Εκπαίδευση και εκθέσεις"
    date: 2026-03-02
    hero:
      title: Νέα
    ---
    Αγαπητέ/ή {{first_name}}, καλώς ήρθατε.

    ## Εκπαίδευση

    Ένα σεμινάριο στη [Σόφια](https://example.org/sofia).

    ::: button
    [Εγγραφή](https://example.org/register)
    :::

    ## Εκθέσεις

    ![Ένα διάγραμμα](https://example.org/chart.png)
    """


@pytest.fixture
def settings(workspace):
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace(
        'languages = ["es"]', 'languages = ["el", "bg", "ca", "es"]\nfallback = { ca = "es" }'))
    return load_settings(config, env={})


@pytest.fixture
def folder(workspace, settings):
    folder = write_issue(workspace, "2026-03-news", ORIGINAL)
    (folder / "issue.el.md").write_text(textwrap.dedent(GREEK), encoding="utf-8")
    return folder


def greek_with(folder, old, new):
    path = folder / "issue.el.md"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def errors(folder, settings):
    return [f.message for f in check_issue(folder, settings) if f.severity == "error"]


def test_a_faithful_translation_passes_and_renders_in_its_language(folder, settings):
    assert translation_files(folder) == {"el": folder / "issue.el.md"}
    findings = check_issue(folder, settings)
    assert [f.severity for f in findings] == ["warning"]
    assert findings[0].message == ("no translation into bg, ca, es: those readers get "
                                   "bg → en, ca → es, es → en")
    greek = load_issue(folder, settings, "el")
    assert (greek.language, greek.source.name, greek.meta.subject) == (
        "el", "issue.el.md", "Νέα για {{first_name}}")
    rendered = render_issue(greek, settings)
    assert rendered.language == "el" and 'lang="el"' in rendered.html
    assert "Εκπαίδευση" in rendered.html and "καλώς ήρθατε" in rendered.text
    assert b"Content-Language: el\r\n" in sample_message(rendered, settings)
    # the email's own words: the theme's from the catalogue, the footer's from newsletter.toml
    assert "Προβολή" in rendered.html or "περιηγητή" in rendered.html
    assert "Κοινοπραξία" in rendered.html and ">Consortium<" not in rendered.html
    original = render_issue(load_issue(folder, settings), settings)
    assert original.language == "en" and 'lang="en"' in original.html
    assert "Consortium" in original.html and "Κοινοπραξία" not in original.html
    with pytest.raises(IssueNotFound, match="no translation into 'bg'"):
        load_issue(folder, settings, "bg")


def test_a_missing_section_is_reported_at_the_translations_line(folder, settings):
    greek_with(folder, "## Εκθέσεις\n\n![Ένα διάγραμμα](https://example.org/chart.png)\n", "")
    assert errors(folder, settings) == [
        f"{folder}/issue.el.md:10: sections: 1 section(s) ('## ' headings); issue.md has 2"]


def test_blocks_links_images_and_placeholders_must_match(folder, settings):
    greek_with(folder, "(https://example.org/sofia)", "(https://example.org/sofia-el)")
    greek_with(folder, "Αγαπητέ/ή {{first_name}}", "Αγαπητέ/ή {{name}}")
    greek_with(folder, "::: button\n[Εγγραφή](https://example.org/register)\n:::\n", "")
    greek_with(folder, "(https://example.org/chart.png)", "(https://example.org/chart-el.png)")
    path = f"{folder}/issue.el.md"
    assert errors(folder, settings) == [
        f"{path}:8: placeholder: {{{{name}}}} is not in the issue of the original (issue.md)",
        f"{path}:10: blocks: section 1 has no ::: blocks; the original's (issue.md:10) has "
        "::: button",
        f"{path}:10: link: link to https://example.org/sofia of the original (issue.md:12) is "
        "missing from section 1",
        f"{path}:10: link: link to https://example.org/register of the original (issue.md:15) "
        "is missing from section 1",
        f"{path}:12: link: link to https://example.org/sofia-el is not in section 1 of the "
        "original (issue.md)",
        f"{path}:15: image: image https://example.org/chart.png of the original (issue.md:20) "
        "is missing from section 2",
        f"{path}:17: image: image https://example.org/chart-el.png is not in section 2 of the "
        "original (issue.md)",
    ]


def test_a_broken_translation_file_names_its_file_and_line(folder, settings):
    greek_with(folder, "date: 2026-03-02", "date: soon")
    assert errors(folder, settings) == [
        f"{folder}/issue.el.md:4: date: Input should be a valid date or datetime, input is too "
        "short"]


def test_a_translation_into_a_language_not_offered_is_a_warning(folder, settings):
    (folder / "issue.pl.md").write_text(textwrap.dedent(GREEK), encoding="utf-8")
    assert [f.message for f in check_issue(folder, settings) if "pl" in f.message] == [
        f"{folder}/issue.pl.md: 'pl' is not in languages of newsletter.toml, so it is never sent"]


def test_check_on_the_command_line(folder, workspace):
    greek_with(folder, "## Εκθέσεις\n", "")
    result = CliRunner().invoke(main, ["--config", str(workspace / "newsletter.toml"), "check",
                                       "2026-03-news", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["errors"] >= 1 and any("issue.el.md:" in f["message"]
                                         for f in report["findings"])


def test_fallbacks_are_offered_languages_without_circles(settings):
    assert settings.offered_languages == ("en", "el", "bg", "ca", "es")
    assert settings.fallback_chain("ca") == ["ca", "es", "en"]
    assert settings.fallback_chain("es-MX") == ["es", "en"]
    assert settings.fallback_chain("de") == settings.fallback_chain(None) == ["en"]
    config = settings.root / "newsletter.toml"
    config.write_text(config.read_text().replace('fallback = { ca = "es" }',
                                                 'fallback = { ca = "es", es = "ca" }'))
    with pytest.raises(ConfigError, match="ca → es → ca goes round in a circle"):
        load_settings(config, env={})
    config.write_text(config.read_text().replace('es = "ca"', 'es = "pt"'))
    with pytest.raises(ConfigError, match="fallback es → pt: both must be in languages"):
        load_settings(config, env={})


def test_a_placeholder_the_translation_dropped(folder, settings):
    greek_with(folder, "Νέα για {{first_name}}", "Νέα")
    greek_with(folder, "Αγαπητέ/ή {{first_name}}, καλώς", "Καλώς")
    assert errors(folder, settings) == [
        f"{folder}/issue.el.md:1: placeholder: {{{{first_name}}}} of the original (issue.md:1) "
        "is missing from the issue"]
