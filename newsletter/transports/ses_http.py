"""SES v2 SendEmail over one urllib3 pool, signed by botocore: the lean half of ``SesTransport``.

Why. boto3's ``send_email`` costs about 1 ms of CPU per message, the whole budget of the send
engine: it validates the parameters against the model, serialises them (``json.dumps`` scans the
85 KB of base64 for characters to escape), resolves the endpoint through its rules, emits a dozen
events and parses the answer through the model again. The same request assembled directly
(``ses.request_body``), signed by botocore's own ``SigV4Auth`` and posted over a urllib3 pool
costs less than half of that; ``bench/ses_call.py`` measures both (figures in ``ses.py``).

What stays botocore's, so that the request is the one boto3 would send and every setting keeps
working: the endpoint and region (the client's: ``AWS_ENDPOINT_URL_SESV2``, ``AWS_REGION``, FIPS
or dual-stack), the signing name from the service model, the credentials (the session's,
refreshed by botocore when they expire), the connection settings of the client's ``Config``
(timeouts, pool size, TCP keepalive, client certificate, proxies) and its CA bundle
(``AWS_CA_BUNDLE``, ``ca_bundle``, ``REQUESTS_CA_BUNDLE``, certifi).

Phases. The connections of this pool raise ``NotSent`` when they cannot be opened (TCP connect,
TLS handshake and certificate, proxy tunnel): not one byte of the request has left, so it may be
sent again. Every other failure comes once the request was being written, and is the caller's to
treat as "SES may have it". The pool never retries by itself (``retries=False``).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.httpsession import ProxyConfiguration, create_urllib3_context, get_cert_path
from botocore.utils import get_environ_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

SEND_EMAIL_PATH = "/v2/email/outbound-emails"  # sesv2 SendEmail: POST, rest-json
USER_AGENT = f"newsletter urllib3/{urllib3.__version__}"
MAX_ERROR_TEXT = 300  # characters kept of an error body that is not SES's JSON (a proxy's page)


class NotSent(Exception):
    """The connection could not be opened: nothing of the request left this process."""


class Answer(NamedTuple):
    """An HTTP answer, read in full."""

    status: int
    headers: Mapping[str, str]  # case-insensitive (urllib3's HTTPHeaderDict)
    data: bytes


class SendEmailHttp:
    """Posts signed SendEmail bodies to the endpoint of a boto3 ``sesv2`` client; thread-safe."""

    def __init__(self, client: Any, session: Any):
        meta = client.meta
        # as botocore joins them: the endpoint's own path (a gateway's prefix), then SendEmail's
        self.url = meta.endpoint_url.rstrip("/") + SEND_EMAIL_PATH
        self.region = meta.region_name
        self._signing_name = meta.service_model.signing_name  # "ses", not "sesv2"
        self._credentials = session.get_credentials()
        self._headers = {"Content-Type": "application/json", "Host": _host(parse_url(self.url)),
                         "User-Agent": USER_AGENT}
        self._pool, self._target = _connection_pool(self.url, meta.config, _ca_bundle(session))

    def sign(self, body: bytes) -> dict[str, str]:
        """The headers of a POST of ``body``, SigV4-signed now with the current credentials.

        Raises botocore's own errors when credentials cannot be refreshed."""
        request = AWSRequest("POST", self.url, headers=self._headers, data=body)
        credentials = self._credentials.get_frozen_credentials()
        SigV4Auth(credentials, self._signing_name, self.region).add_auth(request)
        return dict(request.headers.items())

    def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """One request, no retry. ``NotSent`` if no connection; any other exception may come
        after SES received the request (urllib3's ReadTimeoutError, ProtocolError, ...)."""
        response = self._pool.urlopen("POST", self._target, body=body, headers=headers,
                                      retries=False, redirect=False)
        return Answer(response.status, response.headers, response.data)

    def close(self) -> None:
        if isinstance(self._pool, urllib3.PoolManager):
            self._pool.clear()
        else:
            self._pool.close()


def client_error(answer: Answer, operation: str = "SendEmail") -> ClientError:
    """The ``ClientError`` botocore's rest-json parser makes of an error answer, so that one
    table (``ses.error_class``) judges both paths. The code is ``x-amzn-ErrorType`` (what
    precedes ":"), else the body's ``code``, else its ``__type``, else the HTTP status; the text is
    the body's ``message``. A 5xx that is empty or an HTML page (a proxy's) gets the status as
    code and its reason as text; another body that is not JSON is the text itself."""
    text = answer.data.decode("utf-8", "replace")
    if answer.status >= 500 and (not text.strip() or text.strip().startswith("<html>")):
        code, message = str(answer.status), http.client.responses.get(answer.status, "")
    else:
        body = _json_object(text)
        code = str(body.get("__type") or answer.status).split(":", 1)[0].rsplit("#", 1)[-1]
        if "x-amzn-ErrorType" in answer.headers:
            code = answer.headers["x-amzn-ErrorType"].split(":")[0]
        elif "code" in body or "Code" in body:
            code = str(body.get("code", body.get("Code", "")))
        message = str(body.get("message", body.get("Message", "")))
    return ClientError({
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": answer.status,
                             "RequestId": answer.headers.get("x-amzn-RequestId", "")},
    }, operation)


