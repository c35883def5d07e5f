"""Signed links: purpose-bound, tamper-proof, rotatable; and the confirmation email."""

import string
import time

import pytest
from itsdangerous.encoding import base64_decode

from newsletter.config import load_settings
from newsletter.errors import ConfigError, InvalidToken, RenderError
from newsletter.store import Recipient
from newsletter.subscribers.optin import render_confirmation
from newsletter.tokens import Purpose, Token, confirm_url, make_token, read_token, unsubscribe_url
from tests.conftest import ROOT

OLD, NEW = "old-secret-key-0123456789", "new-secret-key-9876543210"


def settings_with(secret=NEW, previous=(), root=ROOT):
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET_KEY": secret}
                             if secret else {})
    return settings.model_copy(update={"previous_secret_keys": tuple(previous)})


def test_a_token_carries_purpose_subscriber_and_issue():
    settings = settings_with()
    token = make_token(settings, Purpose.UNSUBSCRIBE, 42, "2025-04-asit-highlights")
    assert read_token(settings, token, Purpose.UNSUBSCRIBE) == Token(
        Purpose.UNSUBSCRIBE, 42, "2025-04-asit-highlights")
    assert read_token(settings, make_token(settings, Purpose.CONFIRM, 7), Purpose.CONFIRM) \
        == Token(Purpose.CONFIRM, 7, None)


def test_links_are_urls_under_the_base_url():
    settings = settings_with()
    url = unsubscribe_url(settings, 42, "2025-04-asit-highlights")
    assert url.startswith("https://newsletter.asit-project.eu/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    assert read_token(settings, token, Purpose.UNSUBSCRIBE).subscriber_id == 42
    assert confirm_url(settings, 7).startswith("https://newsletter.asit-project.eu/confirm/")


def test_a_token_for_one_purpose_is_useless_for_another():
    settings = settings_with()
    with pytest.raises(InvalidToken):
        read_token(settings, make_token(settings, Purpose.CONFIRM, 7), Purpose.UNSUBSCRIBE)
    with pytest.raises(InvalidToken):
        read_token(settings, make_token(settings, Purpose.UNSUBSCRIBE, 7), Purpose.CONFIRM)


@pytest.mark.parametrize("damage", [lambda t: t[:-3] + "abc", lambda t: "x" + t[1:],
                                    lambda t: t.replace(".", ""), lambda _: "",
                                    lambda _: "é.é", lambda t: t + "=="])
def test_damaged_or_forged_tokens_are_refused(damage):
    settings = settings_with()
    token = make_token(settings, Purpose.UNSUBSCRIBE, 42)
    with pytest.raises(InvalidToken) as caught:
        read_token(settings, damage(token), Purpose.UNSUBSCRIBE)
    assert not caught.value.expired


@pytest.mark.parametrize("purpose", list(Purpose))
def test_a_token_has_one_spelling(purpose):
    """A 32-byte signature is 43 base64 characters with two unused bits at the end: a decoder
    ignores them, so three other spellings of a valid token would otherwise verify too."""
    settings = settings_with()
    token = make_token(settings, purpose, 42)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    other = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    signature, other_signature = (t.rsplit(".", 1)[1] for t in (token, other))
    assert base64_decode(signature) == base64_decode(other_signature)  # the same bytes
    with pytest.raises(InvalidToken):
        read_token(settings, other, purpose)


def test_a_token_signed_with_another_key_is_refused():
    token = make_token(settings_with(OLD), Purpose.UNSUBSCRIBE, 42)
    with pytest.raises(InvalidToken):
        read_token(settings_with(NEW), token, Purpose.UNSUBSCRIBE)


def test_rotation_keeps_old_links_working_and_signs_with_the_new_key():
    old_link = make_token(settings_with(OLD), Purpose.UNSUBSCRIBE, 42, "2025-04")
    rotated = settings_with(NEW, previous=[OLD])
    assert read_token(rotated, old_link, Purpose.UNSUBSCRIBE).subscriber_id == 42
    new_link = make_token(rotated, Purpose.UNSUBSCRIBE, 42, "2025-04")
    assert read_token(settings_with(NEW), new_link, Purpose.UNSUBSCRIBE).issue == "2025-04"
    with pytest.raises(InvalidToken):
        read_token(settings_with(OLD), new_link, Purpose.UNSUBSCRIBE)


def test_confirmation_links_expire_and_unsubscribe_links_do_not(monkeypatch):
    settings = settings_with()
    confirm = make_token(settings, Purpose.CONFIRM, 7)
    leave = make_token(settings, Purpose.UNSUBSCRIBE, 7)
    later = time.time() + 8 * 24 * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken) as caught:
        read_token(settings, confirm, Purpose.CONFIRM)
    assert caught.value.expired
    assert read_token(settings, leave, Purpose.UNSUBSCRIBE).subscriber_id == 7


@pytest.mark.parametrize(("secret", "message"), [(None, "NEWSLETTER_SECRET_KEY"),
                                                 ("short", "too short")])
def test_a_missing_or_weak_secret_key_is_a_config_error(secret, message):
    with pytest.raises(ConfigError, match=message):
        make_token(settings_with(secret), Purpose.UNSUBSCRIBE, 1)


def test_the_confirmation_email():
    settings = settings_with()
    email = render_confirmation(settings, Recipient(7, "a@example.org", "Dr. Łucja <Nowak>", {}))
    assert email.subject == "Please confirm your subscription to ASIT Newsletter"
    assert email.text.startswith("Hello Łucja,\n")
    link = next(line for line in email.text.splitlines() if "/confirm/" in line)
    assert read_token(settings, link.rsplit("/", 1)[1], Purpose.CONFIRM).subscriber_id == 7
    assert f'href="{link}"' in email.html and "Łucja" in email.html
    assert "<Nowak>" not in email.html
    anonymous = render_confirmation(settings, Recipient(8, "b@example.org", "", {}),
                                    url="https://example.org/c/x")
    assert anonymous.text.startswith("Hello friend,")
    assert "https://example.org/c/x" in anonymous.html


def test_a_folder_without_templates_gets_the_themes_confirmation_email(tmp_path):
    (tmp_path / "newsletter.toml").write_text((ROOT / "newsletter.toml").read_text())
    email = render_confirmation(settings_with(root=tmp_path),
                                Recipient(1, "a@example.org", "", {}), url="https://e.org/c/x")
    assert email.subject and "https://e.org/c/x" in email.text


def test_an_override_without_a_subject_is_a_render_error(tmp_path):
    (tmp_path / "newsletter.toml").write_text((ROOT / "newsletter.toml").read_text())
    (tmp_path / "templates" / "emails").mkdir(parents=True)
    (tmp_path / "templates" / "emails" / "confirm.txt.j2").write_text("Hello {{ first_name }}\n")
    with pytest.raises(RenderError, match=r"confirm\.txt\.j2: set a subject"):
        render_confirmation(settings_with(root=tmp_path), Recipient(1, "a@example.org", "", {}))
