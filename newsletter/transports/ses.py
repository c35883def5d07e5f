"""The SES transport: SendEmail with the raw message; SES errors become ours.

Region, endpoint and credentials come from boto3's own chain only (``AWS_PROFILE``,
``AWS_REGION``, ``AWS_ENDPOINT_URL_SESV2``, ``~/.aws``, instance roles): never from our config.
botocore itself reads ``AWS_DEFAULT_REGION``, not ``AWS_REGION`` (the name the other AWS SDKs and
Lambda use), so ``AWS_REGION`` is passed on explicitly when set.

Two paths. ``send`` does not call boto3: it assembles the SendEmail JSON itself
(``request_body``) and posts it, signed by botocore's ``SigV4Auth``, over a urllib3 pool
(``ses_http.SendEmailHttp``), because boto3's ``send_email`` alone costs about 1 ms of CPU per
message, the send engine's whole budget. ``bench/ses_call.py`` (a 64 KB ASIT message to
``tests/fakeses.py``, one thread, CPU time, Python 3.11, 2 busy cores): boto3 1.0-1.1 ms, this
path 0.47 ms (0.07 the body, 0.09 the signature, 0.3 urllib3, the socket and the answer).
``quota`` (one call per send, not per message) stays on the boto3 client.

Retries. ``send`` resends by itself, with jittered exponential backoff and up to
``TOTAL_ATTEMPTS`` attempts in all (the ``total_max_attempts`` of the client's ``Config``), what
botocore's "standard" mode resends and is safe to resend: throttling (HTTP 429,
``TooManyRequestsException``) and 5xx answers, which SES gives before it accepts a message, and
connections that could not be opened (refused, DNS, connect timeout, TLS handshake), over which
nothing was sent. Never resent:

- a request that went out and got no answer: a read timeout (``ses_timeout``), or a connection
  reset, closed or broken once the request was being written. SES may well have accepted that
  message, and a resend would mail the reader twice. It reaches the send engine as
  ``UnknownOutcome``, which the engine records as ``unknown`` and never resends by itself.
- answers that no wait will cure (daily quota exhausted, which SES words as a throttling error;
  ``LimitExceededException``): ``error_class`` makes them fatal, so resending only wastes time.

Errors. ``error_class`` below is the whole table from SES/botocore words to our
``DeliveryError`` subclasses; the provider's code, status and message stay in ``detail``. An
answer of the lean path becomes the ``ClientError`` botocore would have raised
(``ses_http.client_error``), so both paths go through that one table.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)
from botocore.parsers import ResponseParserError
from urllib3.exceptions import ReadTimeoutError as NoAnswerInTime

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
from newsletter.transports.base import ISSUE_TAG, Envelope, Quota, Transport
from newsletter.transports.ses_http import Answer, NotSent, SendEmailHttp, client_error

CONNECT_TIMEOUT = 5.0  # seconds; SES answers SendEmail in ~50-100 ms
READ_TIMEOUT = 10.0  # the default ses_timeout: long enough for a 40 MB upload's answer
TOTAL_ATTEMPTS = 3  # the first attempt and two retries (botocore's max_attempts counts retries)
# botocore's standard backoff: up to scale * 2**(attempt - 1) seconds, at random, at most 20 s;
# the scale is 1 s after a throttle, 50 ms after anything else.
THROTTLED_BACKOFF, TRANSIENT_BACKOFF, MAX_BACKOFF = 1.0, 0.05, 20.0

NO_REGION = ("no AWS region for SES: set AWS_REGION (or AWS_DEFAULT_REGION, or `region` in the "
             "AWS_PROFILE's section of ~/.aws/config)")
NO_CREDENTIALS = ("no AWS credentials for SES: set AWS_PROFILE (a profile in ~/.aws), or "
                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance role")

# SES tag names and values allow ASCII letters, digits, "_" and "-", up to 256 characters
# (botocore's sesv2 model, shape MessageTagValue).
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# Provider error codes, v2 and v1 spellings (v1 only answers quota calls here).
_THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
_TRANSIENT = {"InternalFailure", "InternalError", "InternalServerError", "ServiceUnavailable",
              "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException"}
_PERMANENT = {"MessageRejected", "BadRequestException", "InvalidParameterValue",
              "ValidationError", "ValidationException"}
_FATAL = {
    # the account or its sending is stopped
    "AccountSuspendedException", "SendingPausedException", "AccountSendingPausedException",
    "ConfigurationSetSendingPausedException", "LimitExceededException",
    # a setting every message shares is wrong: configuration set, custom MAIL FROM domain
    "NotFoundException", "ConfigurationSetDoesNotExist", "MailFromDomainNotVerifiedException",
    # credentials refused, or not allowed to send
    "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "IncompleteSignature", "InvalidSignatureException", "MissingAuthenticationToken",
    "MissingAuthenticationTokenException", "ExpiredToken", "ExpiredTokenException",
    "AccessDenied", "AccessDeniedException", "NotAuthorized", "OptInRequired",
}
_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException"}


def client_config(concurrency: int, *, connect_timeout: float = CONNECT_TIMEOUT,
                  read_timeout: float = READ_TIMEOUT, attempts: int = TOTAL_ATTEMPTS) -> Config:
    """botocore settings for ``concurrency`` sending threads (one pooled connection each)."""
    return Config(
        max_pool_connections=concurrency + 1,  # + 1 for quota() from the engine's own thread
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": attempts},
        tcp_keepalive=True,
    )


def build_request(raw: bytes, envelope: Envelope,
                  configuration_set: str | None = None) -> dict[str, Any]:
    """The ``send_email`` keyword arguments for one message (pure: test it with ``==``)."""
    request: dict[str, Any] = {
        "FromEmailAddress": envelope.sender,
        "Destination": {"ToAddresses": [envelope.recipient]},
        "Content": {"Raw": {"Data": raw}},
        "EmailTags": [{"Name": ISSUE_TAG, "Value": tag_value(envelope.issue)}],
    }
    if configuration_set:
        request["ConfigurationSetName"] = configuration_set
    return request


def request_body(raw: bytes, envelope: Envelope, configuration_set: str | None = None) -> bytes:
    """``build_request`` as SendEmail's JSON body, the raw message in base64.

    The base64 text is spliced in rather than given to ``json.dumps``, which would scan its
    85 KB for characters to escape (none can occur in base64): 0.18 ms more per message."""
    request = build_request(b"", envelope, configuration_set)
    del request["Content"]
    head = json.dumps(request, separators=(",", ":")).encode()  # ends with the closing "}"
    return b"".join((head[:-1], b',"Content":{"Raw":{"Data":"', base64.b64encode(raw),
                     b'"}}}'))


def tag_value(text: str) -> str:
    """``text`` as an SES tag value: other characters become "_", at most 256 of them."""
    return _TAG_UNSAFE.sub("_", text)[:256] or "_"


class SesTransport(Transport):
    """Sends through Amazon SES v2; thread-safe, one pool and one boto3 client for all threads."""

    name = "ses"

    def __init__(self, session: boto3.session.Session, config: Config, *,
                 configuration_set: str | None = None):
        self.configuration_set = configuration_set
        self._session, self._config = session, config
        self._client = make_client(session, "sesv2", config)
        self._http = SendEmailHttp(self._client, session)
        self._attempts = total_attempts(self._client.meta.config)  # ours, or AWS_MAX_ATTEMPTS
        self._v1: Any = None  # the SES v1 client, made when GetAccount turns out unavailable
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, session: boto3.session.Session | None = None,
                      config: Config | None = None) -> SesTransport:
        """The transport for ``settings``; ConfigError if AWS has no region or credentials."""
        if session is None:
            session = aws_session()
        config = config or client_config(settings.concurrency, read_timeout=settings.ses_timeout)
        return cls(session, config, configuration_set=settings.ses_configuration_set)

    def send(self, raw: bytes, envelope: Envelope) -> str:
        """Post the message, retrying what did not reach SES; SES's MessageId, or DeliveryError."""
        body = request_body(raw, envelope, self.configuration_set)
        attempt = 1
        while True:
            try:
                return self._post(body, envelope)
            except (Throttled, TransientError) as error:
                if attempt >= self._attempts:
                    raise
                time.sleep(retry_delay(attempt, throttled=isinstance(error, Throttled)))
            attempt += 1

    def _post(self, body: bytes, envelope: Envelope) -> str:
        """One attempt: the only I/O of a send."""
        what = f"SES did not take the message to {envelope.recipient}"
        with ses_errors(what):  # credentials that cannot be refreshed
            headers = self._http.sign(body)
        try:
            answer = self._http.post(body, headers)
        except Exception as error:
            raise network_error(error, what) from error
        if answer.status == 200:
            return message_id(answer)
        refusal = client_error(answer)
        raise error_class(refusal, envelope.sender)(what, detail=_detail(refusal)) from refusal

    def quota(self) -> Quota:
        """Limits from sesv2 GetAccount, or SES v1 GetSendQuota where GetAccount is missing."""
        if self._v1 is None:
            send_quota = self._account_quota()
            if send_quota is not None:
                return _quota(send_quota)
        with ses_errors("cannot read the SES sending quota"):
            return _quota(self._ses_v1().get_send_quota())

    def _account_quota(self) -> dict[str, Any] | None:
        """GetAccount's SendQuota; None where the endpoint lacks GetAccount (moto answers 404)
        or the IAM policy allows ``ses:GetSendQuota`` but not ``ses:GetAccount``."""
        with ses_errors("cannot read the SES sending quota"):
            try:
                return dict(self._client.get_account()["SendQuota"])
            except ClientError as error:
                if _status(error) != 404 and _code(error) not in _ACCESS_DENIED:
                    raise
        return None

    def _ses_v1(self) -> Any:
        with self._lock:
            if self._v1 is None:
                self._v1 = make_client(self._session, "ses", self._config)
            return self._v1

    def close(self) -> None:
        self._http.close()
        self._client.close()
        if self._v1 is not None:
            self._v1.close()

    def __repr__(self) -> str:
        return f"SesTransport({self._client.meta.endpoint_url})"


