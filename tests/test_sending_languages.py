"""One send, many languages: each subscriber gets exactly one message, in their language, else
its fallback, else the original; on SQLite and PostgreSQL, through the real engine."""

import email
import email.policy
import textwrap

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from newsletter.authoring.render import render_edition
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.sending.engine import SendOptions, content_hash, plan_send, send_issue
from newsletter.store import Status, Store, Subscriber
from newsletter.store.ledger import Ledger
from newsletter.transports.outbox import OutboxTransport
from tests.helpers import write_issue

SLUG = "2026-03-news"
ORIGINAL = """\
    ---
    subject: "News for {{first_name}}"
    preheader: "Training and reports"
    date: 2026-03-02
    ---
    Dear {{first_name}}, welcome.

    ## Training

    A course in [Sofia](https://example.org/sofia).
    """
TRANSLATIONS = {
    "el": ("Νέα για {{first_name}}", "Εκπαίδευση και εκθέσεις", "Αγαπητέ/ή {{first_name}}",
           "Εκπαίδευση", "Ένα σεμινάριο στη [Σόφια](https://example.org/sofia)."),
    "es": ("Noticias para {{first_name}}", "Formación e informes", "Querido/a {{first_name}}",
           "Formación", "Un curso en [Sofía](https://example.org/sofia)."),
}
# subscriber language → the version they must get (bg and de have none; ca falls back to es)
READERS = {None: "en", "el": "el", "el-GR": "el", "es": "es", "ca": "es", "bg": "en", "de": "en"}


def translation(subject, preheader, greeting, heading, text):
    return textwrap.dedent(f"""\
        ---
        subject: "{subject}"
        preheader: "{preheader}"
        date: 2026-03-02
        ---
        {greeting}, welcome.

        ## {heading}

        {text}
        """)


@pytest.fixture
def settings(workspace, database_url):
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace(
        'languages = ["es"]', 'languages = ["el", "bg", "ca", "es"]\nfallback = { ca = "es" }'))
    folder = write_issue(workspace, SLUG, ORIGINAL)
    for language, parts in TRANSLATIONS.items():
        (folder / f"issue.{language}.md").write_text(translation(*parts), encoding="utf-8")
    return load_settings(config, env={"NEWSLETTER_SECRET_KEY": "a-test-secret-of-some-length",
                                      "NEWSLETTER_DATABASE_URL": database_url})


@pytest.fixture
def store(settings):
    with Store.open(settings.database_url) as opened:
        for number, language in enumerate(READERS):
            added = opened.add(f"reader{number}@example.org", name=f"Reader {number}",
                               status=Status.ACTIVE)
            with opened.engine.begin() as connection:
                connection.execute(update(Subscriber).where(Subscriber.id == added.id)
                                   .values(language=language))
        yield opened


def received(outbox):
    messages = {}
    for path in sorted(outbox.rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        address = message["To"].addresses[0].addr_spec
        assert address not in messages, f"{address} got two messages"
        messages[address] = message
    return messages


def test_each_reader_gets_one_message_in_their_language(settings, store, tmp_path):
    edition = render_edition(settings.issues_dir / SLUG, settings)
    assert list(edition.versions) == ["en", "el", "es"]  # bg has no translation, ca falls back
    ledger = Ledger(store)
    planned, new = plan_send(edition, settings, ledger)
    assert (planned, new) == (len(READERS), True)
    report = send_issue(edition, settings, ledger, OutboxTransport(tmp_path / "outbox"),
                        SendOptions(concurrency=3))
    assert report.complete and report.counts["sent"] == len(READERS)

    messages = received(tmp_path / "outbox")
    assert len(messages) == len(READERS)
    for number, language in enumerate(READERS):
        message = messages[f"reader{number}@example.org"]
        version = READERS[language]
        assert message["Content-Language"] == version
        expected = {"en": "News for", "el": "Νέα για", "es": "Noticias para"}[version]
        assert str(message["Subject"]).startswith(expected), (language, message["Subject"])
        html = message.get_body(("html",)).get_content()
        assert f'lang="{version}"' in html

    counts = ledger.languages(SLUG)
    assert {language: by_status["sent"] for language, by_status in counts.items()} == {
        "en": 3, "el": 2, "es": 2}


def test_the_version_is_chosen_once_at_planning(settings, store, tmp_path):
    """A reader who changes language mid-send still gets the version planned for them, so
    that a resumed send or another worker never sends a second version."""
    edition = render_edition(settings.issues_dir / SLUG, settings)
    ledger = Ledger(store)
    plan_send(edition, settings, ledger)
    with store.engine.begin() as connection:
        connection.execute(update(Subscriber).values(language="es"))
    send_issue(edition, settings, ledger, OutboxTransport(tmp_path / "outbox"), SendOptions())
    languages = {m["Content-Language"] for m in received(tmp_path / "outbox").values()}
    assert languages == {"en", "el", "es"}


def test_an_edited_translation_stops_a_resume(settings, store, tmp_path):
    folder = settings.issues_dir / SLUG
    edition = render_edition(folder, settings)
    ledger = Ledger(store)
    plan_send(edition, settings, ledger)
    assert ledger.send(SLUG).content_hash == content_hash(edition)
    greek = folder / "issue.el.md"
    greek.write_text(greek.read_text().replace("welcome", "καλώς ήρθατε"), encoding="utf-8")
    assert content_hash(render_edition(folder, settings)) != ledger.send(SLUG).content_hash
    result = CliRunner().invoke(main, ["--config", str(settings.root / "newsletter.toml"),
                                       "send", SLUG, "--yes"],
                                env={"NEWSLETTER_SECRET_KEY": settings.secret_key,
                                     "NEWSLETTER_DATABASE_URL": settings.database_url})
    assert result.exit_code == 1 and "changed since its send began" in result.output


def test_without_translations_the_hash_is_the_original_one(settings):
    edition = render_edition(settings.issues_dir / SLUG, settings)
    assert content_hash(edition.original) == content_hash(
        type(edition)({"en": edition.original}))


def test_status_and_proofs_by_language(settings, store, tmp_path):
    env = {"NEWSLETTER_SECRET_KEY": settings.secret_key,
           "NEWSLETTER_DATABASE_URL": settings.database_url,
           "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox")}

    def run(*args):
        return CliRunner().invoke(main, ["--config", str(settings.root / "newsletter.toml"),
                                         *args], env=env, catch_exceptions=False)

    result = run("send", SLUG, "--test-to", "editor@example.org", "--language", "all")
    assert result.exit_code == 0, result.output
    assert [line.split(" sent")[0] for line in result.output.splitlines()] == [
        "proof (en)", "proof (el)", "proof (es)"]
    assert run("send", SLUG, "--test-to", "e@example.org", "--language", "bg").exit_code == 2

    assert run("send", SLUG, "--yes").exit_code == 0
    status = run("status", SLUG)
    assert "by language: en 3 (3 sent), el 2 (2 sent), es 2 (2 sent)" in status.output
    document = __import__("json").loads(run("status", SLUG, "--json").output)
    assert document["languages"]["el"] == {"sent": 2}
