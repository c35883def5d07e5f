"""A newsletter folder of one's own: `init`, the packaged theme and a folder's overrides of it."""

import datetime as dt
import re
import tomllib

import pytest
from click.testing import CliRunner

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import layouts, render_issue
from newsletter.authoring.scaffold import STARTER_FILES, NewFolder, create_newsletter
from newsletter.cli import main
from newsletter.config import (
    THEME_DIR,
    Brand,
    Footer,
    Link,
    Settings,
    Topic,
    load_settings,
    settings_from_document,
)
from newsletter.errors import NewsletterError
from tests.conftest import ROOT

VALUES = ["--name", "Kraków Notes", "--from", "Notes <notes@example.org>",
          "--base-url", "https://notes.example.org"]


def invoke(*args, cwd=None):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path):
    result = invoke("init", str(tmp_path / "notes"), *VALUES)
    assert result.exit_code == 0, result.output
    return tmp_path / "notes"


def settings_of(folder):
    return load_settings(folder / "newsletter.toml", env={})


def test_init_makes_a_folder_whose_first_issue_passes_check(folder):
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == \
        sorted([*STARTER_FILES, f"issues/{dt.date.today():%Y-%m}-welcome-to-krakow-notes/issue.md"])
    settings = settings_of(folder)
    assert (settings.name, settings.sender, settings.base_url) == (
        "Kraków Notes", "Notes <notes@example.org>", "https://notes.example.org")
    assert settings.transport == "outbox" and settings.secret_key is None
    issue = next((folder / "issues").iterdir()).name
    result = CliRunner().invoke(main, ["--config", str(folder / "newsletter.toml"), "check",
                                       issue])
    assert result.exit_code == 0 and "0 error(s), 0 warning(s)" in result.output
    assert "subscribers/*.db" in (folder / ".gitignore").read_text()
    assert "# Kraków Notes" in (folder / "README.md").read_text()


def test_init_documents_every_key_and_writes_no_secret(folder):
    text = (folder / "newsletter.toml").read_text()
    keys = set(re.findall(r"^#? ?(\w+) = ", text, flags=re.M))
    tables = {"newsletter": Settings, "brand": Brand, "footer": Footer, "partners": Link,
              "topics": Topic}
    internal = {"root", "brand", "footer", "secret_key", "partners", "social", "translations",
                "topics"}
    for model in tables.values():
        names = {field.alias or name for name, field in model.model_fields.items()}
        assert names - internal <= keys, f"undocumented in newsletter.toml: {names - keys}"
    assert "NEWSLETTER_SECRET_KEY" in text and not re.search(r"^secret_key", text, flags=re.M)
    assert "[[footer.social]]" in text and "[[footer.partners]]" in text
    examples = "\n".join(line.removeprefix("# ") for line in text.splitlines()
                         if not line.startswith("# ") or re.match(r"# (\w+ = |\[)", line))
    every = settings_from_document(tomllib.loads(examples), folder / "x.toml", env={})
    assert every.footer.partners and every.rate == 14  # every example, uncommented, is valid
    assert every.topics["training"].in_language("fr") == "Formations et événements"


def test_init_never_overwrites(folder):
    before = (folder / "newsletter.toml").read_text()
    result = invoke("init", str(folder), *VALUES)
    assert result.exit_code == 1 and "already is a newsletter" in result.output
    assert (folder / "newsletter.toml").read_text() == before

    other = folder.parent / "other"
    (other / "subscribers").mkdir(parents=True)
    (other / "subscribers" / "sample.csv").write_text("mine\n")
    result = invoke("init", str(other), *VALUES)
    assert result.exit_code == 1 and "already has subscribers/sample.csv" in result.output
    assert sorted(p.name for p in other.rglob("*")) == ["sample.csv", "subscribers"]
    assert (other / "subscribers" / "sample.csv").read_text() == "mine\n"