# ---------------------------------------------------------------- clients


def aws_session() -> boto3.session.Session:
    """A session from boto3's own chain, with AWS_REGION honoured (see the module docstring)."""
    try:
        return boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
    except BotoCoreError as error:  # e.g. ProfileNotFound for a wrong AWS_PROFILE
        raise ConfigError(f"AWS configuration for SES: {error}") from None


def make_client(session: boto3.session.Session, service: str, config: Config) -> Any:
    """A client, or ConfigError naming what to set (botocore would only fail at the first send)."""
    try:
        if not session.region_name:
            raise ConfigError(NO_REGION)
        if session.get_credentials() is None:
            raise ConfigError(NO_CREDENTIALS)
        return session.client(service, config=config)
    except NoRegionError:
        raise ConfigError(NO_REGION) from None
    except BotoCoreError as error:
        raise ConfigError(f"AWS configuration for SES: {error}") from None


# ---------------------------------------------------------------- retries


def total_attempts(config: Config) -> int:
    """Attempts per message in all, as the client's botocore ``Config`` counts them."""
    retries = config.retries or {}
    if "total_max_attempts" in retries:
        return max(1, int(retries["total_max_attempts"]))
    if "max_attempts" in retries:  # retries only
        return max(1, int(retries["max_attempts"]) + 1)
    return TOTAL_ATTEMPTS


