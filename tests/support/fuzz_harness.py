"""The in-memory harness of tests/test_fuzz_site.py: the proxy built as the
service builds it (L{genaiproxy.testing.MemoryProxy}), an upstream that
records what reaches it, and one exchange of raw HTTP/1.1 bytes with the
answers parsed as a client reads them.
"""

from __future__ import annotations

import io
import json
import os
import re
import string
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, settings
from treq.testing import RequestTraversalAgent
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, Cooperator
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from genaiproxy.forwarding.forwarder import Forwarder
from genaiproxy.observe.logs import LinesObserver
from genaiproxy.server.site import ProxySite
from genaiproxy.testing import MemoryProxy
from genaiproxy.upstream import bodies

TOKEN = b"tok-5f2c9a71e0d84b36"
KEY = b"key-0123456789abcdef"
SUBSCRIPTION = b"Ocp-Apim-Subscription-Key"
UPSTREAM = b"http://upstream.invalid"
BASE = UPSTREAM + b"/genai"
# What an open health probe may be sent to without a token.
OPEN_PROBES = {BASE + b"/", BASE + b"/v1/health"}
UPSTREAM_BODY = b'{"id":"up-1","object":"fuzz.answer"}'
API_VERSION = b"2024-10-21"

COMMON_ENV = {
    "GENAI_SUBSCRIPTION_NAME": SUBSCRIPTION.decode(),
    "GENAI_API_KEY": KEY.decode(),
    "GENAI_BASE_URL": BASE.decode(),
}
MODES = {
    "open": COMMON_ENV,
    "token": {
        **COMMON_ENV,
        "AUTH_TOKEN": TOKEN.decode(),
        "ALLOWED_ORIGINS": "https://app.example",
        "GENAI_API_VERSION": API_VERSION.decode(),
        "MAX_REQUEST_BODY_MB": "0.02",  # 20 kB: deep or long bodies meet the 413
    },
}
MODELS_YAML = "models:\n  - id: gpt-4.1\n  - id: org/model-x\n  - id: gpt-5\n"

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
_TOKEN_RE = re.compile(rb"[" + re.escape(TCHAR.encode()) + rb"]+")
_TARGET_RE = re.compile(rb"[\x21-\x7e]+")
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


# The in-memory upstream.


@dataclass
class Received:
    """One request as the upstream's Twisted server parsed it, and as the
    proxy handed it to its agent."""

    method: bytes
    url: bytes  # absolute, as given to the agent
    agent_headers: Headers
    uri: bytes = b""  # the request target the server received
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""


class UpstreamResource(Resource):
    """Records each request it receives and answers a small JSON 200."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[bytes, Headers, bytes]] = []

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        self.received.append((request.uri, request.requestHeaders.copy(), request.content.read()))
        request.setHeader(b"content-type", b"application/json")
        return UPSTREAM_BODY


class EarlyRejection(Protocol):
    """An upstream that refuses an upload as soon as its head is in (as a
    gateway answers 401 or 413), before the body has been sent."""

    def __init__(self, received: list[tuple[bytes, Headers, bytes]]) -> None:
        self._received = received
        self._head = b""

    def dataReceived(self, data: bytes) -> None:
        if self._head.endswith(b"\r\n\r\n"):
            return
        self._head += data
        if b"\r\n\r\n" not in self._head:
            return
        self._head = self._head.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        request_line, *lines = self._head.split(b"\r\n")[:-2]
        headers = Headers()
        for line in lines:
            name, _, value = line.partition(b":")
            headers.addRawHeader(name, value.strip())
        self._received.append((request_line.split(b" ")[1], headers, b""))
        body = b'{"error":{"message":"too large","type":"upstream"}}'
        self.transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class LongLinesChannel(HTTPChannel):
    """The upstream's HTTP server, with head limits above the proxy's."""

    MAX_LENGTH = 1 << 20
    totalHeadersSize = 1 << 20


@implementer(IAgent)
class LaterAgent:
    """treq's traversal agent, with its answers held until L{deliver}.

    The traversal agent answers before C{request} returns, which no network
    does (unless C{immediate}); errors raised at once still surface at once,
    as a real Agent's would.
    """

    def __init__(self, inner: RequestTraversalAgent) -> None:
        self._inner = inner
        self.immediate = False
        self.asked: list[tuple[bytes, bytes, Headers]] = []
        self._ready: list[tuple[Deferred[IResponse], object]] = []

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: IBodyProducer | None = None) -> Deferred[IResponse]:
        self.asked.append((method, uri, headers.copy() if headers is not None else Headers()))
        inner = self._inner.request(method, uri, headers, bodyProducer)
        if self.immediate:
            return inner
        answer: Deferred[IResponse] = Deferred()
        inner.addBoth(lambda result: self._ready.append((answer, result)))
        return answer

    def deliver(self) -> bool:
        """Move bytes between proxy and upstream, fire answers that are due;
        whether anything was due."""
        self._inner.flush()
        ready, self._ready = self._ready, []
        for answer, result in ready:
            if answer.called:  # cancelled by the proxy meanwhile
                continue
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback(result)  # type: ignore[arg-type]
        return bool(ready)


@dataclass
class Proxy:
    """The proxy's parts, as build_service wires them, around an in-memory upstream."""

    site: ProxySite
    forwarder: Forwarder
    clock: MemoryReactorClock
    agent: LaterAgent
    upstream: UpstreamResource
    # Paces the reading of spooled uploads (Twisted's cooperator); held back,
    # it stands for an upload still under way when the upstream answers.
    pacing: Clock
    hold_uploads: bool = False

    def received(self) -> list[Received]:
        """What the proxy asked its agent for, joined with what the server parsed."""
        assert len(self.upstream.received) == len(self.agent.asked), (
            "a request the proxy sent did not reach the upstream as a parsable request",
            self.agent.asked, self.upstream.received)
        return [Received(method, url, agent_headers, uri, headers, body)
                for (method, url, agent_headers), (uri, headers, body)
                in zip(self.agent.asked, self.upstream.received, strict=True)]

    def file_body_producer(self, file: Any) -> FileBodyProducer:
        """Twisted's FileBodyProducer, on this proxy's cooperator rather than
        the one the global reactor drives."""
        pacing = self.pacing
        return FileBodyProducer(file, Cooperator(scheduler=lambda work: pacing.callLater(0, work)))


