"""A small authoritative DNS server over real UDP, serving an in-memory zone. Stdlib + dnspython.

It answers as a real nameserver does: the records asked for; NOERROR with an empty answer for
a name that exists with other types only (or has names below it); NXDOMAIN for any other name.
Names are matched case-insensitively, with or without a final dot. In a test::

    with FakeDns({("_dmarc.example.org", "TXT"): ["v=DMARC1; p=none;"]}) as fake:
        resolver = make_resolver(fake.address)          # "127.0.0.1:PORT"
        fake.set("bounce.example.org", "MX", ["10 feedback-smtp.eu-west-1.amazonses.com"])
        fake.remove("_dmarc.example.org", "TXT")
        fake.servfail = True                             # every answer SERVFAIL from now on
        fake.silent = True                               # no answer at all: the client times out
        fake.queries                                     # [("_dmarc.example.org", "TXT"), ...]

Values are written as ``Record.value`` spells them: TXT unquoted (split into 255-byte strings
on the wire when longer), CNAME and MX targets with or without a final dot.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.TXT import TXT

TTL = 300


class FakeDns:
    """The server; ``records`` maps (name, type) to that RRset's values."""

    def __init__(self, records: Mapping[tuple[str, str], Iterable[str]] | None = None):
        self._records: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()
        self.servfail = False
        self.silent = False
        self.queries: list[tuple[str, str]] = []
        self.errors: list[Exception] = []  # raised again on exit: a broken fake fails the test
        for (name, rdtype), values in (records or {}).items():
            self.set(name, rdtype, values)
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,),
                                        name="fakedns", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"{host}:{port}"

    def set(self, name: str, rdtype: str, values: Iterable[str]) -> None:
        with self._lock:
            self._records[_key(name), rdtype.upper()] = list(values)

    def remove(self, name: str, rdtype: str) -> None:
        with self._lock:
            self._records.pop((_key(name), rdtype.upper()), None)

    def __enter__(self) -> FakeDns:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        if self.errors and error is None:
            raise self.errors[0]

    def answer(self, wire: bytes) -> bytes | None:
        """The response to one query, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not DNS: a real server would drop it too
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name, rdtype = _key(question.name.to_text()), dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((name, rdtype))
            if self.silent:
                return None
            if self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif values := self._records.get((name, rdtype)):
                response.answer.append(_rrset(question.name, rdtype, values))
            elif not any(known == name or known.endswith(f".{name}") for known, _ in self._records):
                response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


class _Server(socketserver.UDPServer):
    def __init__(self, fake: FakeDns):
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        data, sock = self.request
        try:
            reply = self.server.fake.answer(data)
        except Exception as error:  # kept for __exit__; the client times out
            self.server.fake.errors.append(error)
            return
        if reply is not None:
            sock.sendto(reply, self.client_address)


def _rrset(name: dns.name.Name, rdtype: str, values: list[str]) -> dns.rrset.RRset:
    rdatas = [_txt(value) if rdtype == "TXT" else
              # relativize=False: by default from_text makes "x.example." relative to its origin
              dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=dns.name.root,
                                  relativize=False)
              for value in values]
    return dns.rrset.from_rdata_list(name, TTL, rdatas)


def _txt(value: str) -> TXT:
    data = value.encode()
    strings = [data[start:start + 255] for start in range(0, len(data), 255)] or [b""]
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)


def _key(name: str) -> str:
    return name.rstrip(".").lower()
