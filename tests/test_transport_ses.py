"""The SES transport against our fault-injecting fake (in-process) and a real moto server."""

from __future__ import annotations

import email
import email.policy
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)

from newsletter.authoring.render import RenderedIssue
from newsletter.config import Settings
from newsletter.errors import (
    ConfigError,
    DeliveryError,
    FatalTransportError,
    PermanentError,
    Throttled,
    TransientError,
    UnknownOutcome,
)
from newsletter.message import Recipient, build_template
from newsletter.transports import make_transport
from newsletter.transports.base import Envelope, Quota
from newsletter.transports.ses import (
    SesTransport,
    build_request,
    client_config,
    error_class,
    ses_errors,
    tag_value,
)
from tests.fakeses import FakeSes, fetch, max_in_window, post, spawn

ENVELOPE = Envelope("news@example.org", "reader@example.net", "2025-04-asit-highlights", "k1")
RAW = b"From: news@example.org\r\nTo: reader@example.net\r\nSubject: Hi\r\n\r\nHello\r\n"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Dummy credentials and a region; nothing read from ~/.aws or the instance metadata."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SES", "AWS_ENDPOINT_URL_SESV2"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    return monkeypatch


@pytest.fixture
def fake() -> Iterator[FakeSes]:
    with FakeSes(seed=1) as server:
        yield server


def connect(aws: pytest.MonkeyPatch, settings: Settings, url: str, *, attempts: int = 1,
            read_timeout: float = 0.5, configuration_set: str | None = None) -> SesTransport:
    """A transport to ``url``, found through boto3's chain as in production."""
    aws.setenv("AWS_ENDPOINT_URL_SESV2", url)
    aws.setenv("AWS_ENDPOINT_URL_SES", url)
    settings = settings.model_copy(update={"ses_configuration_set": configuration_set})
    return SesTransport.from_settings(
        settings, config=client_config(4, read_timeout=read_timeout, attempts=attempts))


@pytest.fixture
def ses(aws: pytest.MonkeyPatch, settings: Settings, fake: FakeSes) -> Iterator[SesTransport]:
    """botocore's retries off, so that each fault's own mapping shows."""
    with connect(aws, settings, fake.url) as transport:
        assert isinstance(transport, SesTransport)
        yield transport


# ---------------------------------------------------------------- request building


def test_build_request_is_plain_data() -> None:
    assert build_request(RAW, ENVELOPE, "events") == {
        "FromEmailAddress": "news@example.org",
        "Destination": {"ToAddresses": ["reader@example.net"]},
        "Content": {"Raw": {"Data": RAW}},
        "EmailTags": [{"Name": "issue", "Value": "2025-04-asit-highlights"}],
        "ConfigurationSetName": "events",
    }
    assert "ConfigurationSetName" not in build_request(RAW, ENVELOPE)


def test_tag_value_keeps_only_what_ses_allows() -> None:
    assert tag_value("2025.04 été/issue_1-x") == "2025_04__t__issue_1-x"
    assert tag_value("x" * 300) == "x" * 256
    assert tag_value("") == "_"


# ---------------------------------------------------------------- against the fake


def test_send_delivers_exact_bytes_and_returns_the_message_id(
        aws: pytest.MonkeyPatch, settings: Settings, fake: FakeSes) -> None:
    with connect(aws, settings, fake.url, configuration_set="newsletter-events") as transport:
        message_id = transport.send(RAW, ENVELOPE)
    [accepted] = fake.messages()
    assert message_id == accepted.message_id
    assert (accepted.raw, accepted.sender, accepted.recipient) == (
        RAW, "news@example.org", "reader@example.net")
    assert accepted.tags == {"issue": "2025-04-asit-highlights"}
    assert accepted.configuration_set == "newsletter-events"
    assert fake.counts() == {"reader@example.net": 1}


def test_make_transport_builds_ses_from_settings(aws: pytest.MonkeyPatch, settings: Settings,
                                                 fake: FakeSes) -> None:
    aws.setenv("AWS_ENDPOINT_URL_SESV2", fake.url)
    with make_transport(settings, "ses") as transport:
        assert transport.name == "ses"
        assert transport.send(RAW, ENVELOPE)


