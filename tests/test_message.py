"""message.py: raw MIME bytes per recipient, checked by parsing them back with the stdlib."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import html
import re
import time
from collections.abc import Callable
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

import hypothesis
import pytest
from hypothesis import strategies as st

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import RenderedIssue, render_issue
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError, InvalidAddress, NewsletterError
from newsletter.message import (
    MessageTemplate,
    Recipient,
    build_template,
    header_address,
    sample_message,
)

SLUG = "2025-04-asit-highlights"
BASE = "https://newsletter.asit-project.eu"
UNSUBSCRIBE = f"{BASE}/unsubscribe/tok.EN-123_abc"
PREFERENCES = f"{BASE}/preferences/tok.PR-456_def"
WEB = f"{BASE}/archive/{SLUG}/"
# Every placeholder, with and without inner spaces, at the start, the end and side by side.
GREETING_TEXT = "{{first_name}}: Dear {{ first_name }} ({{name}}, {{email}}){{web_url}}\n"
GREETING_HTML = '<p>Dear {{first_name}} ({{name}}, <a href="mailto:{{email}}">{{email}}</a>)</p>'


@pytest.fixture(scope="module")
def asit_settings() -> Settings:
    return load_settings(Path(__file__).parents[1] / "newsletter.toml", env={})


@pytest.fixture(scope="module")
def asit(asit_settings: Settings) -> RenderedIssue:
    return render_issue(load_issue(find_issue(asit_settings, SLUG), asit_settings), asit_settings)


@pytest.fixture(scope="module")
def greeting(asit: RenderedIssue) -> RenderedIssue:
    """The ASIT issue with every placeholder added to both parts."""
    return dataclasses.replace(asit, text=GREETING_TEXT + asit.text + "Bye {{first_name}}",
                               html=asit.html.replace("<body", GREETING_HTML + "<body", 1))


def recipient(email_address: str = "anna@example.org", **fields: str) -> Recipient:
    fields.setdefault("unsubscribe_url", UNSUBSCRIBE)
    return Recipient(email_address, **fields)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The decoded text and HTML parts, with the wire's CRLF turned back into newlines."""
    text, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html_part is not None
    return (text.get_content().replace("\r\n", "\n"),
            html_part.get_content().replace("\r\n", "\n"))


def to_mailbox(raw: bytes) -> tuple[str, str]:
    """The To display name and address, decoded as RFC 2047 §6.2 says: whitespace between two
    encoded words is dropped. (Python 3.11's policy.default parser keeps it in address
    headers, so it splits long non-ASCII names with spaces: CPython gh-128110.)"""
    name, address = parseaddr(email.message_from_bytes(raw, policy=email.policy.compat32)["To"])
    return str(make_header(decode_header(name))), address


def fill(template: str, **values: str) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values[m.group(1)], template)


def assert_lines_short(raw: bytes, limit: int = 998) -> None:
    assert raw.count(b"\n") == raw.count(b"\r\n"), "bare LF"
    assert max(len(line) for line in raw.split(b"\r\n")) <= limit


def subject_header(raw: bytes) -> bytes:
    """The raw Subject header with its continuation lines."""
    match = re.search(rb"(?m)^Subject: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*", raw)
    assert match is not None
    return match.group(0)


def body_lines(raw: bytes) -> list[bytes]:
    return raw.partition(b"\r\n\r\n")[2].split(b"\r\n")


# ---------------------------------------------------------------- headers


def test_every_header_is_present_and_correct(asit: RenderedIssue, asit_settings: Settings):
    before = time.time()
    message = parse(build_template(asit, asit_settings).personalise(
        recipient(name="Anna Kovacs", first_name="Anna")))
    assert message["From"] == "ASIT Project <newsletter@asit-project.eu>"
    assert message["To"] == "Anna Kovacs <anna@example.org>"
    assert message["Subject"] == asit.subject
    assert message["Reply-To"] == "ASIT Project <info@asit-project.eu>"
    assert before - 1 <= parsedate_to_datetime(message["Date"]).timestamp() <= time.time()
    assert re.fullmatch(r"<[^<>@\s]+@asit-project\.eu>", message["Message-ID"])
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "ASIT Newsletter <asit-newsletter.asit-project.eu>"
    assert message["Feedback-ID"] == f"{SLUG}:asit-newsletter:newsletter:asit-project-eu"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert {(p.get_content_charset(), p["Content-Transfer-Encoding"]) for p in parts} == {
        ("utf-8", "quoted-printable")}
    assert message.defects == [] and all(p.defects == [] for p in parts)


