"""Settings: ``newsletter.toml`` plus ``NEWSLETTER_*`` environment overrides, as one frozen object.

AWS settings are deliberately absent: boto3 reads them from its own chain (``AWS_PROFILE``,
``AWS_REGION``, ``AWS_ENDPOINT_URL_SESV2`` ...), so no key ever sits in our config file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from newsletter.errors import ConfigError, InvalidValue
from newsletter.values import clean_tags

CONFIG_NAME = "newsletter.toml"
# The default theme, shipped in the package: layouts, blocks, partials, the text part, the
# confirmation email, the web pages and the issue scaffold. A folder's templates/ overrides it
# file by file.
THEME_DIR = Path(__file__).parent / "theme"
# Environment variables that override a key of the [newsletter] table.
ENV_OVERRIDES = ("database_url", "secret_key", "base_url", "transport", "outbox_dir")
TABLES = ("newsletter", "brand", "footer", "topics")  # the top-level tables of the file


def _colour(value: str) -> str:
    if not re.fullmatch(r"#[0-9a-fA-F]{6}|#[0-9a-fA-F]{3}", value):
        raise ValueError(f"expected a colour like #1d3a6e, got {value!r}")
    return value


def _web_url(value: str) -> str:
    if not re.match(r"https?://[^/\s]+", value):
        raise ValueError(f"expected an absolute http(s) URL, got {value!r}")
    return value.rstrip("/")


def _mailbox(value: str) -> str:
    _, address = parseaddr(value)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
        raise ValueError(f"expected an address like 'Name <news@example.org>', got {value!r}")
    return value


def _language(value: str) -> str:
    if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", value):
        raise ValueError(f"expected a BCP 47 language tag like 'bg' or 'pt-BR', got {value!r}")
    return value


Colour = Annotated[str, AfterValidator(_colour)]
Language = Annotated[str, AfterValidator(_language)]
WebUrl = Annotated[str, AfterValidator(_web_url)]
Mailbox = Annotated[str, AfterValidator(_mailbox)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Link(_Table):
    """A named link: a partner organisation or a social profile."""

    name: str = Field(min_length=1)
    url: WebUrl
    role: str = ""  # e.g. "Coordinator"
    country: str = ""

    @property
    def label(self) -> str:
        """The address as people read it: no scheme, no trailing slash."""
        return re.sub(r"^https?://", "", self.url).rstrip("/")


class Brand(_Table):
    logo_url: WebUrl | None = None
    logo_alt: str = ""
    logo_width: int = Field(default=140, ge=20, le=600)
    primary_color: Colour = "#1d3a6e"
    accent_color: Colour = "#c8102e"
    background_color: Colour = "#eef1f5"
    text_color: Colour = "#1f2933"
    font_family: str = "Helvetica, Arial, sans-serif"
    heading_font_family: str | None = None


class FooterWords(_Table):
    """The footer's own sentences in one language; what is left out stays as in [footer]."""

    partners_title: str | None = None
    stay_connected_title: str | None = None
    stay_connected: str | None = None
    disclaimer: str | None = None
    postal_address: str | None = None


class Footer(_Table):
    partners_title: str = "Partners"
    partners: tuple[Link, ...] = ()
    stay_connected_title: str = "Stay connected"
    stay_connected: str = ""
    website: WebUrl | None = None
    social: tuple[Link, ...] = ()
    disclaimer: str = ""
    postal_address: str = ""
    # [footer.translations.bg] ...: the sentences above in each language offered.
    translations: dict[Language, FooterWords] = {}

    def in_language(self, language: str) -> Footer:
        """This footer with its sentences in ``language`` (or its base language), where given."""
        words = self.translations.get(language) or self.translations.get(language.split("-")[0])
        if words is None:
            return self
        return self.model_copy(update=words.model_dump(exclude_none=True))

    @property
    def links(self) -> tuple[Link, ...]:
        """The website first, then the social profiles."""
        if not self.website:
            return self.social
        return (Link(name=re.sub(r"^https?://", "", self.website), url=self.website),
                *self.social)


