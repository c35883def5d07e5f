"""The SES transport against our fault-injecting fake (in-process), a recording HTTP server, a
TLS-wrapped fake, and a real moto server. ``send`` takes the lean path (``ses_http``); ``quota``
and the old path's error mapping (``ses_errors``) are botocore's."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import hashlib
import hmac
import http.server
import importlib.util
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
import pytest
import urllib3.exceptions
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)
from cryptography.hazmat.primitives.asymmetric import ec

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
from newsletter.transports import ses as ses_module
from newsletter.transports.base import Envelope, Quota
from newsletter.transports.ses import (
    SesTransport,
    build_request,
    client_config,
    error_class,
    network_error,
    request_body,
    retry_delay,
    ses_errors,
    tag_value,
    total_attempts,
)
from newsletter.transports.ses_http import SEND_EMAIL_PATH, Answer, NotSent
from newsletter.transports.ses_http import client_error as read_error_answer
from tests.fakeses import FakeSes, fetch, max_in_window, post, spawn
from tests.helpers import self_signed, serving

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
    """Retries off (one attempt), so that each fault's own mapping shows."""
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
    was reset. The transport must not resend it (it would arrive twice)."""
    fake.configure(**fault)
    with connect(aws, settings, fake.url, attempts=3) as transport, \
            pytest.raises(UnknownOutcome, match="SES may have accepted the message"):
        transport.send(RAW, ENVELOPE)
    assert len(fake.messages()) == 1 and fake.messages()[0].answer != "ok"
    assert fake.counts() == {ENVELOPE.recipient: 1}


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
    # botocore's standard retries, as the lean path keeps them (``SesTransport.send``).
    # Seed 3: the first request draws a throttle, the second does not.
    with FakeSes(seed=3, throttle=0.5) as server, \
            connect(aws, settings, server.url, attempts=3) as transport:
        message_id = transport.send(RAW, ENVELOPE)
        assert [m.message_id for m in server.messages()] == [message_id]
        assert server.stats()["outcomes"] == {"TooManyRequestsException": 1, "accepted": 1}


def test_a_read_timeout_is_not_resent_by_botocore(aws: pytest.MonkeyPatch, settings: Settings,
                                                  fake: FakeSes) -> None:
    """SES may have taken a message whose answer was lost: a silent resend could duplicate it.
    (The name is from the boto3 path; the lean path's retry loop is what is tested now.)"""
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
    """moto parses the lean path's hand-made JSON body as it parses boto3's."""
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


# ---------------------------------------------------------------- the lean request


def test_request_body_is_build_request_as_json() -> None:
    for configuration_set in ("events", None):
        expected = build_request(RAW, ENVELOPE, configuration_set)
        expected["Content"]["Raw"]["Data"] = base64.b64encode(RAW).decode()
        assert json.loads(request_body(RAW, ENVELOPE, configuration_set)) == expected


def test_request_body_escapes_what_json_must() -> None:
    odd = Envelope('"quoted\\\\"@example.org', "zoë@exämple.net", "é\"}", "k")
    request = json.loads(request_body(RAW, odd))
    assert request["FromEmailAddress"] == odd.sender
    assert request["Destination"] == {"ToAddresses": [odd.recipient]}
    assert request["EmailTags"] == [{"Name": "issue", "Value": "___"}]


def test_every_byte_value_arrives_intact(ses: SesTransport, fake: FakeSes) -> None:
    raw = bytes(range(256)) * 250  # 64,000 bytes, every value, the size of an issue
    message_id = ses.send(raw, ENVELOPE)
    [accepted] = fake.messages()
    assert (accepted.message_id, accepted.raw, accepted.size) == (message_id, raw, len(raw))


@dataclass
class Recorded:
    method: str
    target: str  # the request line's target: a path, or an absolute URL through a proxy
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Recorder:
    """An HTTP server that keeps what it receives and gives one canned answer."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    status: int = 200
    answer_headers: dict[str, str] = field(default_factory=dict)
    answer: bytes = b'{"MessageId": "0100-recorded"}'


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorder.requests.append(Recorded(self.command, self.path, {
                name.lower(): value for name, value in self.headers.items()}, body))
            self.send_response(recorder.status)
            for name, value in recorder.answer_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(recorder.answer)))
            self.end_headers()
            self.wfile.write(recorder.answer)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads, server.block_on_close = True, False
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    with serving(server):
        yield recorder


def sigv4(recorded: Recorded, secret: str) -> tuple[dict[str, str], str]:
    """The Authorization header's fields, and the signature computed here for what arrived,
    from AWS's specification (not botocore's code): canonical request, string to sign, key."""
    algorithm, _, rest = recorded.headers["authorization"].partition(" ")
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert algorithm == "AWS4-HMAC-SHA256"
    _, date, region, service, _ = fields["Credential"].split("/")
    names = fields["SignedHeaders"].split(";")
    canonical = "\n".join([
        recorded.method, urlsplit(recorded.target).path, "",
        "".join(f"{name}:{' '.join(recorded.headers[name].split())}\n" for name in names),
        fields["SignedHeaders"], hashlib.sha256(recorded.body).hexdigest()])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", recorded.headers["x-amz-date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return fields, hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_the_request_is_sendemail_signed_with_sigv4(aws: pytest.MonkeyPatch, settings: Settings,
                                                     recorder: Recorder) -> None:
    with connect(aws, settings, recorder.url, configuration_set="events") as transport:
        assert transport.send(RAW, ENVELOPE) == "0100-recorded"
    [request] = recorder.requests
    assert (request.method, request.target) == ("POST", SEND_EMAIL_PATH)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == recorder.url.removeprefix("http://")
    assert request.body == request_body(RAW, ENVELOPE, "events")
    fields, expected = sigv4(request, "testing")
    assert fields["Credential"].split("/")[::2] == ["testing", "eu-west-1", "aws4_request"]
    assert fields["Credential"].split("/")[3] == "ses"  # sesv2's signing name
    assert fields["Credential"].split("/")[1] == request.headers["x-amz-date"][:8]
    assert set(fields["SignedHeaders"].split(";")) == {"content-type", "host", "x-amz-date"}
    assert fields["Signature"] == expected
    signed_at = dt.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    assert abs(signed_at.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(
        minutes=1)


def test_an_endpoint_with_a_path_keeps_it(aws: pytest.MonkeyPatch, settings: Settings,
                                          recorder: Recorder) -> None:
    """As botocore joins them: a gateway's prefix, then the operation's path."""
    with connect(aws, settings, recorder.url + "/gateway/") as transport:
        transport.send(RAW, ENVELOPE)
    [request] = recorder.requests
    assert request.target == "/gateway" + SEND_EMAIL_PATH
    fields, expected = sigv4(request, "testing")
    assert fields["Signature"] == expected


class Rotating(CredentialProvider):
    """Temporary credentials that botocore refreshes at every use (they expire in 12 minutes,
    inside its 15-minute advisory window); with ``fail``, every refresh fails."""

    METHOD = CANONICAL_NAME = "rotating-test"

    def __init__(self, expires_in: dt.timedelta, *, fail: bool = False):
        super().__init__()
        self.expires_in, self.fail, self.issued = expires_in, fail, 0

    def fetch(self) -> dict[str, str]:
        if self.fail and self.issued:
            raise CredentialRetrievalError(provider=self.METHOD, error_msg="the role is gone")
        self.issued += 1
        return {"access_key": f"key-{self.issued}", "secret_key": f"secret-{self.issued}",
                "token": f"token-{self.issued}",
                "expiry_time": (dt.datetime.now(dt.UTC) + self.expires_in).isoformat()}

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(self.fetch(), self.fetch, self.METHOD)


def rotating_transport(aws: pytest.MonkeyPatch, url: str, provider: Rotating) -> SesTransport:
    aws.setenv("AWS_ENDPOINT_URL_SESV2", url)
    core = botocore.session.get_session()
    core.get_component("credential_provider").insert_before("env", provider)
    session = boto3.session.Session(botocore_session=core, region_name="eu-west-1")
    return SesTransport(session, client_config(4, attempts=1))


def test_refreshed_credentials_are_picked_up(aws: pytest.MonkeyPatch,
                                             recorder: Recorder) -> None:
    with rotating_transport(aws, recorder.url, Rotating(dt.timedelta(minutes=12))) as transport:
        for _ in range(3):
            transport.send(RAW, ENVELOPE)
    keys = []
    for request in recorder.requests:
        fields, _ = sigv4(request, "unused")
        key = fields["Credential"].split("/")[0]
        number = key.removeprefix("key-")
        assert request.headers["x-amz-security-token"] == f"token-{number}"
        assert "x-amz-security-token" in fields["SignedHeaders"].split(";")
        assert fields["Signature"] == sigv4(request, f"secret-{number}")[1]
        keys.append(int(number))
    assert len(keys) == 3 and keys == sorted(set(keys)) and keys[0] > 1  # a new set each time


def test_credentials_that_cannot_be_refreshed_are_fatal(aws: pytest.MonkeyPatch,
                                                        recorder: Recorder) -> None:
    provider = Rotating(dt.timedelta(minutes=5), fail=True)  # inside the mandatory window
    with rotating_transport(aws, recorder.url, provider) as transport, \
            pytest.raises(FatalTransportError, match="the role is gone"):
        transport.send(RAW, ENVELOPE)
    assert recorder.requests == []


def test_a_proxy_from_the_environment_is_used(aws: pytest.MonkeyPatch, settings: Settings,
                                              recorder: Recorder) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        aws.delenv(name, raising=False)
    aws.setenv("HTTP_PROXY", recorder.url)  # botocore's client would use it too
    with connect(aws, settings, "http://ses.test.invalid:4242") as transport:
        assert transport.send(RAW, ENVELOPE) == "0100-recorded"
    [request] = recorder.requests
    assert request.target == f"http://ses.test.invalid:4242{SEND_EMAIL_PATH}"
    assert request.headers["host"] == "ses.test.invalid:4242"
    assert sigv4(request, "testing")[0]["Signature"] == sigv4(request, "testing")[1]


@pytest.mark.parametrize(("status", "headers", "data"), [
    (429, {"x-amzn-ErrorType": "TooManyRequestsException:http://internal.amazon.com/"},
     b'{"message": "Maximum sending rate exceeded."}'),
    (400, {"x-amzn-ErrorType": "MessageRejected"}, b'{"message": "Address blacklisted."}'),
    (400, {}, b'{"__type": "com.amazon.ses#BadRequestException", "Message": "bad address"}'),
    (400, {}, b'{"code": "NotFoundException", "message": "no such set"}'),
    (403, {}, b"<html>Forbidden by the proxy</html>"),
    (502, {}, b"<html>Bad Gateway</html>"),
    (503, {}, b""),
    (500, {"x-amzn-ErrorType": "InternalFailure"}, b"not json"),
])
def test_error_answers_are_read_as_botocore_reads_them(status: int, headers: dict[str, str],
                                                       data: bytes) -> None:
    from botocore.parsers import create_parser
    from urllib3 import HTTPHeaderDict

    answer = Answer(status, HTTPHeaderDict(headers), data)
    botocore_reads = create_parser("rest-json").parse(
        {"status_code": status, "headers": HTTPHeaderDict(headers), "body": data}, None)
    error = read_error_answer(answer)
    assert error.response["Error"] == botocore_reads["Error"]
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status


@pytest.mark.parametrize(("status", "headers", "data", "expected", "words"), [
    (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>", TransientError,
     "502 (HTTP 502): Bad Gateway"),
    (400, {"x-amzn-ErrorType": "MessageRejected"}, b'{"message": "Address blacklisted."}',
     PermanentError, "MessageRejected (HTTP 400): Address blacklisted."),
    (200, {}, b"<html>a captive portal</html>", UnknownOutcome, "captive portal"),
    (200, {}, b'{"Other": 1}', UnknownOutcome, "without a MessageId"),
])
def test_odd_answers(aws: pytest.MonkeyPatch, settings: Settings, recorder: Recorder,
                     status: int, headers: dict[str, str], data: bytes,
                     expected: type[DeliveryError], words: str) -> None:
    recorder.status, recorder.answer_headers, recorder.answer = status, headers, data
    with connect(aws, settings, recorder.url, attempts=1) as transport, \
            pytest.raises(DeliveryError, match=re.escape(words)) as caught:
        transport.send(RAW, ENVELOPE)
    assert type(caught.value) is expected


# ---------------------------------------------------------------- retries


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """No backoff sleeps; the (attempt, throttled) of each wait asked for."""
    asked: list[tuple[int, bool]] = []

    def no_wait(attempt: int, *, throttled: bool) -> float:
        asked.append((attempt, throttled))
        return 0.0

    monkeypatch.setattr(ses_module, "retry_delay", no_wait)
    return asked


@pytest.mark.parametrize(("faults", "expected", "throttled"), [
    ({"throttle": 1.0}, Throttled, True),
    ({"error5xx": 1.0}, TransientError, False),
])
def test_refusals_before_acceptance_are_retried_up_to_the_attempts(
        aws: pytest.MonkeyPatch, settings: Settings, fake: FakeSes, waits: list[tuple[int, bool]],
        faults: dict[str, Any], expected: type[DeliveryError], throttled: bool) -> None:
    fake.configure(**faults)
    with connect(aws, settings, fake.url, attempts=3) as transport, pytest.raises(expected):
        transport.send(RAW, ENVELOPE)
    assert sum(fake.stats()["outcomes"].values()) == 3 and fake.messages() == []
    assert waits == [(1, throttled), (2, throttled)]


@pytest.mark.parametrize(("faults", "expected"), [
    ({"reject": ("reader@example.net",)}, PermanentError),
    ({"mode": "paused"}, FatalTransportError),
    ({"daily_quota": 0}, FatalTransportError),
    ({"timeout": 1.0, "timeout_after": 1.0}, UnknownOutcome),
    ({"late": 1.0, "late_after": 1.0}, UnknownOutcome),
    ({"lost": 1.0}, UnknownOutcome),
])
def test_what_may_have_arrived_or_no_wait_cures_is_tried_once(
        aws: pytest.MonkeyPatch, settings: Settings, fake: FakeSes, waits: list[tuple[int, bool]],
        faults: dict[str, Any], expected: type[DeliveryError]) -> None:
    fake.configure(**faults)
    with connect(aws, settings, fake.url, attempts=3) as transport, \
            pytest.raises(DeliveryError) as caught:
        transport.send(RAW, ENVELOPE)
    assert type(caught.value) is expected
    outcomes = fake.stats()["outcomes"]
    assert sum(n for outcome, n in outcomes.items() if outcome != "accepted") == 1, outcomes
    assert len(fake.messages()) <= 1 and waits == []


def test_an_unreachable_endpoint_is_retried(aws: pytest.MonkeyPatch, settings: Settings,
                                            waits: list[tuple[int, bool]]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening
        with connect(aws, settings, url, attempts=3) as transport, \
                pytest.raises(TransientError, match=r"NewConnectionError.*refused"):
            transport.send(RAW, ENVELOPE)
    assert waits == [(1, False), (2, False)]


def test_retry_delay_is_botocores_standard_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ses_module.random, "random", lambda: 1.0)  # the upper bounds
    assert [retry_delay(n, throttled=True) for n in (1, 2, 3, 9)] == [1.0, 2.0, 4.0, 20.0]
    assert [retry_delay(n, throttled=False) for n in (1, 2)] == [0.05, 0.1]


def test_total_attempts_reads_the_client_config() -> None:
    from botocore.config import Config

    assert total_attempts(client_config(4, attempts=5)) == 5
    assert total_attempts(Config(retries={"max_attempts": 1})) == 2  # botocore counts retries
    assert total_attempts(Config()) == 3


# ---------------------------------------------------------------- network failures


@pytest.mark.parametrize(("error", "expected", "words"), [
    (NotSent("NewConnectionError: Failed to establish a new connection: [Errno 111] "
             "Connection refused"), TransientError, "Connection refused"),
    (NotSent("SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]"), TransientError,
     "CERTIFICATE_VERIFY_FAILED"),
    (urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out. (read timeout=10)"),
     UnknownOutcome, "no answer in time"),
    (urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
     UnknownOutcome, "the connection ended before SES answered"),
    (urllib3.exceptions.SSLError("[SSL: UNEXPECTED_EOF_WHILE_READING]"), UnknownOutcome,
     "the connection ended before SES answered"),
    (ValueError("something unclassified"), UnknownOutcome, "SES may have accepted"),
])
def test_network_errors_are_mapped_by_phase(error: Exception, expected: type[DeliveryError],
                                            words: str) -> None:
    mapped = network_error(error, "sending")
    assert type(mapped) is expected
    assert words in str(mapped)
    if not isinstance(error, NotSent):  # NotSent's own text names the error of the connect
        assert mapped.detail.startswith(f"{type(error).__name__}: ")


# ---------------------------------------------------------------- TLS


def self_signed_ec(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA: (certificate file, key file)."""
    _, cert_file, key_file = self_signed(folder, name, ec.generate_private_key(ec.SECP256R1()),
                                         common_name=name)
    return cert_file, key_file