def retry_delay(attempt: int, *, throttled: bool) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 1), botocore's way."""
    scale = THROTTLED_BACKOFF if throttled else TRANSIENT_BACKOFF
    return random.random() * min(MAX_BACKOFF, scale * 2 ** (attempt - 1))


# ---------------------------------------------------------------- errors


def error_class(error: ClientError, sender: str = "") -> type[DeliveryError]:
    """What the engine should do about an error answer from SES."""
    code, status = _code(error), _status(error)
    message = str(error.response.get("Error", {}).get("Message", ""))
    if code in _THROTTLED or status == 429:
        # SES words an exhausted daily quota as throttling too ("Daily message quota exceeded");
        # no backoff helps until the 24-hour window moves on.
        # https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html
        return FatalTransportError if "daily" in message.lower() else Throttled
    if code in _FATAL or status in (401, 403):
        return FatalTransportError
    if code in _TRANSIENT or status >= 500:
        return TransientError
    if code == "MessageRejected" and sender and sender.lower() in message.lower():
        # "Email address is not verified ... failed the check: <sender>" (moto: "Did not have
        # authority to send from email <sender>"): every other message would fail the same way.
        return FatalTransportError
    return PermanentError  # MessageRejected, a bad address, any other 4xx: this message only


def network_error(error: Exception, what: str) -> DeliveryError:
    """A failure of the lean path's HTTP exchange, by the phase it happened in. Opening the
    connection (``NotSent``: TCP connect, DNS, TLS handshake or certificate, proxy tunnel) sent
    nothing. Anything after it may come once SES has the whole request: urllib3's
    ReadTimeoutError, ProtocolError (a reset, a close, a broken pipe), SSLError (a TLS stream cut
    short), anything unclassified."""
    if isinstance(error, NotSent):
        return TransientError(what, detail=str(error))
    return _unknown_outcome(error, timed_out=isinstance(error, NoAnswerInTime))


