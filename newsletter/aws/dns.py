"""The DNS records SES needs: printed as a zone-file snippet by ``ses setup``, looked up by
``ses doctor``.

Easy DKIM signs with SES's keys, published through three CNAMEs. A custom MAIL FROM domain (a
subdomain such as ``bounce.example.org``) takes the bounces through an MX to SES and carries the
SPF record, so SPF passes for our own domain and aligns for DMARC. The DMARC record tells
receivers what to do with mail that passes neither; Gmail and Yahoo refuse bulk mail without one
(https://support.google.com/a/answer/81126, https://senders.yahooinc.com/best-practices/).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

import dns.exception
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT

from newsletter.aws.checks import FAIL, OK, WARN, Check, Verdict
from newsletter.errors import InvalidValue

DKIM, MAIL_FROM, SPF, DMARC = "DKIM", "MAIL FROM", "SPF", "DMARC"  # a Record's purpose
SPF_VALUE = "v=spf1 include:amazonses.com ~all"
DMARC_START = "v=DMARC1; p=none;"  # monitoring only; never a made-up rua= mailbox
POLICIES = ("none", "quarantine", "reject")
TTL = 3600
TXT_STRING = 255  # the longest character-string a TXT record holds (RFC 1035 3.3)

# The comment line above each group of the zone snippet.
WHY = {
    DKIM: "SES signs every message; receivers fetch its public keys through these CNAMEs",
    MAIL_FROM: "bounces and complaints return to SES through this MX; keep it the only MX there",
    SPF: "lets SES send for the MAIL FROM domain, so SPF passes for your domain, not Amazon's",
    DMARC: ("p=none only monitors: add rua=mailto:<your mailbox> for aggregate reports; "
            "move to p=quarantine or p=reject once they look clean"),
}
SETUP_PRINTS = "`newsletter ses setup` prints them"
LOOKUP_FIX = ("check the network, or ask the domain's own nameserver with "
              "--nameserver HOST[:PORT]")
NO_MAIL_FROM = ("no custom MAIL FROM domain: bounces return to amazonses.com, so SPF passes for "
                "Amazon's domain, not yours; DMARC then rests on DKIM alone")
NO_MAIL_FROM_FIX = ("choose a MAIL FROM subdomain (e.g. bounce.{domain}) and run "
                    "`newsletter ses setup`")


@dataclass(frozen=True)
class Record:
    """One DNS record to publish, its value as a resolver returns it (no quotes, no final dot)."""

    name: str  # fully qualified, lower case, no trailing dot
    type: str  # "CNAME" | "MX" | "TXT"
    value: str
    purpose: str  # DKIM, MAIL_FROM, SPF or DMARC


def dkim_records(domain: str, tokens: Sequence[str]) -> list[Record]:
    """Easy DKIM's CNAMEs, one per token SES gave (three)."""
    domain = _bare(domain)
    return [Record(f"{token.lower()}._domainkey.{domain}", "CNAME",
                   f"{token.lower()}.dkim.amazonses.com", DKIM) for token in tokens]


def mail_from_records(mail_from_domain: str, region: str) -> list[Record]:
    """The custom MAIL FROM domain's MX (bounces to SES) and its SPF record."""
    name = _bare(mail_from_domain)
    return [Record(name, "MX", f"10 {_feedback_host(region)}", MAIL_FROM),
            Record(name, "TXT", SPF_VALUE, SPF)]


def dmarc_record(domain: str) -> Record:
    """A DMARC record to start with: it asks for nothing but satisfies the bulk-sender rules."""
    return Record(f"_dmarc.{_bare(domain)}", "TXT", DMARC_START, DMARC)