class Topic(_Table):
    """A tag readers may choose for themselves on the preferences page, with its name there.

    The tag is the key of its table (``[topics.training]``): an issue whose ``audience`` names
    it goes to whoever carries it, whether an import or the reader put it there."""

    name: str = Field(min_length=1)
    # Its name in other languages: {es = "Formación y eventos"}; the rest read ``name``.
    translations: dict[Language, Annotated[str, Field(min_length=1)]] = {}

    def in_language(self, language: str) -> str:
        """The name in ``language`` (or its base language), else ``name``."""
        return (self.translations.get(language)
                or self.translations.get(language.split("-")[0]) or self.name)


def _topic_tags(topics: dict[str, Topic]) -> dict[str, Topic]:
    """Each key must be a tag as the list stores it, or no subscriber could ever match it."""
    for key in topics:
        try:
            cleaned = clean_tags([key])
        except InvalidValue as error:
            raise ValueError(f"topic {key!r}: {error}") from None
        if cleaned != [key]:
            hint = f" (write {cleaned[0]!r})" if len(cleaned) == 1 else ""
            raise ValueError(f"topic {key!r} is not a tag as subscribers carry it: lower case, "
                             f"single spaces, none of ; , |{hint}")
    return topics


class Settings(_Table):
    """Everything configurable, validated once at start-up."""

    name: str = Field(min_length=1)
    sender: Mailbox = Field(alias="from")
    reply_to: Mailbox | None = None
    base_url: WebUrl
    language: Language = "en"  # of issue.md, the original of every issue
    # Translations: the languages offered besides the original (issue.<lang>.md beside
    # issue.md), and where a reader's language without a translation falls back before the
    # original, e.g. {ca = "es"}: a Catalan reader gets the Spanish version, else the original.
    languages: tuple[Language, ...] = ()
    fallback: dict[Language, Language] = {}
    layout: str = "default"
    first_name_fallback: str = "there"
    secret_key: str | None = None
    # Keys that signed links in earlier mail: still accepted when verifying, never used to sign.
    previous_secret_keys: tuple[str, ...] = ()
    # Optional mailbox for the mailto: half of List-Unsubscribe (the https half is always there).
    unsubscribe_mailto: Mailbox | None = None
    transport: Literal["outbox", "ses"] = "outbox"
    # Sending: a fixed rate in messages/s, or (unset) the SES account's MaxSendRate x safety.
    rate: float | None = Field(default=None, gt=0)
    rate_safety: float = Field(default=0.9, gt=0, le=1)
    concurrency: int = Field(default=32, ge=1, le=256)
    # Seconds to wait for SES's answer to one SendEmail; a message that got none is `unknown`.
    ses_timeout: float = Field(default=10.0, gt=0, le=300)
    ses_configuration_set: str | None = None
    # SES events (bounces, complaints, deliveries, opens, clicks) through SNS or SQS.
    sns_topic_arns: tuple[str, ...] = ()  # only these topics are accepted and confirmed
    sns_certificate_host: str = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"  # a regex
    sqs_queue_url: str | None = None
    soft_bounce_limit: int = Field(default=3, ge=1)  # transient bounces before suppression
    # The scheduler (newsletter scheduler): how often it looks, how late it may still send.
    schedule_interval: float = Field(default=30, gt=0)  # seconds between passes
    schedule_grace_hours: float = Field(default=24, ge=0)
    # The public web app (newsletter serve).
    trusted_proxies: int = Field(default=0, ge=0)  # X-Forwarded-* hops to believe
    database_url: str = ""
    outbox_dir: Path = Path("outbox")
    root: Path = Path(".")
    brand: Brand = Brand()
    footer: Footer = Footer()
    # [topics.<tag>]: the tags readers choose on the preferences page, by their names.
    topics: Annotated[dict[str, Topic], AfterValidator(_topic_tags)] = {}

    @model_validator(mode="after")
    def _check_fallback(self) -> Settings:
        offered = self.offered_languages
        for source, target in self.fallback.items():
            if source not in offered or target not in offered:
                raise ValueError(f"fallback {source} → {target}: both must be in languages "
                                 f"({', '.join(offered)})")
            chain = self.fallback_chain(source)
            if len(chain) != len(set(chain)):
                raise ValueError(f"fallback: {' → '.join(chain)} goes round in a circle")
        return self

    @property
    def offered_languages(self) -> tuple[str, ...]:
        """The original language first, then the others offered."""
        return tuple(dict.fromkeys((self.language, *self.languages)))

    def fallback_chain(self, language: str | None) -> list[str]:
        """The versions to try for a reader, best first: their language (or its base language,
        ``pt`` for ``pt-BR``), the fallbacks set for it, then the original."""
        chain: list[str] = []
        offered = self.offered_languages
        candidate = language if language in offered else (language or "").split("-")[0]
        while candidate in offered and candidate not in chain:
            chain.append(candidate)
            candidate = self.fallback.get(candidate, "")
        if chain and candidate in chain:  # a circle: shown by the validator, cut here
            chain.append(candidate)
            return chain
        return [*chain, self.language] if self.language not in chain else chain

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def templates_dir(self) -> Path:
        """The folder's own templates: each file here replaces the theme's of the same name."""
        return self.root / "templates"

    @property
    def template_dirs(self) -> tuple[Path, ...]:
        """Where templates are looked up, first match wins: the folder's, then the theme's."""
        return (self.templates_dir, THEME_DIR)

    @property
    def sender_address(self) -> str:
        """The address of ``from``, without the name."""
        return parseaddr(self.sender)[1]

    @property
    def domain(self) -> str:
        """The sending domain, used for Message-IDs and List-Id."""
        return self.sender_address.rpartition("@")[2].lower()