def test_each_header_appears_once(asit: RenderedIssue, asit_settings: Settings):
    message = parse(build_template(asit, asit_settings).personalise(recipient()))
    assert sorted(message.keys()) == sorted([
        "From", "To", "Subject", "Reply-To", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
        "List-Unsubscribe-Post", "Feedback-ID", "Content-Language", "MIME-Version", "Content-Type"])


def test_mailto_unsubscribe_when_configured(asit: RenderedIssue, asit_settings: Settings):
    configured = asit_settings.model_copy(
        update={"unsubscribe_mailto": "Unsubscribe <leave@asit-project.eu>", "reply_to": None})
    message = parse(build_template(asit, configured).personalise(recipient()))
    assert message["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE}>, <mailto:leave@asit-project.eu?subject=unsubscribe>")
    assert "Reply-To" not in message


def test_list_id_and_feedback_id_can_be_chosen(asit: RenderedIssue, asit_settings: Settings):
    template = build_template(asit, asit_settings, list_id="news.asit-project.eu",
                              feedback_id="april:asitnews")
    message = parse(template.personalise(recipient()))
    assert message["List-Id"] == "ASIT Newsletter <news.asit-project.eu>"
    assert message["Feedback-ID"] == "april:asitnews"
    without = parse(build_template(asit, asit_settings, feedback_id="").personalise(recipient()))
    assert "Feedback-ID" not in without


@pytest.mark.parametrize("option", [{"list_id": "no dots"}, {"list_id": "a.b>"},
                                    {"feedback_id": "a:b:c:d:e"}, {"feedback_id": "a b:c"}])
def test_bad_list_id_or_feedback_id_is_refused(asit, asit_settings, option):
    with pytest.raises(ValueError):
        build_template(asit, asit_settings, **option)


@pytest.fixture(scope="module")
def with_subject(asit: RenderedIssue, asit_settings: Settings) -> Callable[[str], bytes]:
    """A message of the ASIT issue under another subject (a function: Hypothesis prints it)."""
    return lambda subject: build_template(dataclasses.replace(asit, subject=subject),
                                          asit_settings).personalise(recipient())


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(subject=st.text(st.characters(exclude_categories=("Cs",)), min_size=1))
def test_any_subject_round_trips(with_subject: Callable[[str], bytes], subject: str):
    hypothesis.assume("{{" not in subject)  # placeholders: tested below
    raw = with_subject(subject)
    assert raw.partition(b"\r\n\r\n")[0].isascii()
    assert_lines_short(subject_header(raw), 78)
    expected = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", subject).split())
    assert parse(raw)["Subject"] == expected


def test_non_ascii_subject_is_encoded(with_subject: Callable[[str], bytes]):
    subject = "Novinky: obchodovanie s ľuďmi — Ελληνικά νέα για την εμπορία ανθρώπων και άλλα"
    raw = with_subject(subject)
    assert raw.partition(b"\r\n\r\n")[0].isascii()
    assert b"=?utf-8?" in subject_header(raw)
    assert_lines_short(subject_header(raw), 78)
    assert parse(raw)["Subject"] == subject


@pytest.fixture(scope="module")
def personal_subject(asit: RenderedIssue, asit_settings: Settings) -> MessageTemplate:
    subject = "{{ first_name }}, the ASIT news for {{name}} <{{email}}>"
    return build_template(dataclasses.replace(asit, subject=subject), asit_settings)