def zone_snippet(records: Iterable[Record]) -> str:
    """BIND zone-file lines for ``records``, each group under a comment saying why it is needed."""
    records = list(records)
    if not records:
        return ""
    width = max(len(record.name) for record in records) + 1
    groups = []
    for purpose, group in groupby(records, key=lambda record: record.purpose):
        lines = [f"; {purpose}: {WHY[purpose]}" if purpose in WHY else f"; {purpose}"]
        lines += [f"{record.name + '.':<{width}}  {TTL}  IN  {record.type:<5}  "
                  f"{_zone_value(record)}" for record in group]
        groups.append("\n".join(lines))
    return "\n\n".join(groups) + "\n"


def make_resolver(nameserver: str | None = None, *, timeout: float = 5.0) -> dns.resolver.Resolver:
    """A resolver without a cache: the system's, or one asking only ``nameserver``
    ("HOST", "HOST:PORT", "[IPv6]:PORT"), to see records right after publishing them."""
    if nameserver is None:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            # No /etc/resolv.conf: each check then fails on its own ("no nameserver to ask"),
            # instead of the whole doctor.
            resolver = dns.resolver.Resolver(configure=False)
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*_server_address(nameserver))]
    resolver.lifetime = timeout  # for the whole lookup, retries included
    return resolver


def check_dns(domain: str, *, dkim_tokens: Sequence[str], mail_from_domain: str | None,
              region: str, resolver: dns.resolver.Resolver) -> list[Check]:
    """Look up the records SES needs for ``domain``: dns-dkim, dns-mail-from, dns-spf, dns-dmarc."""
    domain = _bare(domain)
    mail_from = _bare(mail_from_domain) if mail_from_domain else None
    return [
        _check("dns-dkim", _judge_dkim, resolver, domain, dkim_tokens),
        _check("dns-mail-from", _judge_mail_from, resolver, domain, mail_from, region),
        _check("dns-spf", _judge_spf, resolver, domain, mail_from),
        _check("dns-dmarc", _judge_dmarc, resolver, domain),
    ]


# ---------------------------------------------------------------- the checks

Finding = tuple[Verdict, str, str]  # a Check without its id