def find_config(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Path:
    """The config file to use: an explicit path, then $NEWSLETTER_CONFIG, then ./newsletter.toml."""
    chosen = Path(path or env.get("NEWSLETTER_CONFIG") or CONFIG_NAME)
    if not chosen.is_file():
        raise ConfigError(
            f"no configuration file at {chosen}: run from a newsletter folder, "
            "pass --config PATH or set NEWSLETTER_CONFIG"
        )
    return chosen


def load_settings(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Read, merge and validate the configuration; raise ConfigError naming each bad key."""
    config_path = find_config(path, env)
    try:
        document = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{config_path}: {error}") from None
    return settings_from_document(document, config_path, env)


def settings_from_document(
    document: dict[str, Any], config_path: Path, env: Mapping[str, str] = os.environ
) -> Settings:
    unknown = sorted(set(document) - set(TABLES))
    if unknown:
        raise ConfigError(f"{config_path}: {unknown[0]}: unknown table (expected newsletter, "
                          "brand, footer or topics)")
    data: dict[str, Any] = dict(document.get("newsletter", {}))
    data.update({key: env[f"NEWSLETTER_{key.upper()}"] for key in ENV_OVERRIDES
                 if env.get(f"NEWSLETTER_{key.upper()}")})
    root = config_path.resolve().parent
    data["root"] = root
    data.setdefault("database_url", f"sqlite:///{root / 'subscribers' / 'newsletter.db'}")
    data["outbox_dir"] = root / Path(data.get("outbox_dir", "outbox"))
    for table in TABLES[1:]:
        if table in document:
            data[table] = document[table]
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(config_path, error)) from None


def _describe(config_path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        table = loc.pop(0) if loc and loc[0] in TABLES[1:] else "newsletter"
        key = ".".join([str(table), *(str(part) for part in loc)])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        env_name = f"NEWSLETTER_{loc[0].upper()}" if loc and loc[0] in ENV_OVERRIDES else None
        hint = f" (or set {env_name})" if env_name and item["type"] == "missing" else ""
        lines.append(f"{config_path}: {key}: {message}{hint}")
    return "\n".join(lines)


def write_settings(config_path: Path, values: Mapping[str, Any]) -> None:
    """Set keys of the [newsletter] table in the file, keeping its comments and layout
    (tomlkit edits the document in place); the result must still load."""
    import tomlkit

    document = tomlkit.parse(config_path.read_text(encoding="utf-8"))
    table = document.setdefault("newsletter", tomlkit.table())
    for key, value in values.items():
        table[key] = value
    text = tomlkit.dumps(document)
    settings_from_document(tomllib.loads(text), config_path)  # refuse to write a broken file
    config_path.write_text(text, encoding="utf-8")
