"""The DNS records of `ses setup` and the lookups of `ses doctor`, against a real DNS server on
loopback (tests/fakedns.py) through the resolver the CLI uses."""

from __future__ import annotations

import dns.rdatatype
import dns.resolver
import dns.zone
import pytest

from newsletter.aws.checks import FAIL, OK, WARN
from newsletter.aws.dns import (
    Record,
    check_dns,
    dkim_records,
    dmarc_record,
    mail_from_records,
    make_resolver,
    zone_snippet,
)
from newsletter.errors import InvalidValue
from tests.fakedns import FakeDns

DOMAIN, MAIL_FROM, REGION = "example.org", "bounce.example.org", "eu-west-1"
TOKENS = ("tok1abc", "tok2def", "tok3ghi")
FEEDBACK = "feedback-smtp.eu-west-1.amazonses.com"
IDS = ["dns-dkim", "dns-mail-from", "dns-spf", "dns-dmarc"]
# The zone as a DNS provider holds it once everything is published, written out by hand (not
# with the functions under test), next to records that have nothing to do with SES.
PUBLISHED = {
    ("tok1abc._domainkey.example.org", "CNAME"): ["tok1abc.dkim.amazonses.com"],
    ("tok2def._domainkey.example.org", "CNAME"): ["tok2def.dkim.amazonses.com"],
    ("tok3ghi._domainkey.example.org", "CNAME"): ["tok3ghi.dkim.amazonses.com"],
    ("bounce.example.org", "MX"): [f"10 {FEEDBACK}"],
    ("bounce.example.org", "TXT"): ["v=spf1 include:amazonses.com ~all"],
    ("_dmarc.example.org", "TXT"): ["v=DMARC1; p=none;"],
    ("example.org", "MX"): ["10 mx.example.net"],
    ("example.org", "TXT"): ["v=spf1 mx -all", "google-site-verification=abc"],
}


@pytest.fixture
def fake():
    with FakeDns(PUBLISHED) as server:
        yield server


def doctor(fake, domain=DOMAIN, *, tokens=TOKENS, mail_from=MAIL_FROM, timeout=2.0):
    checks = check_dns(domain, dkim_tokens=tokens, mail_from_domain=mail_from, region=REGION,
                       resolver=make_resolver(fake.address, timeout=timeout))
    assert [check.id for check in checks] == IDS
    return {check.id: check for check in checks}


def test_everything_published_is_ok(fake):
    checks = doctor(fake)
    assert {check.id: (check.status, check.fix) for check in checks.values()} == {
        name: (OK, "") for name in IDS}
    assert checks["dns-dkim"].message == "all 3 DKIM CNAME records point to amazonses.com"
    assert checks["dns-mail-from"].message == f"the MX at bounce.example.org points to {FEEDBACK}"


def test_names_compare_without_case_or_final_dot(fake):
    fake.set("tok1abc._domainkey.example.org", "CNAME", ["TOK1ABC.DKIM.AmazonSES.com."])
    fake.set("bounce.example.org", "MX", [f"10 {FEEDBACK.upper()}."])
    checks = doctor(fake, "Example.ORG.", mail_from="Bounce.Example.org.")
    assert [check.status for check in checks.values()] == [OK] * 4


# ---------------------------------------------------------------- DKIM


def test_dkim_names_each_missing_or_wrong_record(fake):
    fake.remove("tok1abc._domainkey.example.org", "CNAME")
    fake.set("tok2def._domainkey.example.org", "CNAME", ["tok2def.dkim.example.net"])
    # published as the key itself, not as SES's CNAME: the name exists, the CNAME does not
    fake.remove("tok3ghi._domainkey.example.org", "CNAME")
    fake.set("tok3ghi._domainkey.example.org", "TXT", ["v=DKIM1; k=rsa; p=MIGf"])
    check = doctor(fake)["dns-dkim"]
    assert (check.status, check.message) == (FAIL, (
        "tok1abc._domainkey.example.org is missing; "
        "tok2def._domainkey.example.org points to tok2def.dkim.example.net, "
        "expected tok2def.dkim.amazonses.com; "
        "tok3ghi._domainkey.example.org is missing"))
    assert "`newsletter ses setup` prints them" in check.fix