def build_proxy(mode: str, models_path: str, early_rejection: bool = False) -> Proxy:
    """A fresh proxy (per example: it takes a fraction of a millisecond):
    genaiproxy.testing's in-memory one, its upstream's answers held a turn."""
    upstream = UpstreamResource()
    agents: list[LaterAgent] = []

    def later(inner: RequestTraversalAgent) -> IAgent:
        # Its server takes longer heads than the proxy (the base URL's path and
        # the added headers make what the proxy sends longer than what it got),
        # and records bodies without parsing forms (Twisted's parser raises on a
        # Content-Type holding a vertical tab).
        inner._serverFactory.protocol = LongLinesChannel
        inner._serverFactory._parsePOSTFormSubmission = False
        if early_rejection:
            server = Factory()
            server.protocol = lambda: EarlyRejection(upstream.received)  # type: ignore[assignment]
            inner._serverFactory = server
        agents.append(LaterAgent(inner))
        return agents[-1]

    memory = MemoryProxy(upstream, MODES[mode], models_path, wrap_agent=later)
    return Proxy(memory.site, memory.forwarder, memory.clock, agents[0], upstream, Clock())


# Answers as the client reads them.


@dataclass
class Answer:
    """One answer as the client read it (header names in lower case)."""

    status: int
    headers: dict[bytes, list[bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.get(name)
        return values[-1] if values else None


class Incomplete(Exception):
    """The bytes so far end inside an answer."""


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    """A chunked body at the start of C{data}: (body, what follows it)."""
    body, rest = b"", data
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise Incomplete
        assert re.fullmatch(rb"[0-9a-fA-F]+", line), f"bad chunk size line {line!r}"
        size = int(line, 16)
        if size == 0:
            if not rest.startswith(b"\r\n"):
                raise Incomplete
            return body, rest[2:]
        if len(rest) < size + 2:
            raise Incomplete
        assert rest[size:size + 2] == b"\r\n", "chunk not followed by CRLF"
        body, rest = body + rest[:size], rest[size + 2:]


def _one_answer(data: bytes, head: bool, closed: bool) -> tuple[Answer, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise Incomplete
    status_line, *lines = data[:end].split(b"\r\n")
    rest = data[end + 4:]
    match = re.fullmatch(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [^\r\n\x00]*", status_line)
    assert match, f"malformed status line {status_line!r}"
    headers: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        assert sep and _TOKEN_RE.fullmatch(name), f"malformed header line {line!r}"
        assert not set(value) & set(b"\r\n\x00"), f"CR, LF or NUL in header {line!r}"
        headers.setdefault(name.lower(), []).append(value.strip(b" \t"))
    answer = Answer(int(match.group(1)), headers, b"")
    if answer.status < 200 or answer.status in (204, 304) or head:
        return answer, rest
    if b"chunked" in b",".join(headers.get(b"transfer-encoding", [])).lower():
        answer.body, rest = _dechunk(rest)
        return answer, rest
    lengths = headers.get(b"content-length")
    if lengths is None:
        assert closed, "an answer without length or chunks on a connection left open"
        return Answer(answer.status, headers, rest), b""
    assert len(lengths) == 1 and lengths[0].isdigit(), f"bad Content-Length {lengths!r}"
    size = int(lengths[0])
    if len(rest) < size:
        raise Incomplete
    answer.body = rest[:size]
    return answer, rest[size:]


def _all_answers(data: bytes, head: bool, closed: bool) -> list[Answer]:
    answers: list[Answer] = []
    while data:
        try:
            answer, data = _one_answer(data, head, closed)
        except Incomplete:
            raise AssertionError(f"an answer was cut short or never finished: {data[:300]!r}") from None
        if answer.status >= 200:
            answers.append(answer)
    return answers


def parse_answers(data: bytes, head: bool, closed: bool) -> list[Answer]:
    """Every complete answer (informational ones left out) in C{data}."""
    try:
        return _all_answers(data, head, closed)
    except AssertionError:
        if not head:
            raise
        # The channel's refusals (400, 414, 431, ...) are written before the
        # method is known: a HEAD request gets their body too.
        return _all_answers(data, False, closed)


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