def _json_object(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        return {"message": text[:MAX_ERROR_TEXT]}
    return body if isinstance(body, dict) else {}


# ---------------------------------------------------------------- the pool


def _connect_or_not_sent(connect: Callable[[], None]) -> None:
    try:
        connect()
    except Exception as error:
        raise NotSent(f"{type(error).__name__}: {error}") from error


class _HTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _connect_or_not_sent(super().connect)


class _HTTPSConnection(HTTPSConnection):
    def connect(self) -> None:  # TCP, the proxy's CONNECT tunnel if any, the TLS handshake
        _connect_or_not_sent(super().connect)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _connection_pool(url: str, config: Config, ca_bundle: str
                     ) -> tuple[HTTPConnectionPool | urllib3.PoolManager, str]:
    """The pool for ``url`` and the request target to give it: the endpoint's own pool and the
    path, or, when a proxy applies (``Config.proxies``, else ``HTTPS_PROXY``/``NO_PROXY`` & co,
    as botocore), a proxy manager and the whole URL."""
    target = parse_url(url)
    options = _pool_options(config)
    if target.scheme == "https":
        options.update(_tls_options(config, ca_bundle))
    proxies = ProxyConfiguration(
        proxies=get_environ_proxies(url) if config.proxies is None else config.proxies,
        proxies_settings=config.proxies_config)
    proxy_url = proxies.proxy_url_for(url)
    if proxy_url:
        return _proxy_manager(proxy_url, proxies, **options), url
    pool_class = _HTTPSPool if target.scheme == "https" else _HTTPPool
    return pool_class(str(target.host), target.port, **options), target.request_uri


def _pool_options(config: Config) -> dict[str, Any]:
    """What botocore's ``URLLib3Session`` gives its pools, from the client's ``Config``."""
    socket_options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    if config.tcp_keepalive:
        socket_options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    return {"maxsize": config.max_pool_connections, "block": False,
            "timeout": urllib3.Timeout(connect=config.connect_timeout,
                                       read=config.read_timeout),
            "retries": False, "socket_options": socket_options}


def _tls_options(config: Config, ca_bundle: str) -> dict[str, Any]:
    cert_file, key_file = (config.client_cert if isinstance(config.client_cert, tuple)
                           else (config.client_cert, None))
    return {"ssl_context": create_urllib3_context(), "cert_reqs": "CERT_REQUIRED",
            "ca_certs": ca_bundle, "cert_file": cert_file, "key_file": key_file}


def _ca_bundle(session: Any) -> str:
    """The CA bundle botocore's client verifies SES against (botocore.session.create_client,
    then EndpointCreator): ``AWS_CA_BUNDLE`` or the profile's ``ca_bundle``, else
    ``REQUESTS_CA_BUNDLE``, else certifi's. boto3 keeps its botocore session in ``_session``."""
    verify = (session._session.get_config_variable("ca_bundle")
              or os.environ.get("REQUESTS_CA_BUNDLE") or True)
    return str(get_cert_path(verify))


def _proxy_manager(proxy_url: str, proxies: ProxyConfiguration,
                   **options: Any) -> urllib3.ProxyManager:
    """As botocore's ``URLLib3Session._get_proxy_manager``: credentials in the proxy's URL, and
    ``proxy_ca_bundle``, ``proxy_client_cert``, ``proxy_use_forwarding_for_https`` settings."""
    settings = proxies.settings
    context = None
    if settings.get("proxy_ca_bundle") or settings.get("proxy_client_cert"):
        context = create_urllib3_context()
        if settings.get("proxy_ca_bundle"):
            context.load_verify_locations(cafile=settings["proxy_ca_bundle"])
        cert = settings.get("proxy_client_cert")
        if cert:
            context.load_cert_chain(*(cert if isinstance(cert, tuple) else (cert,)))
    manager = urllib3.ProxyManager(
        proxy_url, proxy_headers=proxies.proxy_headers_for(proxy_url), proxy_ssl_context=context,
        use_forwarding_for_https=bool(settings.get("proxy_use_forwarding_for_https")), **options)
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


def _host(url: Any) -> str:
    """The Host header, as botocore signs it: the port only when it is not the scheme's."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.host if url.port in (None, default) else f"{url.host}:{url.port}"
