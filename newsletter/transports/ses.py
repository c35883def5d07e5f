"""The SES transport: boto3 ``sesv2.send_email`` with the raw message; SES errors become ours.

Region, endpoint and credentials come from boto3's own chain only (``AWS_PROFILE``,
``AWS_REGION``, ``AWS_ENDPOINT_URL_SESV2``, ``~/.aws``, instance roles): never from our config.
botocore itself reads ``AWS_DEFAULT_REGION``, not ``AWS_REGION`` (the name the other AWS SDKs and
Lambda use), so ``AWS_REGION`` is passed on explicitly when set.

Retries. botocore's "standard" mode resends, with jittered exponential backoff and up to
``TOTAL_ATTEMPTS`` attempts in all, what is safe to resend: throttling (HTTP 429,
``TooManyRequestsException``) and 5xx answers, which SES gives before it accepts a message, and
connections that could not be opened (refused, connect timeout), over which nothing was sent.
``_veto_unsafe_retry`` stops it from resending two other things:

- a request that went out and got no answer: a read timeout (``ses_timeout``), or a connection
  reset, closed or broken once the request was being written. SES may well have accepted that
  message, and a resend would mail the reader twice. It reaches the send engine as
  ``UnknownOutcome``, which the engine records as ``unknown`` and never resends by itself.
- answers that no wait will cure (daily quota exhausted, which SES words as a throttling error;
  ``LimitExceededException``): ``error_class`` makes them fatal, so resending only wastes time.

Errors. ``error_class`` below is the whole table from SES/botocore words to our
``DeliveryError`` subclasses; the provider's code, status and message stay in ``detail``.
"""

from __future__ import annotations

import os
import re
import threading
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

CONNECT_TIMEOUT = 5.0  # seconds; SES answers SendEmail in ~50-100 ms
READ_TIMEOUT = 10.0  # the default ses_timeout: long enough for a 40 MB upload's answer
TOTAL_ATTEMPTS = 3  # the first attempt and two retries (botocore's max_attempts counts retries)

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


def tag_value(text: str) -> str:
    """``text`` as an SES tag value: other characters become "_", at most 256 of them."""
    return _TAG_UNSAFE.sub("_", text)[:256] or "_"


class SesTransport(Transport):
    """Sends through Amazon SES v2; thread-safe (boto3 clients are), one client for all threads."""

    name = "ses"

    def __init__(self, session: boto3.session.Session, config: Config, *,
                 configuration_set: str | None = None):
        self.configuration_set = configuration_set
        self._session, self._config = session, config
        self._client = _make_client(session, "sesv2", config)
        self._client.meta.events.register_first("needs-retry.sesv2.SendEmail",
                                                _veto_unsafe_retry)
        self._v1: Any = None  # the SES v1 client, made when GetAccount turns out unavailable
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, session: boto3.session.Session | None = None,
                      config: Config | None = None) -> SesTransport:
        """The transport for ``settings``; ConfigError if AWS has no region or credentials."""
        if session is None:
            session = _session()
        config = config or client_config(settings.concurrency, read_timeout=settings.ses_timeout)
        return cls(session, config, configuration_set=settings.ses_configuration_set)

    def send(self, raw: bytes, envelope: Envelope) -> str:
        """Build the request, post it, return SES's MessageId; DeliveryError on failure."""
        request = build_request(raw, envelope, self.configuration_set)
        response = self._post(request, envelope)
        return str(response["MessageId"])

    def _post(self, request: dict[str, Any], envelope: Envelope) -> dict[str, Any]:
        """The only I/O of a send."""
        with ses_errors(f"SES did not take the message to {envelope.recipient}",
                        sender=envelope.sender):
            response: dict[str, Any] = self._client.send_email(**request)
        return response

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
                self._v1 = _make_client(self._session, "ses", self._config)
            return self._v1

    def close(self) -> None:
        self._client.close()
        if self._v1 is not None:
            self._v1.close()

    def __repr__(self) -> str:
        return f"SesTransport({self._client.meta.endpoint_url})"


# ---------------------------------------------------------------- clients


def _session() -> boto3.session.Session:
    try:
        return boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
    except BotoCoreError as error:  # e.g. ProfileNotFound for a wrong AWS_PROFILE
        raise ConfigError(f"AWS configuration for SES: {error}") from None


def _make_client(session: boto3.session.Session, service: str, config: Config) -> Any:
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


def _veto_unsafe_retry(response: tuple[Any, dict[str, Any]] | None = None,
                       caught_exception: Exception | None = None,
                       operation: Any = None, **_: Any) -> None:
    """A ``needs-retry`` hook, run before botocore's own (its event name is more specific):
    raising here ends the call with that error instead of a retry."""
    if caught_exception is not None and may_have_arrived(caught_exception):
        raise caught_exception
    if response is not None and "Error" in response[1]:
        error = ClientError(response[1], operation.name)
        if error_class(error) is FatalTransportError:
            raise error


# ---------------------------------------------------------------- errors


@contextmanager
def ses_errors(what: str, *, sender: str = "") -> Iterator[None]:
    """Turn botocore's exceptions raised inside into our DeliveryError subclasses."""
    try:
        yield
    except ClientError as error:
        raise error_class(error, sender)(what, detail=_detail(error)) from error
    except BotoCoreError as error:
        raise _botocore_error(error, what) from error
    except ResponseParserError as error:  # a proxy's HTML page, a truncated answer
        raise TransientError(what, detail=f"unreadable answer: {error}") from error


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


def may_have_arrived(error: Exception) -> bool:
    """Whether a request that failed with ``error`` may have reached SES all the same.

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
        waited = "no answer in time" if isinstance(error, ReadTimeoutError) else \
            "the connection ended before SES answered"
        return UnknownOutcome(f"{waited}: SES may have accepted the message", detail=detail)
    if isinstance(error, ConnectionError):
        return TransientError(what, detail=detail)
    if isinstance(error, ParamValidationError):
        return PermanentError(what, detail=detail)
    # NoCredentialsError, expired SSO tokens, unreadable profiles: every message would fail.
    return FatalTransportError(what, detail=detail)


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