def message_id(answer: Answer) -> str:
    """The MessageId of a 200 answer. A 200 is SES's word that it took the message: without a
    readable id, the outcome is unknown, not failed (a resend would mail it twice)."""
    try:
        return str(json.loads(answer.data)["MessageId"])
    except (ValueError, KeyError, TypeError) as error:
        raise UnknownOutcome("SES answered 200 without a MessageId: it may have accepted the "
                             "message", detail=repr(answer.data[:300])) from error


@contextmanager
def ses_errors(what: str, *, sender: str = "") -> Iterator[None]:
    """Turn botocore's exceptions raised inside (boto3 calls, credentials) into ours."""
    try:
        yield
    except ClientError as error:
        raise error_class(error, sender)(what, detail=_detail(error)) from error
    except BotoCoreError as error:
        raise _botocore_error(error, what) from error
    except ResponseParserError as error:  # a proxy's HTML page, a truncated answer
        raise TransientError(what, detail=f"unreadable answer: {error}") from error


def may_have_arrived(error: Exception) -> bool:
    """Whether a boto3 request that failed with ``error`` may have reached SES all the same.

    botocore raises ``ConnectionError`` subclasses where no connection was made (refused, DNS,
    connect timeout, proxy) and ``HTTPClientError`` ones once the request is on its way (read
    timeout; ``ConnectionClosedError`` for a reset or a close; anything unclassified). A TLS
    error is both: a failed handshake sent nothing, an abrupt end of a TLS stream may follow a
    request SES took."""
    if isinstance(error, SSLError):
        return "certificate" not in str(error).lower() and "handshake" not in str(error).lower()
    return isinstance(error, HTTPClientError)


def _botocore_error(error: BotoCoreError, what: str) -> DeliveryError:
    """Errors raised before or instead of an answer from SES."""
    detail = f"{type(error).__name__}: {error}"
    if may_have_arrived(error):
        return _unknown_outcome(error, timed_out=isinstance(error, ReadTimeoutError))
    if isinstance(error, ConnectionError):
        return TransientError(what, detail=detail)
    if isinstance(error, ParamValidationError):
        return PermanentError(what, detail=detail)
    # NoCredentialsError, expired SSO tokens, unreadable profiles: every message would fail.
    return FatalTransportError(what, detail=detail)


def _unknown_outcome(error: Exception, *, timed_out: bool) -> UnknownOutcome:
    waited = "no answer in time" if timed_out else "the connection ended before SES answered"
    return UnknownOutcome(f"{waited}: SES may have accepted the message",
                          detail=f"{type(error).__name__}: {error}")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _detail(error: ClientError) -> str:
    message = error.response.get("Error", {}).get("Message", "")
    head = f"{_code(error)} (HTTP {_status(error)})"
    return f"{head}: {message}" if message else head


def _quota(send_quota: dict[str, Any]) -> Quota:
    return Quota(max_send_rate=float(send_quota["MaxSendRate"]),
                 max_24_hour_send=float(send_quota["Max24HourSend"]),
                 sent_last_24_hours=float(send_quota["SentLast24Hours"]))