def test_dkim_without_tokens_fails_without_a_lookup(fake):
    check = doctor(fake, tokens=())["dns-dkim"]
    assert (check.status, check.message) == (FAIL, "no DKIM tokens: the identity is not set up")
    assert "`newsletter ses setup`" in check.fix
    assert not [query for query in fake.queries if query[1] == "CNAME"]


# ---------------------------------------------------------------- MAIL FROM and SPF


def test_mail_from_mx_missing(fake):
    fake.remove("bounce.example.org", "MX")
    check = doctor(fake)["dns-mail-from"]
    assert check.status == FAIL
    assert check.message.startswith("no MX record at bounce.example.org")
    assert f"bounce.example.org. MX 10 {FEEDBACK}." in check.fix


def test_mail_from_mx_to_another_host(fake):
    fake.set("bounce.example.org", "MX", ["10 feedback-smtp.us-east-1.amazonses.com"])
    check = doctor(fake)["dns-mail-from"]
    assert (check.status, check.message) == (
        FAIL, "the MX at bounce.example.org points to feedback-smtp.us-east-1.amazonses.com, "
              f"expected {FEEDBACK}")
    assert f"MX 10 {FEEDBACK}." in check.fix


def test_mail_from_with_a_second_mx_fails(fake):
    fake.set("bounce.example.org", "MX", [f"10 {FEEDBACK}", "5 mx.example.net"])
    check = doctor(fake)["dns-mail-from"]
    assert check.status == FAIL
    assert check.message.endswith(f"other MX records besides {FEEDBACK}: mx.example.net")


@pytest.mark.parametrize(("values", "status", "message"), [
    ([], FAIL, "no SPF record at bounce.example.org"),
    (["google-site-verification=abc"], FAIL, "no SPF record at bounce.example.org"),
    (["v=spf10 include:amazonses.com ~all"], FAIL, "no SPF record at bounce.example.org"),
    (["v=spf1 mx -all"], FAIL,
     "the SPF record at bounce.example.org does not include amazonses.com: 'v=spf1 mx -all'"),
    (["v=spf1 include:amazonses.com ~all", "v=spf1 mx -all"], FAIL,
     "2 SPF records at bounce.example.org: receivers treat that as an error (SPF permerror), so "
     "SPF fails: v=spf1 include:amazonses.com ~all | v=spf1 mx -all"),
    (["google-site-verification=abc", "V=SPF1 include:_spf.google.com +include:AmazonSES.com -all"],
     OK, "the SPF record at bounce.example.org includes amazonses.com"),
])
def test_spf(fake, values, status, message):
    fake.set("bounce.example.org", "TXT", values)
    check = doctor(fake)["dns-spf"]
    assert (check.status, check.message) == (status, message)
    assert bool(check.fix) == (status != OK)


def test_spf_split_into_several_strings_is_read_whole(fake):
    """TXT records longer than 255 bytes come as several strings (the fake splits the value on
    the wire, at 255 bytes): here the split falls inside "amazonses.com"."""
    head = "v=spf1 " + " ".join(f"ip4:192.0.2.{n}" for n in range(12))
    host = "h" * (255 - len(head) - 30) + ".example.org"  # an a: term that fills the string
    spf = f"{head} a:{host} include:amazonses.com ~all"
    assert spf[:255].endswith("include:amazon")
    fake.set("bounce.example.org", "TXT", [spf])
    assert doctor(fake)["dns-spf"].status == OK


