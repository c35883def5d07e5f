"""``RenderedIssue`` + ``Recipient`` → raw RFC 5322 bytes: the per-recipient hot path of a send.

``build_template`` does the expensive work once per issue: it folds and encodes the fixed headers
and encodes both bodies as quoted-printable, ending a line (softly) before and after every
``{{placeholder}}``. ``MessageTemplate.personalise`` then encodes only a few short values (To,
Date, Message-ID, List-Unsubscribe and each placeholder's value, each on lines of its own) and
joins pre-encoded chunks: tens of thousands of messages a second on one core, where building an
``EmailMessage`` per recipient manages a few hundred.

Decisions:

- Addresses go into headers with the domain in IDNA (punycode, the stdlib's IDNA 2003 codec). A
  non-ASCII local part would need SMTPUTF8, which Amazon SES does not accept: ``InvalidAddress``,
  which the send engine records as a permanent failure for that recipient.
- Names are made one line (control characters and runs of whitespace become one space) in the
  header and the bodies alike; with address and URL checks this rules out header injection.
  In the HTML part every value is HTML-escaped; in the text part it is written as is.
- ``List-Id`` (RFC 2919): ``ASIT Newsletter <asit-newsletter.asit-project.eu>``, the name's slug
  under the sending domain, stable across issues.
- ``Feedback-ID`` (Gmail's ``a:b:c:SenderId``): ``issue-slug:list-label:newsletter:sender`` where
  ``sender`` is the sending domain as a slug of at most 15 characters (``asit-project-eu``).
"""

from __future__ import annotations

import html
import itertools
import re
import secrets
import time
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from email import base64mime, quoprimime
from email.header import Header
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import quote

from newsletter.config import Settings
from newsletter.errors import ConfigError, InvalidAddress
from newsletter.values import FIELD_RE

# Quoted-printable width before the soft break appended after a chunk: lines stay ≤ 76 (RFC 2045).
QP_WIDTH = 75
# Longest piece of a URL on one header line; longer URLs are folded inside the angle brackets,
# where RFC 2369 §2 says whitespace is ignored. Keeps every line under SES's 1,000 characters.
URL_PIECE = 900
MAX_ADDRESS = 254  # RFC 5321 path limit
MAX_PLAIN_NAME = 64  # longer display names are RFC 2047-encoded so that they can be folded