class _LookupFailed(Exception):
    """A lookup that got no verdict (timeout, SERVFAIL): neither "present" nor "missing"."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"could not look up {name}: {reason}")


def _check(check_id: str, judge: Callable[..., Finding], *args: object) -> Check:
    try:
        return Check(check_id, *judge(*args))
    except _LookupFailed as failed:
        return Check(check_id, FAIL, str(failed), LOOKUP_FIX)


def _judge_dkim(resolver: dns.resolver.Resolver, domain: str, tokens: Sequence[str]) -> Finding:
    if not tokens:
        return FAIL, "no DKIM tokens: the identity is not set up", "run `newsletter ses setup`"
    problems = []
    for record in dkim_records(domain, tokens):
        found = _lookup(resolver, record.name, "CNAME")
        if not found:
            problems.append(f"{record.name} is missing")
        elif found[0] != record.value:
            problems.append(f"{record.name} points to {found[0]}, expected {record.value}")
    if problems:
        return FAIL, "; ".join(problems), f"publish the DKIM CNAME records ({SETUP_PRINTS})"
    return OK, f"all {len(tokens)} DKIM CNAME records point to amazonses.com", ""


def _judge_mail_from(resolver: dns.resolver.Resolver, domain: str, mail_from: str | None,
                     region: str) -> Finding:
    if mail_from is None:
        return WARN, NO_MAIL_FROM, NO_MAIL_FROM_FIX.format(domain=domain)
    record = mail_from_records(mail_from, region)[0]
    want = _feedback_host(region)
    hosts = [value.split()[-1] for value in _lookup(resolver, mail_from, "MX")]
    publish = f"publish {_zone_line(record)} ({SETUP_PRINTS})"
    if not hosts:
        return FAIL, f"no MX record at {mail_from}: SES cannot use it as MAIL FROM", publish
    if want not in hosts:
        return FAIL, f"the MX at {mail_from} points to {', '.join(hosts)}, expected {want}", publish
    if len(hosts) > 1:
        # SES's guide asks for exactly one MX there: another host may get the bounces.
        others = ", ".join(host for host in hosts if host != want)
        return (FAIL, f"{mail_from} has other MX records besides {want}: {others}",
                f"remove them: SES wants its MX to be the only one at {mail_from}")
    return OK, f"the MX at {mail_from} points to {want}", ""


def _judge_spf(resolver: dns.resolver.Resolver, domain: str, mail_from: str | None) -> Finding:
    if mail_from is None:
        return (WARN, "no custom MAIL FROM domain: SPF passes for amazonses.com, not for yours",
                NO_MAIL_FROM_FIX.format(domain=domain))
    found = [text for text in _lookup(resolver, mail_from, "TXT") if _is_spf(text)]
    publish = f"publish {_zone_line(Record(mail_from, 'TXT', SPF_VALUE, SPF))}"
    if not found:
        return FAIL, f"no SPF record at {mail_from}", publish
    if len(found) > 1:
        return (FAIL, f"{len(found)} SPF records at {mail_from}: receivers treat that as an "
                      f"error (SPF permerror), so SPF fails: {' | '.join(found)}",
                "merge them into one record that includes amazonses.com")
    if not _includes_ses(found[0]):
        return (FAIL, f"the SPF record at {mail_from} does not include amazonses.com: "
                      f"{found[0]!r}", "add include:amazonses.com to it, before its all term")
    return OK, f"the SPF record at {mail_from} includes amazonses.com", ""


def _judge_dmarc(resolver: dns.resolver.Resolver, domain: str) -> Finding:
    for name in _dmarc_names(domain):
        found = [text for text in _lookup(resolver, name, "TXT") if _is_dmarc(text)]
        if found:
            return _dmarc_policy(domain, name, found)
    return (FAIL, f"no DMARC record for {domain}: Gmail and Yahoo refuse bulk mail without DMARC",
            f"publish {_zone_line(dmarc_record(domain))}")


def _dmarc_policy(domain: str, name: str, found: list[str]) -> Finding:
    """Judge the DMARC record(s) found at ``name`` (``_dmarc.`` + domain or one of its parents)."""
    if len(found) > 1:
        return (FAIL, f"{len(found)} DMARC records at {name}: receivers ignore them all",
                "keep only one")
    tags = _tags(found[0])
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        return (FAIL, f"the DMARC record at {name} has no valid p= tag: {found[0]!r}",
                f'give it a policy: "{DMARC_START}" to start with')
    tag, where = "p", f"at {name}"
    if name != f"_dmarc.{domain}":
        where += f", inherited: {domain} has no DMARC record of its own"
        # A subdomain gets the parent's sp= policy when there is one (RFC 7489 6.3).
        if tags.get("sp", "").lower() in POLICIES:
            tag, policy = "sp", tags["sp"].lower()
    if policy == "none":
        return (OK, f"DMARC {tag}=none {where}: monitoring only: enough for Gmail's and Yahoo's "
                    "bulk-sender rules; move to quarantine or reject once reports look clean", "")
    return OK, f"DMARC {tag}={policy} {where}", ""


def _dmarc_names(domain: str) -> list[str]:
    """``_dmarc.`` + the domain, then each parent down to two labels. RFC 7489 asks only the
    organisational domain (found through the Public Suffix List); walking up the tree, as
    DMARCbis does, finds it without the list, and harmlessly asks e.g. ``_dmarc.co.uk``."""
    labels = domain.split(".")
    return [f"_dmarc.{'.'.join(labels[start:])}" for start in range(max(1, len(labels) - 1))]


# ---------------------------------------------------------------- records and their values


def _lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[str]:
    """The values at ``name`` as ``Record.value`` spells them, sorted (servers, and dnspython's
    own ``to_wire``, shuffle a record set); [] when there are none."""
    try:
        # from_text makes the name absolute, so no search domain is ever appended.
        answer = resolver.resolve(dns.name.from_text(name), rdtype)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as error:
        raise _LookupFailed(name, _reason(error)) from error
    return sorted(_value(rdata) for rdata in answer)


def _value(rdata: object) -> str:
    if isinstance(rdata, TXT):  # one record may hold several strings: they form one text
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if isinstance(rdata, MX):
        return f"{rdata.preference} {_bare(rdata.exchange.to_text())}"
    if isinstance(rdata, CNAME):
        return _bare(rdata.target.to_text())
    return str(rdata)


def _reason(error: dns.exception.DNSException) -> str:
    if isinstance(error, dns.resolver.NoNameservers) and not error.kwargs.get("errors"):
        return "no nameserver to ask (the system has none configured)"
    return str(error) or type(error).__name__


def _zone_line(record: Record) -> str:
    return f"{record.name}. {record.type} {_zone_value(record)}"


def _zone_value(record: Record) -> str:
    """The value in zone-file syntax: absolute target names, TXT quoted in 255-byte strings."""
    if record.type == "TXT":
        data = record.value.encode()
        strings = [data[start:start + TXT_STRING] for start in range(0, len(data), TXT_STRING)]
        return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings or [b""]).to_text()
    if record.type in ("CNAME", "MX"):
        return f"{record.value}."
    return record.value


def _feedback_host(region: str) -> str:
    return f"feedback-smtp.{region.strip().lower()}.amazonses.com"


def _is_spf(text: str) -> bool:
    return re.match(r"v=spf1(\s|$)", text, re.IGNORECASE) is not None  # RFC 7208 4.5


def _includes_ses(spf: str) -> bool:
    return any(term.lower().lstrip("+") == "include:amazonses.com" for term in spf.split())


def _tags(text: str) -> dict[str, str]:
    """A DMARC record's tags ("v=DMARC1; p=none" -> {"v": "DMARC1", "p": "none"})."""
    pairs = (part.partition("=") for part in text.split(";"))
    return {key.strip().lower(): value.strip() for key, _, value in pairs if key.strip()}