def test_no_mail_from_domain_warns_twice_and_looks_nothing_up(fake):
    checks = doctor(fake, mail_from=None)
    mail_from, spf = checks["dns-mail-from"], checks["dns-spf"]
    assert (mail_from.status, spf.status) == (WARN, WARN)
    assert mail_from.message == (
        "no custom MAIL FROM domain: bounces return to amazonses.com, so SPF passes for "
        "Amazon's domain, not yours; DMARC then rests on DKIM alone")
    assert "amazonses.com" in spf.message
    assert "`newsletter ses setup`" in mail_from.fix and "`newsletter ses setup`" in spf.fix
    assert not [query for query in fake.queries if query[0] == "bounce.example.org"]


# ---------------------------------------------------------------- DMARC


@pytest.mark.parametrize(("values", "status", "message"), [
    (["v=DMARC1; p=reject; rua=mailto:dmarc@example.org"], OK,
     "DMARC p=reject at _dmarc.example.org"),
    (["some other text", " v = DMARC1;p=Quarantine;pct=100"], OK,
     "DMARC p=quarantine at _dmarc.example.org"),
    (["v=DMARC1; p=none; rua=mailto:dmarc@example.org"], OK,
     "DMARC p=none at _dmarc.example.org: monitoring only: enough for Gmail's and Yahoo's "
     "bulk-sender rules; move to quarantine or reject once reports look clean"),
    (["v=DMARC1; p=none", "v=DMARC1; p=reject"], FAIL,
     "2 DMARC records at _dmarc.example.org: receivers ignore them all"),
    (["v=DMARC1; rua=mailto:dmarc@example.org"], FAIL,
     "the DMARC record at _dmarc.example.org has no valid p= tag: "
     "'v=DMARC1; rua=mailto:dmarc@example.org'"),
    (["v=DMARC1; p=strict"], FAIL,
     "the DMARC record at _dmarc.example.org has no valid p= tag: 'v=DMARC1; p=strict'"),
])
def test_dmarc(fake, values, status, message):
    fake.set("_dmarc.example.org", "TXT", values)
    check = doctor(fake)["dns-dmarc"]
    assert (check.status, check.message) == (status, message)
    assert bool(check.fix) == (status != OK)


@pytest.mark.parametrize("values", [[], ["v=spf1 -all"], ["v=dmarc1; p=reject"]])
def test_dmarc_missing(fake, values):
    fake.set("_dmarc.example.org", "TXT", values)
    check = doctor(fake)["dns-dmarc"]
    assert (check.status, check.message) == (
        FAIL, "no DMARC record for example.org: Gmail and Yahoo refuse bulk mail without DMARC")
    assert check.fix == 'publish _dmarc.example.org. TXT "v=DMARC1; p=none;"'


def test_dmarc_of_a_subdomain_sender_is_found_at_the_organisational_domain(fake):
    check = doctor(fake, "news.mail.example.org")["dns-dmarc"]
    assert (check.status, check.message.split(": monitoring")[0]) == (
        OK, "DMARC p=none at _dmarc.example.org, inherited: news.mail.example.org has no DMARC "
            "record of its own")
    dmarc_queries = [name for name, _ in fake.queries if name.startswith("_dmarc.")]
    assert dmarc_queries == ["_dmarc.news.mail.example.org", "_dmarc.mail.example.org",
                             "_dmarc.example.org"]  # never _dmarc.org


def test_a_subdomain_gets_the_parents_sp_policy_and_its_own_record_first(fake):
    fake.set("_dmarc.example.org", "TXT", ["v=DMARC1; p=none; sp=reject"])
    assert doctor(fake, "news.example.org")["dns-dmarc"].message.startswith(
        "DMARC sp=reject at _dmarc.example.org, inherited")
    fake.set("_dmarc.news.example.org", "TXT", ["v=DMARC1; p=quarantine"])
    fake.queries.clear()
    check = doctor(fake, "news.example.org")["dns-dmarc"]
    assert check.message == "DMARC p=quarantine at _dmarc.news.example.org"
    assert ("_dmarc.example.org", "TXT") not in fake.queries