def test_the_subject_is_personalised(personal_subject: MessageTemplate):
    message = parse(personal_subject.personalise(recipient(name="Anna Kovacs",
                                                           first_name="Anna")))
    assert message["Subject"] == "Anna, the ASIT news for Anna Kovacs <anna@example.org>"
    unnamed = parse(personal_subject.personalise(recipient("jan@example.org")))
    assert unnamed["Subject"] == "friend, the ASIT news for friend <jan@example.org>"


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(name=st.text(st.characters(exclude_categories=("Cs",)), max_size=120))
def test_any_name_in_the_subject_stays_in_the_subject(personal_subject: MessageTemplate, name):
    """Control characters and line breaks in a name cannot add a header or break one."""
    raw = personal_subject.personalise(recipient(name=name, first_name=name))
    head = raw.partition(b"\r\n\r\n")[0]
    assert head.isascii()
    assert_lines_short(subject_header(raw), 78)
    one_line = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", name).split()) or "friend"
    message = parse(raw)
    assert message["Subject"] == f"{one_line}, the ASIT news for {one_line} <anna@example.org>"
    assert message.keys().count("Subject") == 1 and message.defects == []


def test_attribute_values_are_one_line_text(asit: RenderedIssue, asit_settings: Settings):
    issue = dataclasses.replace(asit, subject="{{city}}: {{ members }}",
                                text="{{city}} has {{members}} members{{missing}}.\n" + asit.text)
    template = build_template(issue, asit_settings)
    raw = template.personalise(recipient(attributes={"city": "Kraków\r\nBcc: x@example.org",
                                                     "members": 12}))
    message = parse(raw)
    assert message["Subject"] == "Kraków Bcc: x@example.org: 12" and "Bcc" not in message
    text, _ = bodies(message)
    assert text.startswith("Kraków Bcc: x@example.org has 12 members.\n")


def test_message_ids_are_unique(asit: RenderedIssue, asit_settings: Settings):
    templates = [build_template(asit, asit_settings) for _ in range(2)]
    ids = [parse(t.personalise(recipient()))["Message-ID"] for t in templates for _ in range(50)]
    assert len(set(ids)) == 100


def test_configured_address_that_cannot_be_sent_from(asit: RenderedIssue, asit_settings):
    bad = asit_settings.model_copy(update={"sender": "ASIT <žofia@asit-project.eu>"})
    with pytest.raises(ConfigError, match=r"newsletter\.from"):
        build_template(asit, bad)


# ---------------------------------------------------------------- bodies


def test_bodies_decode_to_the_rendered_issue(asit: RenderedIssue, asit_settings: Settings):
    raw = build_template(asit, asit_settings).personalise(recipient(preferences_url=PREFERENCES))
    text, html_body = bodies(parse(raw))
    links = {"web_url": WEB, "unsubscribe_url": UNSUBSCRIBE, "preferences_url": PREFERENCES}
    assert text == fill(asit.text, **links)
    assert html_body == fill(asit.html, **links)
    assert "{{" not in text + html_body
    assert f"Manage your preferences: {PREFERENCES}\n" in text
    assert re.search(f'<a href="{re.escape(PREFERENCES)}"[^>]*>Manage your preferences</a>',
                     html_body)


def test_without_a_preferences_link_the_footer_points_to_the_explanation(
        asit: RenderedIssue, asit_settings: Settings):
    """A message made without a subscriber's link (a hand-made Recipient) still links
    somewhere useful: the page that says where the personal link is."""
    text, html_body = bodies(parse(build_template(asit, asit_settings).personalise(recipient())))
    assert f"Manage your preferences: {BASE}/preferences/\n" in text
    assert f'<a href="{BASE}/preferences/" ' in html_body


def test_a_translations_web_url_is_its_own_archive_page(asit_settings: Settings):
    """Spanish readers who press "View in your browser" land on the Spanish archive page; a
    reader's own web_url still wins."""
    folder = find_issue(asit_settings, SLUG)
    spanish = render_issue(load_issue(folder, asit_settings, "es"), asit_settings)
    assert spanish.language == "es" and "{{web_url}}" in spanish.html
    template = build_template(spanish, asit_settings)
    text, html_body = bodies(parse(template.personalise(recipient(first_name="Ana"))))
    assert f"{WEB}es/" in text and f'href="{WEB}es/"' in html_body
    assert f'href="{WEB}"' not in html_body
    own = bodies(parse(template.personalise(recipient(web_url=f"{BASE}/elsewhere"))))[1]
    assert f'href="{BASE}/elsewhere"' in own and f"{WEB}es/" not in own
    original = render_issue(load_issue(folder, asit_settings), asit_settings)
    assert original.language == asit_settings.language
    assert f'href="{WEB}"' in bodies(parse(build_template(original, asit_settings).personalise(
        recipient())))[1]