@pytest.mark.parametrize(("faults", "expected"), [
    ({"throttle": 1.0}, Throttled),
    ({"error5xx": 1.0}, TransientError),
    ({"timeout": 1.0, "timeout_after": 1.0}, UnknownOutcome),  # the client cannot tell...
    ({"hang": 1.0}, UnknownOutcome),
    ({"reject": ("reader@example.net",)}, PermanentError),
    ({"mode": "suspended"}, FatalTransportError),
    ({"mode": "paused"}, FatalTransportError),
    ({"mode": "credentials"}, FatalTransportError),
    ({"daily_quota": 0}, FatalTransportError),
    ({"senders": ("other@example.org",)}, FatalTransportError),
])
def test_each_fault_maps_to_its_error(ses: SesTransport, fake: FakeSes, faults: dict[str, Any],
                                      expected: type[DeliveryError]) -> None:
    fake.configure(**faults)
    with pytest.raises(DeliveryError) as caught:
        ses.send(RAW, ENVELOPE)
    assert type(caught.value) is expected
    assert caught.value.detail
    assert fake.messages() == []


@pytest.mark.parametrize("fault", [{"late": 1.0, "late_after": 1.0}, {"lost": 1.0}])
def test_a_message_taken_without_an_answer_is_unknown_and_not_resent(
        aws: pytest.MonkeyPatch, settings: Settings, fake: FakeSes, fault: dict[str, Any]) -> None:
    """...from these: SES took the message, then the answer came too late or the connection
    was reset. botocore must not resend it (it would arrive twice)."""
    fake.configure(**fault)
    with connect(aws, settings, fake.url, attempts=3) as transport, \
            pytest.raises(UnknownOutcome, match="SES may have accepted the message"):
        transport.send(RAW, ENVELOPE)
    assert len(fake.messages()) == 1 and fake.messages()[0].answer != "ok"


def test_ses_timeout_sets_the_read_timeout(aws: pytest.MonkeyPatch, settings: Settings,
                                           fake: FakeSes) -> None:
    aws.setenv("AWS_ENDPOINT_URL_SESV2", fake.url)
    fake.configure(late=1.0, late_after=2.0)
    tuned = settings.model_copy(update={"ses_timeout": 0.3})
    with SesTransport.from_settings(tuned) as transport:
        assert transport._config.read_timeout == 0.3
        started = time.monotonic()
        with pytest.raises(UnknownOutcome):
            transport.send(RAW, ENVELOPE)
        assert time.monotonic() - started < 1.5


def test_both_kinds_of_5xx_are_transient(ses: SesTransport, fake: FakeSes) -> None:
    fake.configure(error5xx=1.0)
    for _ in range(8):
        with pytest.raises(TransientError):
            ses.send(RAW, ENVELOPE)
    assert set(fake.stats()["outcomes"]) == {"InternalFailure", "ServiceUnavailable"}


def test_missing_configuration_set_is_fatal(aws: pytest.MonkeyPatch, settings: Settings,
                                            fake: FakeSes) -> None:
    fake.configure(configuration_sets=("events",))
    with connect(aws, settings, fake.url, configuration_set="typo") as transport, \
            pytest.raises(FatalTransportError, match="NotFoundException"):
        transport.send(RAW, ENVELOPE)


def test_unreachable_endpoint_is_transient(aws: pytest.MonkeyPatch, settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening
        with connect(aws, settings, url) as transport, pytest.raises(TransientError):
            transport.send(RAW, ENVELOPE)


def test_botocore_absorbs_an_occasional_throttle(aws: pytest.MonkeyPatch, settings: Settings
                                                 ) -> None:
    # Seed 3: the first request draws a throttle, the second does not.
    with FakeSes(seed=3, throttle=0.5) as server, \
            connect(aws, settings, server.url, attempts=3) as transport:
        message_id = transport.send(RAW, ENVELOPE)
        assert [m.message_id for m in server.messages()] == [message_id]
        assert server.stats()["outcomes"] == {"TooManyRequestsException": 1, "accepted": 1}


def test_a_read_timeout_is_not_resent_by_botocore(aws: pytest.MonkeyPatch, settings: Settings,
                                                  fake: FakeSes) -> None:
    """SES may have taken a message whose answer was lost: a silent resend could duplicate it."""
    fake.configure(timeout=1.0, timeout_after=1.0)
    with connect(aws, settings, fake.url, attempts=3) as transport, \
            pytest.raises(UnknownOutcome, match="may have accepted"):
        transport.send(RAW, ENVELOPE)
    assert fake.stats()["outcomes"] == {"timeout": 1}


def test_an_exhausted_daily_quota_is_not_retried(aws: pytest.MonkeyPatch, settings: Settings,
                                                 fake: FakeSes) -> None:
    fake.configure(daily_quota=1)
    with connect(aws, settings, fake.url, attempts=3) as transport:
        transport.send(RAW, ENVELOPE)
        with pytest.raises(FatalTransportError, match="Daily message quota exceeded"):
            transport.send(RAW, ENVELOPE)
    assert fake.stats()["outcomes"] == {"accepted": 1, "TooManyRequestsException": 1}


def test_quota_comes_from_get_account(ses: SesTransport, fake: FakeSes) -> None:
    fake.configure(max_send_rate=20.0, max_24_hour_send=100000.0)
    ses.send(RAW, ENVELOPE)
    assert ses.quota() == Quota(max_send_rate=20.0, max_24_hour_send=100000.0,
                                sent_last_24_hours=1.0)


def test_quota_errors_are_mapped(ses: SesTransport, fake: FakeSes) -> None:
    fake.configure(mode="credentials")
    with pytest.raises(FatalTransportError, match="UnrecognizedClientException"):
        ses.quota()


# ---------------------------------------------------------------- configuration


def test_missing_region_is_a_config_error(aws: pytest.MonkeyPatch, settings: Settings) -> None:
    aws.delenv("AWS_REGION")
    with pytest.raises(ConfigError, match="AWS_REGION"):
        SesTransport.from_settings(settings)


def test_missing_credentials_are_a_config_error(aws: pytest.MonkeyPatch, settings: Settings
                                                ) -> None:
    aws.delenv("AWS_ACCESS_KEY_ID")
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        SesTransport.from_settings(settings)


def test_unknown_profile_is_a_config_error(aws: pytest.MonkeyPatch, settings: Settings) -> None:
    aws.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigError, match="no-such-profile"):
        SesTransport.from_settings(settings)