@pytest.fixture
def tls_fake(tmp_path: Path) -> Iterator[tuple[FakeSes, str, Path]]:
    """The fake behind TLS (its listening socket wrapped): (fake, https URL, its certificate)."""
    cert_file, key_file = self_signed_ec(tmp_path, "fakeses")
    server = FakeSes(seed=1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server._server.socket = context.wrap_socket(server._server.socket, server_side=True)
    with server:
        yield server, server.url.replace("http://", "https://", 1), cert_file


def test_tls_is_verified_against_the_aws_ca_bundle(
        aws: pytest.MonkeyPatch, settings: Settings,
        tls_fake: tuple[FakeSes, str, Path]) -> None:
    fake, url, cert_file = tls_fake
    aws.setenv("AWS_CA_BUNDLE", str(cert_file))
    with connect(aws, settings, url) as transport:
        message_id = transport.send(RAW, ENVELOPE)
        fake.configure(lost=1.0)  # a reset once the request is out: the same over TLS
        with pytest.raises(UnknownOutcome, match="may have accepted"):
            transport.send(RAW, ENVELOPE)
    [first, second] = fake.messages()
    assert (first.message_id, first.answer, second.answer) == (message_id, "ok", "lost")


def test_an_untrusted_certificate_is_transient_and_sends_nothing(
        aws: pytest.MonkeyPatch, settings: Settings, tmp_path: Path,
        tls_fake: tuple[FakeSes, str, Path]) -> None:
    fake, url, _ = tls_fake
    aws.setenv("AWS_CA_BUNDLE", str(self_signed_ec(tmp_path, "another-ca")[0]))
    with connect(aws, settings, url) as transport, \
            pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
        transport.send(RAW, ENVELOPE)
    assert fake.messages() == [] and fake.stats()["outcomes"] == {}


# ---------------------------------------------------------------- the pool


def test_the_pool_follows_the_client_config(aws: pytest.MonkeyPatch, settings: Settings,
                                            fake: FakeSes) -> None:
    with connect(aws, settings, fake.url, read_timeout=0.7) as transport:
        pool = transport._http._pool
        assert pool is not None
        assert pool.pool is not None and pool.pool.maxsize == 5  # client_config(4): 4 + 1
        assert (pool.timeout.connect_timeout, pool.timeout.read_timeout) == (
            ses_module.CONNECT_TIMEOUT, 0.7)
        assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in pool.conn_kw["socket_options"]
        transport.send(RAW, ENVELOPE)
        transport.send(RAW, ENVELOPE)
        assert pool.num_connections == 1  # kept alive
    assert pool.pool is None  # closed with the transport


def test_threads_share_the_pool(aws: pytest.MonkeyPatch, settings: Settings,
                                fake: FakeSes) -> None:
    def send(n: int) -> str:
        return transport.send(RAW, Envelope(ENVELOPE.sender, f"r{n}@example.net", "i", f"{n}"))

    with connect(aws, settings, fake.url) as transport, ThreadPoolExecutor(8) as threads:
        message_ids = list(threads.map(send, range(64)))
    assert len(set(message_ids)) == 64
    assert fake.counts() == {f"r{n}@example.net": 1 for n in range(64)}

