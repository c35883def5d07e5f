from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
[newsletter]
name = "Test News"
from = "Test <news@example.org>"
base_url = "https://news.example.org/"
"""


def test_minimal_config_gets_defaults_relative_to_its_folder(tmp_path):
    settings = load_settings(write_config(tmp_path, MINIMAL), env={})
    assert settings.base_url == "https://news.example.org"
    assert settings.transport == "outbox"
    assert settings.outbox_dir == tmp_path / "outbox"
    assert settings.database_url == f"sqlite:///{tmp_path / 'subscribers' / 'newsletter.db'}"
    assert settings.domain == "example.org"
    assert settings.issues_dir == tmp_path / "issues"


def test_environment_overrides_win(tmp_path):
    env = {"NEWSLETTER_BASE_URL": "https://other.example.org", "NEWSLETTER_TRANSPORT": "ses",
           "NEWSLETTER_SECRET_KEY": "s3cret", "NEWSLETTER_DATABASE_URL": "sqlite:///x.db",
           "NEWSLETTER_OUTBOX_DIR": "mail"}
    settings = load_settings(write_config(tmp_path, MINIMAL), env=env)
    assert (settings.base_url, settings.transport, settings.secret_key) == (
        "https://other.example.org", "ses", "s3cret")
    assert settings.database_url == "sqlite:///x.db"
    assert settings.outbox_dir == tmp_path / "mail"


def test_config_path_from_environment(tmp_path):
    path = write_config(tmp_path, MINIMAL)
    assert load_settings(env={"NEWSLETTER_CONFIG": str(path)}).name == "Test News"


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="--config PATH or set NEWSLETTER_CONFIG"):
        load_settings(tmp_path / "nope.toml", env={})


def test_every_bad_key_is_named(tmp_path):
    text = MINIMAL.replace('base_url = "https://news.example.org/"', 'colour = "red"') + """
[brand]
primary_color = "blue"
[[footer.partners]]
name = "Partner"
url = "partner.org"
"""
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, text), env={})
    message = str(caught.value)
    assert "newsletter.base_url: Field required (or set NEWSLETTER_BASE_URL)" in message
    assert "newsletter.colour: unknown key" in message
    assert "brand.primary_color: expected a colour like #1d3a6e, got 'blue'" in message
    assert "footer.partners.0.url: expected an absolute http(s) URL" in message


def test_bad_sender_and_transport(tmp_path):
    text = MINIMAL.replace("Test <news@example.org>", "not an address") + 'transport = "smtp"\n'
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, text), env={})
    assert "newsletter.from: expected an address" in str(caught.value)
    assert "newsletter.transport: Input should be 'outbox' or 'ses'" in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"newsletter\.toml: .*line 2"):
        load_settings(write_config(tmp_path, "[newsletter]\nname = \n"), env={})


def test_unknown_table(tmp_path):
    with pytest.raises(ConfigError, match="brandd: unknown table"):
        load_settings(write_config(tmp_path, MINIMAL + "[brandd]\n"), env={})
