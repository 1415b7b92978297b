"""The in-memory harness of tests/unit/test_fuzz_site.py: one exchange of
raw HTTP/1.1 bytes with the proxy (fuzz_proxy.py), every timer run out,
with the answers parsed as a client reads them (fuzz_answers.py) and the log
events checked; and the hypothesis settings of the fuzz tests.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, settings
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from genaiproxy.observe.logs import LinesObserver
from genaiproxy.upstream import bodies
from support.fuzz_answers import Answer, parse_answers
from support.fuzz_proxy import TOKEN, Proxy, Received

# Time steps after a request has been sent: past HEADER_TIMEOUT, then past
# REQUEST_TIMEOUT (a stalled body), then past KEEPALIVE_TIMEOUT.
TIME_STEPS = (11.0, 61.0, 76.0)

# ./run-tests --fast (HYPOTHESIS_PROFILE=fast) tries a tenth of the examples.
_SHARE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "fast" else 1

FUZZ_SETTINGS = settings(
    max_examples=400 // _SHARE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
API_SETTINGS = settings(FUZZ_SETTINGS, max_examples=150 // _SHARE)


# The client side of one exchange.


@dataclass
class FuzzRequest:
    """A client request as raw bytes, with what the checks need to know of it."""

    method: bytes
    target: bytes
    version: bytes = b"HTTP/1.1"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    framing: str = "length"  # length, chunked, none, or one of BAD_FRAMINGS
    cuts: tuple[int, ...] = ()  # where a chunked body is split

    def raw(self) -> bytes:
        lines = [self.method + b" " + self.target + b" " + self.version]
        lines += [name + b": " + value for name, value in self.headers]
        body = self.body
        if self.framing == "length":
            lines.append(b"Content-Length: %d" % len(body))
        elif self.framing == "chunked":
            lines.append(b"Transfer-Encoding: chunked")
            body = chunked(body, self.cuts)
        elif self.framing == "none":
            body = b""
        else:
            lines.append(self.framing.encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    @property
    def sent_body(self) -> bytes | None:
        """The body as the client framed it (None when the framing is bad)."""
        if self.framing in ("length", "chunked"):
            return self.body
        return b"" if self.framing == "none" else None

    def header(self, name: bytes) -> bytes | None:
        """The last value of header C{name}, as twisted.web's getHeader gives it."""
        values = [v.strip(b" \t") for n, v in self.headers if n.lower() == name]
        return values[-1] if values else None

    @property
    def carries_token(self) -> bool:
        """Whether any Authorization header holds the token as a word."""
        return any(name.strip().lower() == b"authorization" and TOKEN in value.split()
                   for name, value in self.headers)


def chunked(body: bytes, cuts: tuple[int, ...]) -> bytes:
    """C{body} in chunked transfer coding, cut at C{cuts} (modulo its length)."""
    edges = [0, *sorted({c % (len(body) + 1) for c in cuts}), len(body)]
    pieces = [body[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@dataclass
class Exchange:
    """What one request led to: the client's answers, whether the proxy
    closed the connection, what reached the upstream, what was logged wrong."""

    request: FuzzRequest
    answers: list[Answer]
    closed: bool
    received: list[Received]
    crashes: list[str]


class LogCapture:
    """The events logged during one exchange."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, logged: dict[str, Any]) -> None:
        self.events.append(logged)

    def problems(self) -> list[str]:
        """Failures logged (a crash), and events the service's JSON log
        observer cannot write as one JSON line."""
        found = []
        renderer = LinesObserver(io.StringIO())
        for logged in self.events:
            if logged.get("log_failure") is not None:
                found.append(logged["log_failure"].getTraceback())
            if not str(logged.get("log_namespace", "")).startswith("genaiproxy"):
                continue
            try:
                record = json.loads(renderer.render(logged))
            except Exception as e:  # noqa: BLE001 - any error here is the finding
                found.append(f"log event {logged.get('log_format')!r} cannot be rendered: {e!r}")
                continue
            if record.get("event") == "unserializable_log_event":
                found.append(f"log event {logged.get('log_format')!r} is not serialisable")
        return found


def settle(proxy: Proxy, transport: StringTransport) -> None:
    """Run what is due now until nothing moves."""
    quiet = 0
    for _ in range(200):
        size = len(transport.value())
        proxy.clock.advance(0)
        if not proxy.hold_uploads:
            proxy.pacing.advance(0)
        moved = proxy.agent.deliver()
        quiet = 0 if moved or len(transport.value()) != size else quiet + 1
        if quiet >= 2:
            return


def exchange(proxy: Proxy, request: FuzzRequest) -> Exchange:
    """Send C{request} on a new connection, let every timer run out, and
    read what the client received."""
    capture = LogCapture()
    globalLogPublisher.addObserver(capture)
    try:
        with mock.patch.object(bodies, "FileBodyProducer", proxy.file_body_producer):
            peer = IPv4Address("TCP", "127.0.0.1", 40000)
            transport = StringTransport(peerAddress=peer)
            channel = proxy.site.buildProtocol(peer)
            channel.makeConnection(transport)
            try:
                channel.dataReceived(request.raw())
            except Exception:  # noqa: BLE001 - the reactor would log it and drop the connection
                capture({"log_failure": Failure(), "log_namespace": "reactor"})
                transport.loseConnection()
            settle(proxy, transport)
            for step in TIME_STEPS:
                proxy.clock.advance(step)
                settle(proxy, transport)
            closed = transport.disconnecting
            channel.connectionLost(Failure(ConnectionDone()))
            proxy.hold_uploads = False
            settle(proxy, transport)
    finally:
        globalLogPublisher.removeObserver(capture)
    answers = parse_answers(transport.value(), request.method == b"HEAD", closed)
    assert proxy.forwarder.in_flight == 0, "a forwarded request was never finished"
    assert proxy.site.open_connections == 0
    return Exchange(request, answers, closed, proxy.received(), capture.problems())