_ATEXT = "-A-Za-z0-9!#$%&'*+/=?^_`{|}~"
_ADDRESS = re.compile("[" + _ATEXT + ".]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_PLAIN_PHRASE = re.compile("[" + _ATEXT + " ]+")
_LIST_ID = re.compile("[" + _ATEXT + "]+(?:\\.[" + _ATEXT + "]+)+")
_FEEDBACK_ID = re.compile(r"(?:[!-9;-~]*:){0,3}[!-9;-~]+")  # printable ASCII but ':' separates
_URL = re.compile(r"[!#-;=?-~]+")  # printable ASCII without space, '"', '<' or '>'
_QP_SAFE = re.compile("[ -<>-~]*")  # needs no quoted-printable escape, only line breaks


@dataclass(frozen=True)
class RenderedIssue:
    """An issue as email, placeholders intact: what ``authoring.render`` makes of an ``Issue``."""

    slug: str
    subject: str
    preheader: str
    html: str
    text: str
    language: str = ""  # BCP 47, sent as Content-Language; "" leaves that header out


@dataclass(frozen=True)
class Edition:
    """An issue as it goes out: the original and each translation, rendered, by language.

    Each reader gets one version: their language's, else the first of its fallbacks that
    exists, else the original (``version_for``)."""

    versions: Mapping[str, RenderedIssue]  # language → version, the original first

    @classmethod
    def of(cls, issue: RenderedIssue | Edition) -> Edition:
        """An edition as it is, or a single rendered issue as a one-language edition."""
        return issue if isinstance(issue, Edition) else cls({issue.language: issue})

    @property
    def original(self) -> RenderedIssue:
        return next(iter(self.versions.values()))

    @property
    def slug(self) -> str:
        return self.original.slug

    def version_for(self, settings: Settings, reader_language: str | None) -> str:
        """The language of the version a reader of ``reader_language`` (None: unknown) gets."""
        return version_for(settings, self.versions, reader_language)


def version_for(settings: Settings, languages: Collection[str],
                reader_language: str | None) -> str:
    """Of the versions in ``languages``, the language a reader of ``reader_language`` (None:
    unknown) gets: theirs, else the first of its fallbacks there, else the original."""
    chain = settings.fallback_chain(reader_language)
    return next((language for language in chain if language in languages), settings.language)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Recipient:
    """One subscriber as a message needs them.

    In the bodies an empty ``first_name`` or ``name`` reads ``settings.first_name_fallback``, an
    empty ``web_url`` is the issue's archive page and an empty ``preferences_url`` the page that
    explains where the personal link is; an empty ``name`` leaves To a bare address.
    """

    email: str
    _: KW_ONLY
    unsubscribe_url: str
    preferences_url: str = ""  # empty: {base_url}/preferences/, which names no one
    web_url: str = ""  # empty: the issue's archive page
    name: str = ""
    first_name: str = ""
    attributes: Mapping[str, Any] | None = None  # {{organisation}} etc.; missing ones are empty


class MessageTemplate:
    """An issue pre-encoded as MIME, with named slots for what differs per recipient.

    ``parts`` holds pre-encoded bytes and slot names: header slots (``"To"``) and body slots
    (``"html:web_url"``). Make one with ``build_template``; ``personalise`` is thread-safe.
    """

    def __init__(self, parts: tuple[bytes | str, ...], *, domain: str, fallback: str,
                 web_url: str, mailto: str, subject: str = "", preferences_url: str = ""):
        self.parts = parts
        self._subject = subject  # with placeholders, when "Subject" is a slot
        self._fills = tuple((slot, slot.partition(":")[2], slot.startswith("html:"))
                            for slot in dict.fromkeys(p for p in parts if isinstance(p, str))
                            if ":" in slot)
        self._id_suffix = f".{secrets.token_hex(8)}@{domain}>\r\n".encode()
        self._serial = itertools.count(1)
        self._fallback = fallback
        self._web_url = web_url
        self._preferences_url = preferences_url
        self._mailto = mailto.encode()
        self._date = (0, b"")

    def personalise(self, recipient: Recipient) -> bytes:
        """The complete message for one recipient; InvalidAddress if it cannot be addressed."""
        name = _one_line(recipient.name)
        fields = {
            "first_name": _one_line(recipient.first_name) or self._fallback,
            "name": name or self._fallback,
            "email": recipient.email,
            "unsubscribe_url": _checked_url(recipient.unsubscribe_url),
            "preferences_url": _checked_url(recipient.preferences_url)
            if recipient.preferences_url else self._preferences_url,
            "web_url": _checked_url(recipient.web_url) if recipient.web_url else self._web_url,
        }
        values = {
            "To": b"To: %s\r\n" % _mailbox(name, header_address(recipient.email)).encode(),
            "Date": self._date_line(),
            "Message-ID": b"Message-ID: <%d" % next(self._serial) + self._id_suffix,
            "List-Unsubscribe": b"List-Unsubscribe: %s%s\r\n"
                                % (_angle_url(fields["unsubscribe_url"]), self._mailto),
        }
        attributes = recipient.attributes or {}
        if self._subject:
            values["Subject"] = _subject(FIELD_RE.sub(
                lambda m: _field(fields, attributes, m.group(1)), self._subject))
        for slot, field, in_html in self._fills:
            value = _field(fields, attributes, field)
            values[slot] = _qp_value(html.escape(value) if in_html else value)
        return b"".join([values[p] if isinstance(p, str) else p for p in self.parts])

    def _date_line(self) -> bytes:
        """The Date header, formatted once a second: formatting costs more than the rest."""
        now = int(time.time())
        second, line = self._date
        if second != now:
            line = b"Date: %s\r\n" % format_datetime(datetime.fromtimestamp(now, UTC)).encode()
            self._date = (now, line)
        return line


def build_template(rendered: RenderedIssue, settings: Settings, *, list_id: str | None = None,
                   feedback_id: str | None = None) -> MessageTemplate:
    """Encode once per issue everything that is the same for every recipient.

    ``list_id`` replaces the default List-Id identifier (``label.example.org``); ``feedback_id``
    the default Feedback-ID value, and ``""`` leaves that header out. ConfigError if a configured
    address cannot go in a header.
    """
    sender = _config_address("from", settings.sender)
    domain = sender.rpartition("@")[2].lower()
    list_id = list_id or f"{_slug(settings.name)}.{domain}"
    if not _LIST_ID.fullmatch(list_id):
        raise ValueError(f"List-Id must look like label.example.org, got {list_id!r}")
    if feedback_id is None:
        feedback_id = _feedback_id(rendered.slug, list_id, domain)
    if feedback_id and not _FEEDBACK_ID.fullmatch(feedback_id):
        raise ValueError(f"Feedback-ID must be up to 4 ':'-separated fields, got {feedback_id!r}")
    boundary = f"=={secrets.token_hex(12)}=="  # "==" never occurs in quoted-printable text
    parts = [
        *_fixed_headers(rendered, settings, list_id, feedback_id),
        b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="%s"\r\n'
        % boundary.encode(),
        _part_head(boundary, "plain"), *_body_parts(rendered.text, "text"),
        _part_head(boundary, "html"), *_body_parts(rendered.html, "html"),
        b"\r\n--%s--\r\n" % boundary.encode(),
    ]
    mailto = settings.unsubscribe_mailto
    return MessageTemplate(
        _merge(parts), domain=domain, fallback=_one_line(settings.first_name_fallback),
        subject=rendered.subject if "Subject" in parts else "",
        # A translation's readers are sent to its own archive page, not to the original.
        web_url=archive_url(settings, rendered.slug, rendered.language or None),
        preferences_url=f"{settings.base_url}/preferences/",
        mailto=f",\r\n <mailto:{_config_address('unsubscribe_mailto', mailto)}"
               "?subject=unsubscribe>" if mailto else "")


def archive_url(settings: Settings, slug: str, language: str | None = None) -> str:
    """The public address of an issue's archive page: the original's, or a translation's."""
    url = f"{settings.base_url}/archive/{quote(slug)}/"
    return url if language in (None, settings.language) else f"{url}{quote(str(language))}/"


def sample_message(rendered: RenderedIssue, settings: Settings) -> bytes:
    """The issue as one message to a neutral sample reader: ``message.eml`` of ``render --out``."""
    reader = Recipient("reader@example.org", name="Sample Reader", first_name="Sample",
                       unsubscribe_url=f"{settings.base_url}/unsubscribe/SAMPLE",
                       preferences_url=f"{settings.base_url}/preferences/SAMPLE")
    return build_template(rendered, settings).personalise(reader)


# ---------------------------------------------------------------- headers


def header_address(address: str) -> str:
    """The address as a header may carry it (IDNA domain); InvalidAddress if it cannot be."""
    if len(address) <= MAX_ADDRESS and _ADDRESS.fullmatch(address):
        return address
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise InvalidAddress(address, "the part before '@' is not ASCII; that needs SMTPUTF8, "
                                      "which Amazon SES does not accept")
    try:
        ascii_address = f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise InvalidAddress(address, "the domain is not a valid domain name") from None
    if domain.isascii() or len(ascii_address) > MAX_ADDRESS or not _ADDRESS.fullmatch(
            ascii_address):
        raise InvalidAddress(address, "not an address like name@example.org")
    return ascii_address


def _mailbox(name: str, address: str) -> str:
    """``name <address>`` for an address header; ``name`` must already be one line."""
    return f"{_display_name(name)} <{address}>" if name else address


def _display_name(name: str) -> str:
    """A display name as RFC 5322 allows it: atoms as they are, other ASCII quoted, else RFC 2047.

    Short ASCII names stay readable in raw mail; the rest become encoded words, which can be
    folded anywhere. A name that looks like an encoded word (``=?``) is encoded too, so that no
    reader decodes it.
    """
    if len(name) <= MAX_PLAIN_NAME and name.isascii() and "=?" not in name:
        if _PLAIN_PHRASE.fullmatch(name):
            return name
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    encoded = name.encode()
    if len(encoded) <= 45:  # one encoded word of ≤ 75 characters: ~20x faster than Header
        return base64mime.header_encode(encoded, "utf-8")
    return Header(name, "utf-8", header_name="To").encode(linesep="\r\n")


def _fixed_headers(rendered: RenderedIssue, settings: Settings, list_id: str,
                   feedback_id: str) -> list[bytes | str]:
    """Every header in order; the per-recipient ones as slot names."""
    reply_to = settings.reply_to
    return [
        b"From: %s\r\n" % _config_mailbox("from", settings.sender),
        "To",
        "Subject" if FIELD_RE.search(rendered.subject) else _subject(rendered.subject),
        b"Reply-To: %s\r\n" % _config_mailbox("reply_to", reply_to) if reply_to else b"",
        "Date",
        "Message-ID",
        b"List-Id: %s\r\n" % _mailbox(_one_line(settings.name), list_id).encode(),
        "List-Unsubscribe",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",  # RFC 8058
        b"Feedback-ID: %s\r\n" % feedback_id.encode() if feedback_id else b"",
        b"Content-Language: %s\r\n" % rendered.language.encode() if rendered.language else b"",
    ]


def _subject(subject: str) -> bytes:
    """Subject folded at spaces; RFC 2047 when not ASCII or a word is too long to fold nicely.

    Written by hand because it runs per recipient when the subject is personalised: ~5 µs,
    where ``email.header.Header`` takes ~130 µs. (``email.policy.SMTP.fold`` would also move a
    71-character subject whole to a continuation line.) Lines stay within 78 characters.
    """
    subject = _one_line(subject)
    words = subject.split(" ")
    if subject.isascii() and "=?" not in subject and all(len(word) <= 60 for word in words):
        lines = ["Subject:"]
        for word in words:
            if len(lines[-1]) + 1 + len(word) > 78:
                lines.append("")
            lines[-1] += " " + word
    else:  # encoded words of at most 39 bytes (64 characters), never splitting a character
        pieces, piece = [], b""
        for char in subject:
            encoded = char.encode()
            if len(piece) + len(encoded) > 39:
                pieces.append(piece)
                piece = b""
            piece += encoded
        pieces.append(piece)
        lines = ["Subject:"] + [""] * (len(pieces) - 1)
        for line, piece in enumerate(pieces):
            lines[line] += " " + base64mime.header_encode(piece, "utf-8")
    return ("\r\n".join(lines) + "\r\n").encode()


def _feedback_id(slug: str, list_id: str, domain: str) -> str:
    """Gmail's ``campaign:list:type:SenderId``; Postmaster Tools groups complaints by each field,
    right to left, and wants a stable SenderId of 5-15 characters."""
    return f"{_slug(slug)}:{list_id.partition('.')[0]}:newsletter:{_slug(domain)[:15].strip('-')}"


def _config_mailbox(key: str, value: str) -> bytes:
    return _mailbox(_one_line(parseaddr(value)[0]), _config_address(key, value)).encode()


def _config_address(key: str, value: str) -> str:
    """A configured mailbox's address for a header: a bad one is a ConfigError, never skipped."""
    try:
        return header_address(parseaddr(value)[1])
    except InvalidAddress as error:
        raise ConfigError(f"newsletter.{key}: {error}") from None


def _one_line(value: str) -> str:
    """``value`` without control characters or runs of whitespace: one line, single spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _field(fields: dict[str, str], attributes: Mapping[str, Any], name: str) -> str:
    """A built-in field, else the subscriber's attribute of that name (one line), else ""."""
    if name in fields:
        return fields[name]
    value = attributes.get(name)
    return _one_line(str(value)) if value is not None else ""


def _checked_url(url: str) -> str:
    """``url`` if it can sit between angle brackets in a header; the engine built it, so a bad
    one is a bug (ValueError), not a recipient's failure."""
    if not _URL.fullmatch(url):
        raise ValueError(f"URL must be printable ASCII without spaces, quotes or <>: {url!r}")
    return url


def _angle_url(url: str) -> bytes:
    """``<url>``, folded inside the brackets only when too long for one line (RFC 2369 §2)."""
    pieces = (url[i:i + URL_PIECE] for i in range(0, len(url), URL_PIECE))
    return b"<%s>" % "\r\n ".join(pieces).encode()


def _slug(text: str) -> str:
    """``ASIT Newsletter`` → ``asit-newsletter``: ASCII letters, digits and single dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "newsletter"


# ---------------------------------------------------------------- bodies


def _part_head(boundary: str, subtype: str) -> bytes:
    return (f"\r\n--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode()


def _body_parts(text: str, kind: str) -> list[bytes | str]:
    """A body as quoted-printable chunks, with a slot (``"text:web_url"``) for each placeholder.

    Every chunk ends its last line (with a hard or a soft line break), so a value substituted
    later starts and ends lines of its own, and nothing around it ever needs re-encoding.
    """
    pieces = FIELD_RE.split(text)  # literal, name, literal, name, ..., literal
    return [f"{kind}:{piece}" if i % 2 else _qp_lines(piece)
            for i, piece in enumerate(pieces) if piece]


def _qp_value(value: str) -> bytes:
    """A substituted value as quoted-printable lines of its own; most need no encoding at all.

    Links (the unsubscribe and preferences URLs, ~120 characters) are longer than a line but
    need no escape either: cut into lines with soft breaks here, they cost a fraction of a
    microsecond, where the stdlib's encoder takes ~4 µs each, twice per link per message."""
    if not _QP_SAFE.fullmatch(value):
        return _qp_lines(value)
    if len(value) <= QP_WIDTH:
        return value.encode() + b"=\r\n" if value else b""
    return b"".join([value[i:i + QP_WIDTH].encode() + b"=\r\n"
                     for i in range(0, len(value), QP_WIDTH)])


def _qp_lines(text: str) -> bytes:
    """``text`` as UTF-8 quoted-printable lines, the last one ended softly if it was open."""
    encoded = quoprimime.body_encode(text.encode().decode("latin-1"), QP_WIDTH, "\r\n")
    return (encoded if encoded.endswith("\r\n") else encoded + "=\r\n").encode("ascii")


def _merge(parts: list[bytes | str]) -> tuple[bytes | str, ...]:
    """Join neighbouring byte chunks, so that personalising joins as few pieces as possible."""
    merged: list[bytes | str] = []
    for part in parts:
        if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += part
        elif part:
            merged.append(part)
    return tuple(merged)