def test_dmarc_missing_everywhere_for_a_subdomain(fake):
    fake.remove("_dmarc.example.org", "TXT")
    check = doctor(fake, "news.example.org")["dns-dmarc"]
    assert check.status == FAIL
    assert check.fix == 'publish _dmarc.news.example.org. TXT "v=DMARC1; p=none;"'
    dmarc_queries = [name for name, _ in fake.queries if name.startswith("_dmarc.")]
    assert dmarc_queries == ["_dmarc.news.example.org", "_dmarc.example.org"]  # not _dmarc.org


# ---------------------------------------------------------------- lookups that fail


def test_servfail_is_a_failed_lookup_not_a_missing_record(fake):
    fake.servfail = True
    checks = doctor(fake)
    assert [check.status for check in checks.values()] == [FAIL] * 4
    assert checks["dns-dkim"].message.startswith(
        "could not look up tok1abc._domainkey.example.org: ")
    assert "SERVFAIL" in checks["dns-dkim"].message
    assert checks["dns-mail-from"].message.startswith("could not look up bounce.example.org: ")
    assert checks["dns-dmarc"].message.startswith("could not look up _dmarc.example.org: ")
    assert all("--nameserver" in check.fix for check in checks.values())


def test_no_answer_in_time_is_a_failed_lookup(fake):
    fake.silent = True
    checks = doctor(fake, mail_from=None, timeout=0.1)
    assert checks["dns-dkim"].status == checks["dns-dmarc"].status == FAIL
    assert checks["dns-dmarc"].message.startswith("could not look up _dmarc.example.org: ")
    assert "timed out" in checks["dns-dmarc"].message


def test_a_system_without_nameservers_fails_each_check_not_the_doctor(monkeypatch):
    def no_resolv_conf(resolver, filename):
        raise dns.resolver.NoResolverConfiguration(f"cannot open {filename}")

    monkeypatch.setattr(dns.resolver.Resolver, "read_resolv_conf", no_resolv_conf)
    checks = check_dns(DOMAIN, dkim_tokens=TOKENS, mail_from_domain=MAIL_FROM, region=REGION,
                       resolver=make_resolver())
    assert [check.message for check in checks] == [
        f"could not look up {name}: no nameserver to ask (the system has none configured)"
        for name in ("tok1abc._domainkey.example.org", "bounce.example.org",
                     "bounce.example.org", "_dmarc.example.org")]


# ---------------------------------------------------------------- the records and the snippet


def all_records(long_txt=False):
    records = [*dkim_records(DOMAIN, TOKENS), *mail_from_records(MAIL_FROM, REGION),
               dmarc_record(DOMAIN)]
    if long_txt:
        records.append(Record("long.example.org", "TXT", "x" * 300, "SPF"))
    return records


def parse(snippet):
    zone = dns.zone.from_text(snippet, origin=DOMAIN, relativize=False, check_origin=False)
    return {(name.to_text(), dns.rdatatype.to_text(rdataset.rdtype), rdata.to_text())
            for name, rdataset in zone.iterate_rdatasets() for rdata in rdataset}


def test_the_records_setup_prints():
    assert dkim_records("Example.ORG.", ["tok1abc"]) == [
        Record("tok1abc._domainkey.example.org", "CNAME", "tok1abc.dkim.amazonses.com", "DKIM")]
    assert mail_from_records("Bounce.Example.org", "EU-West-1") == [
        Record("bounce.example.org", "MX", f"10 {FEEDBACK}", "MAIL FROM"),
        Record("bounce.example.org", "TXT", "v=spf1 include:amazonses.com ~all", "SPF")]
    assert dmarc_record("example.org.") == Record(
        "_dmarc.example.org", "TXT", "v=DMARC1; p=none;", "DMARC")