def test_every_placeholder_is_filled(greeting: RenderedIssue, asit_settings: Settings):
    person = recipient("o'brien+news@example.org", name="Seán O'Brien & Co", first_name="Seán",
                       web_url=f"{BASE}/archive/x?a=1&b=2")
    text, html_body = bodies(parse(build_template(greeting, asit_settings).personalise(person)))
    values = {"first_name": "Seán", "name": "Seán O'Brien & Co",
              "email": "o'brien+news@example.org", "unsubscribe_url": UNSUBSCRIBE,
              "preferences_url": f"{BASE}/preferences/", "web_url": f"{BASE}/archive/x?a=1&b=2"}
    assert text == fill(greeting.text, **values)
    assert html_body == fill(greeting.html, **{k: html.escape(v) for k, v in values.items()})


def test_empty_names_fall_back(greeting: RenderedIssue, asit_settings: Settings):
    text, _ = bodies(parse(build_template(greeting, asit_settings).personalise(recipient())))
    assert text.startswith("friend: Dear friend (friend, anna@example.org)")
    assert parse(build_template(greeting, asit_settings).personalise(recipient()))["To"] == (
        "anna@example.org")


def test_values_are_html_escaped_in_html_only(greeting: RenderedIssue, asit_settings: Settings):
    evil = '<script>alert("x")</script>'
    raw = build_template(greeting, asit_settings).personalise(recipient(first_name=evil))
    text, html_body = bodies(parse(raw))
    assert f"Dear {evil} (" in text
    assert "<script" not in html_body
    assert "Dear &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; (" in html_body


def test_long_values_and_lines_stay_within_limits(asit: RenderedIssue, asit_settings: Settings):
    long_url = f"{BASE}/unsubscribe/" + "x" * 3000
    long_line = "é" * 2000 + "{{unsubscribe_url}}" + "y=" * 2000
    issue = dataclasses.replace(asit, text=long_line + "\n" + asit.text,
                                html=asit.html + long_line)
    raw = build_template(issue, asit_settings).personalise(
        recipient(unsubscribe_url=long_url, name="Ελένη " * 40))
    assert_lines_short(raw)
    assert all(len(line) <= 76 for line in body_lines(raw))
    message = parse(raw)
    assert "".join(message["List-Unsubscribe"].split()) == f"<{long_url}>"
    text, html_body = bodies(message)
    assert text.startswith(fill(long_line, unsubscribe_url=long_url) + "\n")
    assert html_body.endswith(fill(long_line, unsubscribe_url=long_url))


def test_long_plain_values_are_cut_into_soft_lines(asit: RenderedIssue, asit_settings: Settings):
    """Long values that need no escape (links, plain attributes) are only cut into lines, at
    any character, a space before a soft break included; they decode to themselves."""
    value = ("w" * 74 + " ") * 3 + "end"  # each 75-character line ends with a space
    issue = dataclasses.replace(asit, text="{{organisation}}\n" + asit.text,
                                html=asit.html + "{{organisation}}")
    raw = build_template(issue, asit_settings).personalise(
        recipient(attributes={"organisation": value}))
    assert all(len(line) <= 76 for line in body_lines(raw))
    assert raw.count(b"w =\r\n") == 6  # three lines in each part
    text, html_body = bodies(parse(raw))
    assert text.startswith(value + "\n") and html_body.endswith(value)


def test_real_issue_lines_are_short(asit: RenderedIssue, asit_settings: Settings):
    raw = build_template(asit, asit_settings).personalise(recipient())
    assert_lines_short(raw, 998)
    assert all(len(line) <= 76 for line in body_lines(raw))


# ---------------------------------------------------------------- names and addresses