def test_init_asks_on_a_terminal_only_and_checks_what_it_is_given(tmp_path):
    result = invoke("init", str(tmp_path / "a"), "--name", "A")  # stdin is not a terminal
    assert result.exit_code == 2 and "--from is required (no terminal to ask on)" in result.output
    result = invoke("init", str(tmp_path / "b"), "--name", "B", "--from", "not an address",
                    "--base-url", "https://b.example.org")
    assert result.exit_code == 2 and "newsletter.from: expected an address" in result.output
    result = invoke("init", str(tmp_path / "c"), "--name", "C", "--from", "c@example.org",
                    "--base-url", "ftp://c")
    assert result.exit_code == 2 and "newsletter.base_url" in result.output
    assert not any(tmp_path.iterdir())


def test_init_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = create_newsletter(tmp_path, NewFolder("X", "x@example.org", "https://x.org"),
                              dt.date(2026, 1, 5))
    assert files[-1] == tmp_path / "issues/2026-01-welcome-to-x/issue.md"
    with pytest.raises(NewsletterError, match="already is a newsletter"):
        create_newsletter(tmp_path, NewFolder("X", "x@example.org", "https://x.org"),
                          dt.date(2026, 1, 5))


def test_a_folder_overrides_the_theme_file_by_file(folder):
    settings = settings_of(folder)
    issue = load_issue(find_issue(settings, next((folder / "issues").iterdir()).name), settings)
    assert "You receive this because" in render_issue(issue, settings).html
    footer = folder / "templates" / "partials" / "footer.mjml.j2"
    footer.parent.mkdir(parents=True)
    footer.write_text((THEME_DIR / "partials/footer.mjml.j2").read_text().replace(
        "You receive this because", "Sent to you because"))
    html = render_issue(issue, settings).html  # the same cached environment sees the new file
    assert "Sent to you because" in html and "You receive this because" not in html
    assert "Welcome to Kraków Notes" in html  # the rest still comes from the theme
    footer.unlink()
    assert "You receive this because" in render_issue(issue, settings).html


def test_own_layouts_join_the_themes(folder):
    settings = settings_of(folder)
    assert layouts(settings) == ["default", "letter"]
    (folder / "templates" / "layouts").mkdir(parents=True)
    (folder / "templates" / "layouts" / "plain.mjml.j2").write_text("<mjml></mjml>")
    assert layouts(settings) == ["default", "letter", "plain"]


def test_templates_copy_and_list(folder):
    def run(*args):
        return CliRunner().invoke(main, ["--config", str(folder / "newsletter.toml"),
                                         "templates", *args], catch_exceptions=False)

    result = run("copy", "partials/footer.mjml.j2", "web")
    assert result.exit_code == 0, result.output
    own = sorted(p.relative_to(folder / "templates").as_posix()
                 for p in (folder / "templates").rglob("*") if p.is_file())
    assert own == ["partials/footer.mjml.j2",
                   *sorted(f"web/{p.name}" for p in (THEME_DIR / "web").iterdir())]
    assert (folder / "templates/web/base.html.j2").read_text() == \
        (THEME_DIR / "web/base.html.j2").read_text()
    listed = run("list").output
    assert "custom  partials/footer.mjml.j2" in listed
    assert re.search(r"^ +layouts/default\.mjml\.j2$", listed, flags=re.M)

    (folder / "templates/partials/footer.mjml.j2").write_text("mine")
    result = run("copy", "partials")
    assert result.exit_code == 1 and "already has partials/footer.mjml.j2" in result.output
    assert (folder / "templates/partials/footer.mjml.j2").read_text() == "mine"
    assert not (folder / "templates/partials/head.mjml.j2").exists()  # nothing copied
    assert run("copy", "partials", "--force").exit_code == 0
    assert (folder / "templates/partials/footer.mjml.j2").read_text() != "mine"

    result = run("copy", "partials/nope.mjml.j2")
    assert result.exit_code == 1 and "no template 'partials/nope.mjml.j2'" in result.output


def test_the_asit_folder_customises_only_its_scaffold(settings):
    own = sorted(p.relative_to(ROOT / "templates").as_posix()
                 for p in (ROOT / "templates").rglob("*") if p.is_file())
    assert own == ["new-issue.md.j2"]
    assert settings.template_dirs == (ROOT / "templates", THEME_DIR)