def test_the_snippet_is_a_valid_zone_with_the_records():
    assert parse(zone_snippet(all_records(long_txt=True))) == {
        ("tok1abc._domainkey.example.org.", "CNAME", "tok1abc.dkim.amazonses.com."),
        ("tok2def._domainkey.example.org.", "CNAME", "tok2def.dkim.amazonses.com."),
        ("tok3ghi._domainkey.example.org.", "CNAME", "tok3ghi.dkim.amazonses.com."),
        ("bounce.example.org.", "MX", f"10 {FEEDBACK}."),
        ("bounce.example.org.", "TXT", '"v=spf1 include:amazonses.com ~all"'),
        ("_dmarc.example.org.", "TXT", '"v=DMARC1; p=none;"'),
        ("long.example.org.", "TXT", f'"{"x" * 255}" "{"x" * 45}"'),  # split at 255
    }


def test_the_snippet_is_commented_and_aligned():
    lines = zone_snippet(all_records()).splitlines()
    comments = [line for line in lines if line.startswith(";")]
    assert [line.split(":")[0] for line in comments] == ["; DKIM", "; MAIL FROM", "; SPF",
                                                         "; DMARC"]
    records = [line for line in lines if line and not line.startswith(";")]
    assert len(records) == 6
    assert len({line.index(" 3600 ") for line in records}) == 1
    assert len({line.index(" IN ") for line in records}) == 1
    assert len({line.index(" 10 " if " MX " in line else ' "' if " TXT " in line else " tok")
                for line in records}) == 1
    dmarc_comment = comments[-1]
    assert "rua=mailto:" in dmarc_comment and "quarantine" in dmarc_comment
    assert "@" not in "\n".join(lines)  # no mailbox is ever made up


def test_what_setup_prints_is_what_doctor_wants():
    zone = dns.zone.from_text(zone_snippet(all_records()), origin=DOMAIN, relativize=False,
                              check_origin=False)
    records = {}
    for name, rdataset in zone.iterate_rdatasets():
        key = (name.to_text(), dns.rdatatype.to_text(rdataset.rdtype))
        records[key] = [rdata.to_text().strip('"') for rdata in rdataset]
    with FakeDns(records) as fake:
        assert [check.status for check in doctor(fake).values()] == [OK] * 4


def test_an_empty_snippet():
    assert zone_snippet([]) == ""


# ---------------------------------------------------------------- --nameserver


@pytest.mark.parametrize(("value", "address", "port"), [
    ("127.0.0.1", "127.0.0.1", 53),
    (" 192.0.2.7:5353 ", "192.0.2.7", 5353),
    ("[::1]:5300", "::1", 5300),
    ("[2001:DB8::1]", "2001:db8::1", 53),
    ("2001:db8::53", "2001:db8::53", 53),
])
def test_make_resolver_asks_only_the_nameserver_given(value, address, port):
    resolver = make_resolver(value, timeout=3)
    [nameserver] = resolver.nameservers
    assert (nameserver.address, nameserver.port) == (address, port)
    assert resolver.lifetime == 3
    assert resolver.cache is None  # a record published a minute ago must show


def test_make_resolver_finds_a_nameservers_address_by_name():
    [nameserver] = make_resolver("localhost:5353").nameservers
    assert (nameserver.address, nameserver.port) in {("127.0.0.1", 5353), ("::1", 5353)}


def test_make_resolver_without_a_nameserver_is_the_systems():
    resolver = make_resolver(timeout=4)
    assert resolver.lifetime == 4 and resolver.cache is None


@pytest.mark.parametrize("value", [
    "", ":53", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:dns", "[127.0.0.1]:53", "[::1",
    "[::1]:", "1.2.3.4:5:6", "not a host", "ns1.example.net/24",
])
def test_make_resolver_refuses_a_bad_nameserver(value):
    with pytest.raises(InvalidValue, match="--nameserver"):
        make_resolver(value)