@pytest.mark.parametrize("name", [
    "Žofia Nováková", "Ελένη Παπαδοπούλου", "Παναγιώτα-Ελευθερία Παπαδοπούλου-Κωνσταντινίδου",
    "李小龍", "Zoë 🌍 Ångström", "Doe, John", 'John "JD" Doe', "Back\\slash", "J. R. R. Tolkien",
    "=?utf-8?q?not_encoded?=", "(Mr) <Smith> @home; [x]: y", "x" * 200,
])
def test_display_names_round_trip(asit: RenderedIssue, asit_settings: Settings, name: str):
    raw = build_template(asit, asit_settings).personalise(recipient(name=name))
    assert raw.partition(b"\r\n\r\n")[0].isascii()
    assert_lines_short(raw)
    (address,) = parse(raw)["To"].addresses
    assert address.addr_spec == "anna@example.org"
    assert to_mailbox(raw) == (name, "anna@example.org")


def test_idn_domain_is_punycode(asit: RenderedIssue, asit_settings: Settings):
    raw = build_template(asit, asit_settings).personalise(
        recipient("anna@bücher.de", name="Anna"))
    assert parse(raw)["To"].addresses[0].addr_spec == "anna@xn--bcher-kva.de"
    assert header_address("info@παράδειγμα.ελ") == "info@xn--hxajbheg2az3al.xn--qxam"


@pytest.mark.parametrize("address", [
    "ελένη@example.gr", "no-at-sign", "two words@example.org", "anna@example.org\r\nBcc: x@y.z",
    "anna@", "@example.org", "anna@-bad-.org", "anna@exa_mple.org", "x" * 250 + "@a.org",
])
def test_unusable_addresses_are_refused(asit: RenderedIssue, asit_settings: Settings, address):
    with pytest.raises(InvalidAddress) as caught:
        build_template(asit, asit_settings).personalise(recipient(address))
    assert isinstance(caught.value, NewsletterError) and isinstance(caught.value, ValueError)
    assert caught.value.address == address


def test_non_ascii_local_part_says_why(asit: RenderedIssue, asit_settings: Settings):
    with pytest.raises(InvalidAddress, match="SMTPUTF8"):
        build_template(asit, asit_settings).personalise(recipient("ελένη@example.gr"))


def test_header_injection_is_impossible(greeting: RenderedIssue, asit_settings: Settings):
    attack = "Mallory\r\nBcc: victim@example.org\r\n\r\n<b>hi</b>"
    raw = build_template(greeting, asit_settings).personalise(
        recipient(name=attack, first_name=attack))
    message = parse(raw)
    assert "Bcc" not in message and not re.search(rb"(?m)^Bcc:", raw)
    assert to_mailbox(raw)[0] == "Mallory Bcc: victim@example.org <b>hi</b>"
    with pytest.raises(ValueError):
        build_template(greeting, asit_settings).personalise(
            recipient(unsubscribe_url=f"{BASE}/u/x\r\nBcc: victim@example.org"))


@pytest.fixture(scope="module")
def greeting_template(greeting: RenderedIssue, asit_settings: Settings) -> MessageTemplate:
    return build_template(greeting, asit_settings)


printable = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=80)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(name=printable, first_name=printable)
def test_any_printable_name_round_trips(greeting_template: MessageTemplate, name, first_name):
    raw = greeting_template.personalise(recipient(name=name, first_name=first_name))
    assert_lines_short(raw)
    one_line_name, one_line_first = " ".join(name.split()), " ".join(first_name.split())
    assert to_mailbox(raw) == (one_line_name, "anna@example.org")
    text, html_body = bodies(parse(raw))
    first = one_line_first or "friend"
    assert f"Dear {first} ({one_line_name or 'friend'}, " in text
    assert f"Dear {html.escape(first)} (" in html_body


# ---------------------------------------------------------------- the sample


def test_sample_message(asit: RenderedIssue, asit_settings: Settings):
    message = parse(sample_message(asit, asit_settings))
    assert message["To"] == "Sample Reader <reader@example.org>"
    assert message["List-Unsubscribe"] == f"<{BASE}/unsubscribe/SAMPLE>"
    text, _ = bodies(message)
    assert f"{BASE}/unsubscribe/SAMPLE" in text and WEB in text
