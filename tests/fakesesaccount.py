"""An SES v2 account's settings over real HTTP: the calls ``ses setup`` and ``ses doctor`` make.

moto's SES v2 (5.2) cannot stand in for them: it has no GetAccount, no event destinations, no
custom MAIL FROM, no DKIM tokens, and its identities never become verified. This server
speaks what botocore's sesv2 model says for those calls (restJson: JSON bodies, errors as the
modelled HTTP status with an ``x-amzn-ErrorType`` header) and keeps the state in memory.
SNS, SQS and STS stay with moto. In a test::

    with FakeSesAccount() as fake:
        ... AWS_ENDPOINT_URL_SESV2=fake.url ...
        fake.verify("asit-project.eu")     # what SES does once it finds the DNS records
        fake.account.update(ProductionAccessEnabled=False)
        fake.writes                          # every call that changed something, in order

Stdlib only.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def _not_found(what: str) -> _Refusal:
    return _Refusal(404, "NotFoundException", f"{what} does not exist.")


def _exists(what: str) -> _Refusal:
    return _Refusal(400, "AlreadyExistsException", f"{what} already exists.")


@dataclass
class _State:
    account: dict[str, Any] = field(default_factory=lambda: {
        "ProductionAccessEnabled": True, "SendingEnabled": True, "EnforcementStatus": "HEALTHY",
        "DedicatedIpAutoWarmupEnabled": False,
        "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 0.0},
        "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]}})
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)
    configuration_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    destinations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    denied: set[str] = field(default_factory=set)  # operations answered with AccessDenied


class FakeSesAccount:
    def __init__(self) -> None:
        self.state = _State()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeSesAccount:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ test controls

    @property
    def account(self) -> dict[str, Any]:
        return self.state.account

    @property
    def writes(self) -> list[str]:
        return self.state.writes

    def identity(self, name: str) -> dict[str, Any]:
        return self.state.identities[name]

    def verify(self, name: str) -> None:
        """What SES does once it finds the identity's DKIM (and MAIL FROM) records in DNS."""
        with self.lock:
            identity = self.state.identities[name]
            identity["VerifiedForSendingStatus"] = True
            identity["VerificationStatus"] = "SUCCESS"
            identity["DkimAttributes"]["Status"] = "SUCCESS"
            if identity["MailFromAttributes"].get("MailFromDomain"):
                identity["MailFromAttributes"]["MailFromDomainStatus"] = "SUCCESS"

    def deny(self, *operations: str) -> None:
        """Answer these operations (``GetAccount``) with AccessDenied, as IAM would."""
        self.state.denied.update(operations)

    # ------------------------------------------------------------ the API

    def handle(self, method: str, path: str, query: dict[str, str],
               body: dict[str, Any]) -> dict[str, Any]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts[:2] != ["v2", "email"]:
            raise _Refusal(404, "UnknownOperationException", path)
        route = (method, *parts[2:])
        with self.lock:
            return self._route(route, query, body)

    def _route(self, route: tuple[str, ...], query: dict[str, str],
               body: dict[str, Any]) -> dict[str, Any]:
        match route:
            case ("GET", "account"):
                return self._read("GetAccount", lambda: self.state.account)
            case ("PUT", "account", "suppression"):
                self._write("PutAccountSuppressionAttributes")
                self.state.account["SuppressionAttributes"] = {
                    "SuppressedReasons": body.get("SuppressedReasons", [])}
                return {}
            case ("POST", "identities"):
                return self._create_identity(body)
            case ("GET", "identities", name):
                return self._read("GetEmailIdentity", lambda: self._identity(name))
            case ("PUT", "identities", name, "mail-from"):
                self._write("PutEmailIdentityMailFromAttributes")
                self._identity(name)["MailFromAttributes"] = {
                    "MailFromDomain": body.get("MailFromDomain", ""),
                    "MailFromDomainStatus": "PENDING",
                    "BehaviorOnMxFailure": body.get("BehaviorOnMxFailure",
                                                    "USE_DEFAULT_VALUE")}
                return {}
            case ("POST", "configuration-sets"):
                return self._create_configuration_set(body)
            case ("GET", "configuration-sets", name):
                return self._read("GetConfigurationSet", lambda: self._configuration_set(name))
            case ("GET", "configuration-sets", name, "event-destinations"):
                return self._read("GetConfigurationSetEventDestinations", lambda: {
                    "EventDestinations": [
                        {"Name": key, **value} for key, value in
                        self._destinations(name).items()]})
            case ("POST", "configuration-sets", name, "event-destinations"):
                self._write("CreateConfigurationSetEventDestination")
                destinations = self._destinations(name)
                if body["EventDestinationName"] in destinations:
                    raise _exists(f"Event destination {body['EventDestinationName']}")
                destinations[body["EventDestinationName"]] = _destination(body)
                return {}
            case ("PUT", "configuration-sets", name, "event-destinations", destination):
                self._write("UpdateConfigurationSetEventDestination")
                destinations = self._destinations(name)
                if destination not in destinations:
                    raise _not_found(f"Event destination {destination}")
                destinations[destination] = _destination(body)
                return {}
        raise _Refusal(404, "UnknownOperationException", "/".join(route))

    def _read(self, operation: str, answer: Any) -> dict[str, Any]:
        self._allowed(operation)
        return dict(answer())

    def _write(self, operation: str) -> None:
        self._allowed(operation)
        self.state.writes.append(operation)

    def _allowed(self, operation: str) -> None:
        if operation in self.state.denied:
            raise _Refusal(403, "AccessDeniedException",
                           f"User is not authorized to perform: ses:{operation}")

    def _identity(self, name: str) -> dict[str, Any]:
        if name not in self.state.identities:
            raise _not_found(f"Email identity {name}")
        return self.state.identities[name]

    def _create_identity(self, body: dict[str, Any]) -> dict[str, Any]:
        self._write("CreateEmailIdentity")
        name = body["EmailIdentity"]
        if name in self.state.identities:
            raise _exists(f"Email identity {name}")
        domain = "@" not in name
        identity = {
            "IdentityType": "DOMAIN" if domain else "EMAIL_ADDRESS",
            "FeedbackForwardingStatus": True, "VerifiedForSendingStatus": False,
            "VerificationStatus": "PENDING",
            "DkimAttributes": {
                "SigningEnabled": domain, "Status": "PENDING" if domain else "NOT_STARTED",
                "Tokens": [secrets.token_hex(16) for _ in range(3)] if domain else [],
                "SigningAttributesOrigin": "AWS_SES",
                "NextSigningKeyLength": body.get("DkimSigningAttributes", {}).get(
                    "NextSigningKeyLength", "RSA_2048_BIT")},
            "MailFromAttributes": {"MailFromDomain": "", "MailFromDomainStatus": "PENDING",
                                   "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
            "Policies": {}, "Tags": body.get("Tags", [])}
        self.state.identities[name] = identity
        return {key: identity[key] for key in
                ("IdentityType", "VerifiedForSendingStatus", "DkimAttributes")}

    def _configuration_set(self, name: str) -> dict[str, Any]:
        if name not in self.state.configuration_sets:
            raise _not_found(f"Configuration set {name}")
        return self.state.configuration_sets[name]

    def _create_configuration_set(self, body: dict[str, Any]) -> dict[str, Any]:
        self._write("CreateConfigurationSet")
        name = body["ConfigurationSetName"]
        if name in self.state.configuration_sets:
            raise _exists(f"Configuration set {name}")
        self.state.configuration_sets[name] = {
            "ConfigurationSetName": name, "Tags": body.get("Tags", []),
            "SendingOptions": {"SendingEnabled": True}}
        self.state.destinations[name] = {}
        return {}

    def _destinations(self, name: str) -> dict[str, dict[str, Any]]:
        self._configuration_set(name)
        return self.state.destinations[name]


def _destination(body: dict[str, Any]) -> dict[str, Any]:
    given = body["EventDestination"]
    return {"Enabled": given.get("Enabled", False),
            "MatchingEventTypes": list(given.get("MatchingEventTypes", [])),
            **{key: value for key, value in given.items()
               if key.endswith("Destination")}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        fake: FakeSesAccount = self.server.fake  # type: ignore[attr-defined]
        try:
            document = fake.handle(method, url.path, query, json.loads(raw) if raw else {})
            self._reply(200, document)
        except _Refusal as refusal:
            self._reply(refusal.status, {"message": str(refusal)},
                        {"x-amzn-ErrorType": f"{refusal.code}:http://internal.amazon.com/"})

    def _reply(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