def _is_dmarc(text: str) -> bool:
    """Whether ``text`` starts with v=DMARC1, a value that "MUST match precisely" (RFC 7489 6.3):
    receivers ignore "v=dmarc1" records, so we do too."""
    key, _, value = text.split(";")[0].partition("=")
    return key.strip() == "v" and value.strip() == "DMARC1"


def _bare(name: str) -> str:
    return name.strip().rstrip(".").lower()


# ---------------------------------------------------------------- --nameserver


def _server_address(text: str) -> tuple[str, int]:
    """("address", port) from "HOST", "HOST:PORT", "[IPv6]:PORT" or a bare IPv6 address."""
    value = text.strip()
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", value)
    if bracketed:
        host, port = bracketed[1], bracketed[2]
        if not _is_ip(host, version=6):
            raise InvalidValue(f"--nameserver {text!r}: brackets are for an IPv6 address")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:  # an IPv4 address, a host name, or an IPv6 address without a port
        host, port = value, None
    return _host_address(host, text), _port(port, text)


def _host_address(host: str, text: str) -> str:
    if _is_ip(host):
        return str(ipaddress.ip_address(host))
    if not re.fullmatch(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.?)+", host, re.I):
        raise InvalidValue(f"--nameserver {text!r}: expected an IP address or a host name, "
                           "with an optional :PORT ([IPv6]:PORT)")
    try:  # e.g. the DNS provider's ns1.example.net, through the system's resolver
        return str(socket.getaddrinfo(host, 53, type=socket.SOCK_DGRAM)[0][4][0])
    except (OSError, UnicodeError) as error:
        raise InvalidValue(f"--nameserver {text!r}: cannot find {host}'s address: "
                           f"{error}") from error


def _port(port: str | None, text: str) -> int:
    if port is None:
        return 53
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise InvalidValue(f"--nameserver {text!r}: the port must be a number from 1 to 65535")
    return int(port)


def _is_ip(host: str, *, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return version is None or address.version == version