def test_client_config_sizes_the_pool_and_counts_attempts() -> None:
    config = client_config(32)
    assert config.max_pool_connections >= 32
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert config.read_timeout < 60  # botocore's default would stall a worker for a minute


# ---------------------------------------------------------------- the mapping table


def client_error(code: str, status: int, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail")


@pytest.mark.parametrize(("code", "status", "message", "expected"), [
    ("TooManyRequestsException", 429, "Maximum sending rate exceeded.", Throttled),
    ("Throttling", 400, "Maximum sending rate exceeded.", Throttled),
    ("ThrottlingException", 400, "Rate exceeded", Throttled),
    ("Throttling", 400, "Daily message quota exceeded.", FatalTransportError),
    ("LimitExceededException", 400, "", FatalTransportError),
    ("InternalFailure", 500, "", TransientError),
    ("ServiceUnavailable", 503, "", TransientError),
    ("502", 502, "<html>Bad Gateway</html>", TransientError),
    ("MessageRejected", 400, "Address blacklisted.", PermanentError),
    ("BadRequestException", 400, "Missing final '@domain'", PermanentError),
    ("MailFromDomainNotVerifiedException", 400, "", FatalTransportError),
    ("AccountSuspendedException", 400, "", FatalTransportError),
    ("SendingPausedException", 400, "", FatalTransportError),
    ("NotFoundException", 404, "Configuration set <x> does not exist.", FatalTransportError),
    ("ExpiredTokenException", 403, "The security token included in the request is expired",
     FatalTransportError),
    ("AccessDeniedException", 403, "not authorized to perform: ses:SendEmail",
     FatalTransportError),
    ("SignatureDoesNotMatch", 403, "", FatalTransportError),
])
def test_error_table(code: str, status: int, message: str,
                     expected: type[DeliveryError]) -> None:
    assert error_class(client_error(code, status, message), "news@example.org") is expected


def test_message_rejected_naming_the_sender_is_fatal() -> None:
    error = client_error("MessageRejected", 400, "Email address is not verified. The following "
                         "identities failed the check in region EU-WEST-1: News@Example.org")
    assert error_class(error, "news@example.org") is FatalTransportError


@pytest.mark.parametrize(("error", "expected"), [
    (NoCredentialsError(), FatalTransportError),
    (EndpointConnectionError(endpoint_url="http://x"), TransientError),
    (ConnectTimeoutError(endpoint_url="http://x"), TransientError),
    (ReadTimeoutError(endpoint_url="http://x"), UnknownOutcome),
    (ConnectionClosedError(endpoint_url="http://x"), UnknownOutcome),
    (HTTPClientError(error="boom"), UnknownOutcome),
    (SSLError(endpoint_url="http://x", error="[SSL: UNEXPECTED_EOF_WHILE_READING]"),
     UnknownOutcome),
    (SSLError(endpoint_url="http://x", error="[SSL: CERTIFICATE_VERIFY_FAILED]"),
     TransientError),
    (ParamValidationError(report="bad"), PermanentError),
])
def test_botocore_errors_are_mapped(error: Exception, expected: type[DeliveryError]) -> None:
    with pytest.raises(DeliveryError) as caught, ses_errors("sending"):
        raise error
    assert type(caught.value) is expected
    assert caught.value.__cause__ is error


# ---------------------------------------------------------------- the fake as a process


def test_fake_runs_as_a_process_and_reports_what_it_got(aws: pytest.MonkeyPatch,
                                                        settings: Settings) -> None:
    with spawn("--latency", "0.01", "--seed", "1") as url:
        with connect(aws, settings, url) as transport:
            for n in range(3):
                transport.send(RAW, Envelope("news@example.org", f"r{n}@example.net", "i", "k"))
            post(url, "/_fake/configure", {"mode": "paused"})
            with pytest.raises(FatalTransportError, match="SendingPausedException"):
                transport.send(RAW, ENVELOPE)
        stats = fetch(url, "/_fake/stats.json")
        messages = fetch(url, "/_fake/messages.json?raw=1")
    assert (stats["accepted"], stats["duplicates"]) == (3, 0)
    assert stats["outcomes"] == {"accepted": 3, "SendingPausedException": 1}
    assert [m["recipient"] for m in messages] == ["r0@example.net", "r1@example.net",
                                                  "r2@example.net"]
    assert messages[0]["raw"] is not None


def test_max_in_window() -> None:
    assert max_in_window([]) == 0
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.2, 5.0]) == 4
    assert max_in_window([0.0, 1.0, 2.0]) == 1


# ---------------------------------------------------------------- against moto


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real ``moto_server`` process; skipped (failed under CI) when moto[server] is absent."""
    if not _moto_server_installed():
        reason = "moto[server] is not installed: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _moto_server_installed() -> bool:
    try:
        return all(importlib.util.find_spec(name) for name in ("moto.server", "flask"))
    except ModuleNotFoundError:  # find_spec("moto.server") imports moto first
        return False


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/moto-api/data.json", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not start at {url}")


@pytest.fixture
def moto(aws: pytest.MonkeyPatch, settings: Settings, moto_url: str) -> Iterator[SesTransport]:
    """A transport to moto, whose state is reset first."""
    urllib.request.urlopen(urllib.request.Request(moto_url + "/moto-api/reset", method="POST"),
                           timeout=10).close()
    with connect(aws, settings, moto_url, read_timeout=10) as transport:
        assert isinstance(transport, SesTransport)
        yield transport


def verify_sender(address: str) -> None:
    """moto (like the SES sandbox) refuses senders whose identity is not verified."""
    client = boto3.session.Session(region_name="eu-west-1").client("sesv2")
    try:
        client.create_email_identity(EmailIdentity=address)
    finally:
        client.close()


def test_moto_accepts_the_asit_issue(moto: SesTransport, moto_url: str, settings: Settings,
                                     asit_rendered: dict[str, RenderedIssue]) -> None:
    rendered = asit_rendered["2025-04-asit-highlights"]
    sender = parseaddr(settings.sender)[1]
    verify_sender(sender)
    reader = Recipient("ana.reader@example.net", name="Ana Reader", first_name="Ana",
                       unsubscribe_url=f"{settings.base_url}/unsubscribe/TOKEN")
    raw = build_template(rendered, settings).personalise(reader)
    message_id = moto.send(raw, Envelope(sender, reader.email, rendered.slug, "1"))

    with urllib.request.urlopen(moto_url + "/moto-api/data.json", timeout=10) as answer:
        stored = json.load(answer)["ses"]["RawMessage"]
    [sent] = [m for m in stored if m["id"] == message_id]
    assert reader.email in sent["destinations"]
    message = email.message_from_bytes(sent["raw_data"].encode(), policy=email.policy.default)
    assert message["Subject"] == rendered.subject
    assert parseaddr(str(message["To"]))[1] == reader.email


def test_moto_refuses_an_unverified_sender_for_every_message(moto: SesTransport) -> None:
    with pytest.raises(FatalTransportError, match=r"news@example\.org"):
        moto.send(RAW, ENVELOPE)


def test_moto_quota_falls_back_to_ses_v1(moto: SesTransport) -> None:
    # moto answers sesv2 GetAccount with 404; SES v1 GetSendQuota has its sandbox figures.
    assert moto.quota() == Quota(max_send_rate=1.0, max_24_hour_send=200.0,
                                 sent_last_24_hours=0.0)
    assert moto.quota().max_send_rate == 1.0  # the second call goes straight to v1
