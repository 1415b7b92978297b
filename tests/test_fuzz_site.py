"""Property tests of the whole Site: any bytes a client sends get a safe answer.

The proxy faces clients it does not control (SDKs, browsers, scanners), so
every request, however malformed, must end in one of two ways: a JSON error
the proxy makes itself (C{{"error": {"message", "type", ...}}}), or a request
that reached the upstream well formed: under the base URL, with the
subscription key and without the client's credential, and, when a token is
required, only if the client presented it.  Never a traceback in a body,
never a 500 of the proxy's own, never a crash in its log.

Hypothesis writes raw HTTP/1.1 requests (a client library would refuse most
of them: odd methods, percent-encoded dot segments and slashes, raw UTF-8 in
the target, invalid header names, control bytes and obs-text in values,
malformed and deeply nested JSON, huge numbers, invalid UTF-8) and feeds them
to a channel of the real L{ProxySite}, wired as L{build_service} wires it,
over a L{StringTransport}.  Everything runs in memory on a
L{MemoryReactorClock}: the upstream is treq's L{RequestTraversalAgent}
serving a recording resource (which parses what the proxy sends as a real
Twisted server does), wrapped so that its answers arrive a turn later as a
network's would; time is advanced by hand to bring out the timeout answers.

Two configurations: an open proxy with the defaults, and a shared one with
AUTH_TOKEN, CORS on, GENAI_API_VERSION and a small body limit (so 413 is
reached too).  Sizes are bounded and large payloads are built from small
draws (a nesting depth, a digit count), so that generation stays cheap and
hypothesis' health checks hold on a loaded two-core machine.

The tests named C{test_bug_*} pin down bugs these properties found, kept as
regression tests; the fuzz tests' explicit examples hold the same inputs.
"""

from __future__ import annotations

import base64
import io
import json
import re
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
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

from genaiproxy import bodies
from genaiproxy.config import load_config
from genaiproxy.credentials import ClientTokens
from genaiproxy.forward import Forwarder
from genaiproxy.logs import LinesObserver
from genaiproxy.models import ModelCatalog
from genaiproxy.resources import build_tree
from genaiproxy.service import client_limits, watch_secret_files
from genaiproxy.site import AccessPolicy, ProxySite
from genaiproxy.upstream import UpstreamClient

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

FUZZ_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
API_SETTINGS = settings(FUZZ_SETTINGS, max_examples=150)


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
    """A fresh proxy (per example: it takes a fraction of a millisecond)."""
    config = load_config(MODES[mode])
    clock = MemoryReactorClock()
    upstream = UpstreamResource()
    inner = RequestTraversalAgent(upstream)
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
    agent = LaterAgent(inner)
    client = UpstreamClient(config, clock, agent=agent)
    forwarder = Forwarder(client)
    tokens = ClientTokens()
    watch_secret_files(config, client, tokens)
    site = ProxySite(build_tree(forwarder, ModelCatalog(models_path)),
                     AccessPolicy(tokens, config.allowed_origins), client_limits(config))
    site.reactor = clock  # the channels' timers
    return Proxy(site, forwarder, clock, agent, upstream, Clock())


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


# The properties.


def strict_json(body: bytes) -> Any:
    """C{body} as JSON by the RFC (no NaN or Infinity), or ValueError."""
    def reject(constant: str) -> Any:
        raise ValueError(constant)

    return json.loads(body, parse_constant=reject)


def is_json(body: bytes) -> bool:
    """Whether C{body} is JSON by the RFC."""
    try:
        strict_json(body)
    except (ValueError, RecursionError):
        return False
    return True


def gpt5_rewrite_allowed(body: bytes) -> bool:
    """Whether the proxy may rewrite C{body} (a gpt-5 request; see README)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return False
    model = payload.get("model") if isinstance(payload, dict) else None
    return isinstance(model, str) and model[:5].lower() == "gpt-5"


def check_proxy_error(answer: Answer, head: bool) -> None:
    """An answer the proxy made itself: JSON, with error.message and error.type."""
    content_type = answer.header(b"content-type") or b""
    assert content_type.startswith(b"application/json"), answer
    if head and not answer.body:
        return
    document = json.loads(answer.body)
    error = document["error"]
    assert isinstance(error["message"], str) and error["message"].strip(), document
    assert isinstance(error["type"], str) and error["type"], document


_LOOPBACK_ORIGIN = re.compile(rb"https?://(localhost|127\.0\.0\.1|\[::1\])(:[^/]*)?(/.*)?", re.IGNORECASE)


def origin_may_use(mode: str, origin: bytes | None) -> bool:
    """Whether a request with this Origin may be forwarded (README, Access):
    none, one on this machine, or (token mode) the allowed one.  A loose
    test: it only has to hold for every request that is forwarded."""
    if origin is None or _LOOPBACK_ORIGIN.fullmatch(origin):
        return True
    return mode == "token" and origin.rstrip(b"/") == b"https://app.example"


def check_forwarded(mode: str, request: FuzzRequest, sent: Received) -> None:
    """A request that reached the upstream did so well formed, with the key,
    without the client's credentials, and only with the token when one is
    required."""
    assert _TARGET_RE.fullmatch(sent.url), f"URL not a valid request target: {sent.url!r}"
    # What the proxy asked for is what the upstream got; but for a ";" that
    # ends the path, which Twisted's Agent drops: that is for its own test,
    # test_bug_trailing_semicolon_is_cut_off_upstream, to catch.
    url_path, question, url_query = sent.url.partition(b"?")
    assert sent.url == UPSTREAM + sent.uri or (
        url_path.endswith(b";") and url_path[:-1] + question + url_query == UPSTREAM + sent.uri), (
        sent.url, sent.uri)
    assert sent.url.startswith(BASE + b"/"), sent.url
    path, _, _ = sent.uri.partition(b"?")
    assert path.startswith(b"/genai/"), sent.uri
    # Decoded as the upstream will (%76%31 is v1): /genai/ itself, or below /genai/v1/.
    segments = [unquote_to_bytes(s) for s in path.split(b"/")[2:]]
    assert segments == [b""] or segments[0] == b"v1" and len(segments) > 1, sent.uri
    assert not {b".", b".."} & set(segments), f"a dot segment went upstream: {sent.uri!r}"
    assert not any(b"/" in s for s in segments), f"an encoded slash went upstream: {sent.uri!r}"
    # treq upper-cases the method (a lower-case one is another method by the RFC).
    assert sent.method == request.method.upper()
    for headers in (sent.agent_headers, sent.headers):
        assert headers.getRawHeaders(b"authorization") is None
        assert headers.getRawHeaders(b"proxy-authorization") is None
        assert headers.getRawHeaders(SUBSCRIPTION) == [KEY]
        for name, values in headers.getAllRawHeaders():
            assert _TOKEN_RE.fullmatch(name), name
            for value in values:
                assert not set(value) & set(b"\r\n\x00"), (name, value)
    assert origin_may_use(mode, request.header(b"origin")), "forwarded for a foreign web page"
    if mode == "token" and request.method == b"OPTIONS":  # CORS on: preflights are answered here
        assert not (request.header(b"origin") and request.header(b"access-control-request-method"))
    with_version = {url + b"?api-version=" + API_VERSION for url in OPEN_PROBES}
    probe = sent.url in OPEN_PROBES or sent.url in with_version
    if mode == "token" and not request.carries_token:
        assert probe, f"forwarded without the token: {sent.url!r}"
        assert sent.method in (b"GET", b"HEAD") and sent.body == b""
    client_body = request.sent_body
    if client_body is None or sent.body == client_body:
        return
    if probe:
        assert sent.body == b"", "an open probe forwarded a body"
        return
    assert gpt5_rewrite_allowed(client_body), ("the body changed", client_body[:200], sent.body[:200])
    if is_json(client_body):
        assert is_json(sent.body), f"JSON rewritten into something else: {sent.body[:200]!r}"


def check_exchange(mode: str, result: Exchange) -> None:
    """The properties every exchange has, whatever was sent."""
    request = result.request
    head = request.method == b"HEAD"
    assert not result.crashes, "\n".join(result.crashes)
    assert result.answers or result.closed, "no answer, and the connection left open"
    assert len(result.received) <= 1, result.received
    for answer in result.answers:
        assert answer.status != 500, answer
        assert b"Traceback" not in answer.body and b'File "' not in answer.body, answer
        if answer.header(b"x-upstream-status") is not None:
            assert len(result.received) == 1, answer
            assert (answer.status, answer.header(b"x-upstream-status")) == (200, b"200"), answer
            assert answer.body == (b"" if head else UPSTREAM_BODY), answer
        elif answer.status >= 400:
            check_proxy_error(answer, head)
    if result.received:
        assert any(a.header(b"x-upstream-status") for a in result.answers), (
            "the upstream answered but the client did not get it", result.answers)
        check_forwarded(mode, request, result.received[0])


@pytest.fixture(scope="module")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A models.yaml (module-scoped: hypothesis wants no per-test fixture)."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "models.yaml"
    path.write_text(MODELS_YAML)
    return str(path)


def run(mode: str, models_path: str, request: FuzzRequest) -> Exchange:
    """One exchange with a fresh proxy of C{mode}, checked for the properties."""
    result = exchange(build_proxy(mode, models_path), request)
    check_exchange(mode, result)
    return result


# Strategies.  A request is drawn legal but odd (what Twisted's parser lets
# through: the proxy's own code sees it), and one time in three one part is
# broken (the parser's answer is then checked).  Big payloads come from small
# draws (a depth, a digit count).


def mostly(usual: st.SearchStrategy[Any], unusual: st.SearchStrategy[Any],
           one_in: int = 10) -> st.SearchStrategy[Any]:
    """C{usual}, and once in C{one_in} draws C{unusual}."""
    return st.integers(0, one_in - 1).flatmap(lambda n: unusual if n == one_in - 1 else usual)


STANDARD_METHODS = [b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS", b"TRACE",
                    b"CONNECT", b"PRI", b"get", b"Post"]
token_bytes = st.text(alphabet=TCHAR, min_size=1, max_size=10).map(str.encode)
methods = mostly(st.sampled_from(STANDARD_METHODS), token_bytes, 4)

ROUTES = [b"/", b"/health", b"/livez", b"/v1/health", b"/v1/models", b"/v1/models/gpt-4.1",
          b"/v1/models/org/model-x", b"/v1/chat/completions", b"/v1/responses", b"/v1/responses/r1",
          b"/v1/embeddings", b"/v1/files", b"*"]
NAMED_SEGMENTS = [b"v1", b"chat", b"completions", b"responses", b"models", b"health", b"livez",
                  b"embeddings", b"files", b"gpt-4.1", b"gpt-5", b"org%2Fmodel-x", b".", b"..",
                  b".%2e", b"%2E%2E", b"%2e", b"%2F", b"%2f..", b"%00", b"%25", b"%zz", b"%",
                  b"%C3%A9", b"%FF%FE", b"%E2%80%AE", b";x=1", b"\\..", b"%5C..", b"%u002e", b"~",
                  b"\x7f", b"%252E%252E", b"..;", b".;", b";", b"..;x=1", b"%2e%2e;"]
SAFE = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
segments = st.one_of(
    st.sampled_from(NAMED_SEGMENTS),
    st.text(alphabet=SAFE, max_size=8).map(str.encode),
    st.binary(max_size=4).map(lambda b: b"".join(b"%%%02X" % c for c in b)),
    st.text(max_size=3).map(lambda t: quote(t, safe="").encode()),
    st.integers(0x7F, 0xB0).map(lambda c: b"x" + bytes([c])),  # Twisted lets 0x7f-0xb0 through
)
PREFIXES = [b"/", b"/v1/", b"/v1/", b"//v1/", b"/v1/chat/", b"/v1/models/", b"/v1/responses/",
            b"/health/../v1/", b"/v1/./", b"/V1/", b"", b"*", b"http://evil.example/v1/", b"/%76%31/",
            b"xv1/", b"*v1/"]
queries = mostly(st.just(b""), st.one_of(
    st.text(alphabet="abz=&%[],+09/?#;:@", max_size=12).map(lambda t: b"?" + t.encode()),
    st.sampled_from([b"?api-version=1", b"?a=%00", b"?%", b"?x=%zz&&=", b"?q=%C3%A9"]),
), 2)


@st.composite
def targets(draw: st.DrawFn) -> bytes:
    """A request target: a route of the proxy, or a path made of odd segments."""
    if draw(st.integers(0, 19)) == 0:  # now and then very long: 414 past 16 kB
        return b"/v1/" + b"x" * draw(st.integers(1000, 20000))
    if draw(st.booleans()):
        ending = mostly(st.just(b""), st.sampled_from([b"/", b"//", b"/x"]), 3)
        path = draw(st.sampled_from(ROUTES)) + draw(ending)
    else:
        path = draw(st.sampled_from(PREFIXES)) + b"/".join(draw(st.lists(segments, max_size=4)))
    return path + draw(queries)


KNOWN_NAMES = [b"Content-Type", b"Origin", b"X-Request-ID", b"x-request-id", b"Connection",
               b"Keep-Alive", b"Expect", SUBSCRIPTION, SUBSCRIPTION.upper(), b"Proxy-Authorization",
               b"Accept-Encoding", b"Accept", b"Cookie", b"TE", b"Upgrade", b"Trailer",
               b"Access-Control-Request-Method", b"Access-Control-Request-Headers", b"Host",
               b"Content-Encoding", b"X-Forwarded-For", b"Authorization", b"api-key"]
FRAMING_NAMES = {b"content-length", b"transfer-encoding"}
header_names = st.one_of(st.sampled_from(KNOWN_NAMES), token_bytes).filter(
    lambda name: name.lower() not in FRAMING_NAMES)
KNOWN_VALUES = [b"", b"close", b"keep-alive, " + SUBSCRIPTION, b"Authorization, X-Keep", b"100-continue",
                b"application/json", b"text/event-stream", b"gzip, br", b"http://localhost:3000",
                b"http://127.0.0.1", b"http://[::1]:8080", b"https://app.example",
                b"https://app.example/", b"https://evil.example", b"null", b"http://localhost.evil.example",
                b"POST", b"Bearer wrong", b"forged-key", b"x" * 300, b"a\tb", b"caf\xe9"]
header_values = st.one_of(
    st.sampled_from(KNOWN_VALUES),
    st.text(alphabet=string.printable.strip() + " ", max_size=20).map(str.encode),
    st.binary(max_size=8).map(lambda b: bytes(c | 0x80 for c in b)),  # obs-text
    st.sampled_from([b"\x01\x02", b"\x7f", b"a\x0bb", b"a\x1bb"]),  # controls the parser lets by
)
AUTH_VALUES = [b"Bearer " + TOKEN, b"bearer " + TOKEN, b"BEARER  " + TOKEN + b" ", b"Bearer " + TOKEN + b"x",
               b"Bearer " + TOKEN[:-1], b"Basic " + base64.b64encode(b"u:" + TOKEN), b"Bearer", b"Bearer ",
               TOKEN, b"Token " + TOKEN, b"Bearer\t" + TOKEN, b"Bearer " + TOKEN + b", Bearer x"]
auth_headers = mostly(
    st.just([(b"Authorization", b"Bearer " + TOKEN)]),
    st.lists(st.tuples(st.sampled_from([b"Authorization", b"authorization", b"AUTHORIZATION"]),
                       st.sampled_from(AUTH_VALUES)), max_size=2),
    3,
)

# One broken part of a request, by name.
BAD_FRAMINGS = ["Content-Length: abc", "Content-Length: -1", "Content-Length: 1, 1",
                "Content-Length: 99999", "Content-Length: 0\r\nContent-Length: 5", "Transfer-Encoding: gzip",
                "Transfer-Encoding: chunked\r\nContent-Length: 3", "Content-Length: +3",
                "Content-Length: 100000000000"]
BROKEN: dict[str, st.SearchStrategy[Any]] = {
    "method": st.one_of(st.binary(max_size=6), st.sampled_from([b"", b"G T", b"GET\x00", b"G\xc3\xa9T"])),
    "version": st.sampled_from([b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1", b"",
                                b"HTTP/1.1 x"]),
    "framing": st.sampled_from(BAD_FRAMINGS),
    "header": st.tuples(
        st.one_of(st.sampled_from(KNOWN_NAMES), st.binary(max_size=8),
                  st.sampled_from([b"", b"Bad Name", b"X-\xc3\xa9", b"X:Y", b" X"])),
        st.one_of(st.binary(max_size=12), st.sampled_from([b"a\x00b", b"a\rb", b"a\nb"]))),
    "target": st.one_of(
        st.text(min_size=1, max_size=3).map(lambda t: b"/v1/" + t.encode("utf-8")),  # raw UTF-8
        st.binary(min_size=1, max_size=3).map(lambda b: b"/v1/" + b),
        st.sampled_from([b"/v1/a b", b"/v1/models?q=a b", b"/v1/\x01", b"/v1/files?\x00"])),
}
MALFORMED_JSON = [b"{", b'{"model":', b'{"a":1,}', b"[1,2", b'{"model": "gpt-5"', b"\xef\xbb\xbf{}",
                  b'{"model":"gpt-5"}garbage', b"nul\x00l", b"{'model': 'gpt-5'}", b'{"model":"\xff"}',
                  b'"\xc3"', b'{"model":"gpt-5","stream":true', b"NaN", b"-Infinity", b"{}{}", b"\x00",
                  b'{"model":"gpt-5","max_tokens":1,"x":"\\udfff"}', b'"\\ud800"', b"[\"\\u0000\"]"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(),
    st.text(max_size=6), st.sampled_from(["gpt-5", "GPT-5-mini", "gpt-4.1", "\ud800", "gpt-5\x00"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
huge_numbers = st.one_of(
    st.sampled_from([b"1e999999", b"-1e999999", b"1e-999999", b"0.1e400", b"-0"]),
    st.integers(1, 10000).map(lambda n: b"9" * n),
)


@st.composite
def api_objects(draw: st.DrawFn) -> bytes:
    """A JSON object of the APIs, its fields of any type."""
    fields: dict[str, bytes] = {}
    for name, values in [("model", scalars), ("stream", st.one_of(st.just(True), scalars)),
                         ("max_tokens", scalars), ("max_output_tokens", scalars),
                         ("max_completion_tokens", scalars), ("temperature", scalars),
                         ("messages", json_values), ("input", json_values)]:
        if draw(st.booleans()):
            fields[name] = json.dumps(draw(values)).encode()
    if draw(st.booleans()):
        fields[draw(st.sampled_from(["max_tokens", "temperature", "top_p", "n"]))] = draw(huge_numbers)
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()) + b"}"


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 50000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    inner = b"1" if opener == b"[" else b"[]"
    if draw(st.booleans()):
        return opener * depth  # never closed
    return b'{"model":"gpt-5","max_tokens":9,"x":' * draw(st.integers(0, 1)) + (
        opener * depth + inner + closer * depth)


request_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(MALFORMED_JSON),
    nested(),
    huge_numbers,
    json_values.map(lambda v: json.dumps(v).encode()),
    api_objects(),
    api_objects(),
)


@st.composite
def fuzz_requests(draw: st.DrawFn) -> FuzzRequest:
    """Any request a client might send: legal but odd, one part broken now and then."""
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    headers += draw(auth_headers)
    if draw(st.integers(0, 4)):
        headers.insert(0, (b"Host", b"proxy.test"))
    headers = draw(st.permutations(headers)) if draw(st.booleans()) else headers
    request = FuzzRequest(
        method=draw(methods), target=draw(targets()), headers=tuple(headers),
        body=draw(request_bodies), framing=draw(st.sampled_from(["length", "length", "chunked", "none"])),
        cuts=tuple(draw(st.lists(st.integers(0, 1 << 16), max_size=3))),
    )
    broken = draw(mostly(st.none(), st.sampled_from(sorted(BROKEN)), 3))
    if broken is None:
        return request
    part = draw(BROKEN[broken])
    if broken == "header":
        at = draw(st.integers(0, len(headers)))
        return replace(request, headers=(*headers[:at], part, *headers[at:]))
    return replace(request, **{broken: part})


API_ROUTES = [(b"/v1/chat/completions", [b"POST"]), (b"/v1/responses", [b"POST"]),
              (b"/v1/embeddings", [b"POST"]), (b"/v1/files", [b"GET", b"POST"]),
              (b"/v1/responses/resp_1/cancel", [b"POST"]), (b"/v1/files/file-1", [b"GET", b"DELETE"]),
              (b"/v1/audio/speech", [b"POST", b"PUT", b"PATCH"]), (b"/v1/health", [b"GET"])]
PLAIN_NAMES = [b"Content-Type", b"Accept", b"X-Custom", b"User-Agent", b"OpenAI-Beta", b"x-stainless-lang"]


@st.composite
def api_requests(draw: st.DrawFn) -> FuzzRequest:
    """A well-formed API request with the token, its body anything."""
    path, allowed = draw(st.sampled_from(API_ROUTES))
    if path == b"/v1/files/file-1":
        # (no "." or ";": a lone "..", or a trailing ";", is another matter; see the bugs below)
        file_id = draw(st.text(alphabet=SAFE.replace(".", "").replace(";", ""), min_size=1, max_size=8))
        path = b"/v1/files/" + file_id.encode()
    query = b"" if path == b"/v1/health" else draw(st.sampled_from([b"", b"?limit=2", b"?ids=[1,2]&x=%2F"]))
    headers = [(b"Host", b"proxy.test"), (b"Authorization", b"Bearer " + TOKEN)]
    headers += draw(st.lists(st.tuples(st.sampled_from(PLAIN_NAMES),
                                       st.text(alphabet=string.ascii_letters + " ;=/-", max_size=20)
                                       .map(lambda t: t.strip().encode())), max_size=3))
    body = b"" if path == b"/v1/health" else draw(st.one_of(request_bodies, st.binary(max_size=2000)))
    return FuzzRequest(method=draw(st.sampled_from(allowed)), target=path + query, headers=tuple(headers),
                       body=body, framing=draw(st.sampled_from(["length", "chunked"])),
                       cuts=tuple(draw(st.lists(st.integers(0, 1 << 16), max_size=3))))


def post(target: bytes, body: bytes, *headers: tuple[bytes, bytes], method: bytes = b"POST",
         framing: str = "length") -> FuzzRequest:
    """An explicit request, with Host and (when one is needed) the token."""
    base = ((b"Host", b"proxy.test"), (b"Authorization", b"Bearer " + TOKEN))
    return FuzzRequest(method, target, headers=base + headers, body=body, framing=framing)


# The tests.

MODE_PARAMS = pytest.mark.parametrize("mode", sorted(MODES))


@MODE_PARAMS
@FUZZ_SETTINGS
@given(request=fuzz_requests())
@example(request=post(b"/v1/chat/completions", b"[" * 50000))
@example(request=post(b"/v1/chat/completions", b'{"model":"gpt-4.1","n":' + b"9" * 5000 + b"}"))
@example(request=post(b"/v1/responses", b'{"model":"gpt-5","input":"x","stream":"yes"}', framing="chunked"))
@example(request=post(b"/v1/chat/completions", b'{"model":["gpt-5"],"stream":true}'))
@example(request=post(b"/v1/embeddings", b"\xff\xfe\xc3(", (b"Content-Type", b"application/json")))
@example(request=post(b"/v1/../../admin", b""))
@example(request=post(b"/v1/files/%2E%2E/%2e%2E/secret", b"", method=b"GET"))
@example(request=post(b"/v1/a%2Fb/..%2F..%2Fc", b"", method=b"GET"))
@example(request=post(b"/health/../v1/models", b"", method=b"GET"))
@example(request=post(b"/v1/x%00y?q=%00&z=\xc3\xa9", b"", method=b"DELETE"))
@example(request=post(b"/v1/\xc3\xa9t\xc3\xa9", b"", method=b"GET"))
@example(request=post(b"/v1/caf\xa9", b"", method=b"GET"))
@example(request=post(b"/v1/files/..;", b"", method=b"GET"))
@example(request=FuzzRequest(b"HEAD", b"/x\xa9"))
@example(request=post(b"xv1/../admin", b"", method=b"GET"))
@example(request=post(b"/v1/files?a=1#b=2", b"", method=b"GET"))
@example(request=post(b"/v1/chat/completions", b"{}", (b"X:Y", b"1"), (b"X-A", b"\x80\xff")))
@example(request=post(b"/v1/chat/completions", b"{}", (b"Connection", b"Ocp-Apim-Subscription-Key"),
                      (SUBSCRIPTION, b"forged")))
@example(request=FuzzRequest(b"GET", b"/v1/models", headers=((b"Host", b"x"),)))
@example(request=FuzzRequest(b"POST", b"/v1/chat/completions",
                             headers=((b"Authorization", b"Bearer " + TOKEN + b"x"),), body=b"{}"))
@example(request=FuzzRequest(b"GET", b"/health?secret=1", headers=((b"Host", b"x"),), body=b"zz"))
@example(request=FuzzRequest(b"OPTIONS", b"/v1/chat/completions", headers=(
    (b"Origin", b"https://app.example"), (b"Access-Control-Request-Method", b"P\x01\xffST"))))
@example(request=FuzzRequest(b"POST", b"/v1/files", headers=(
    (b"Authorization", b"Bearer " + TOKEN),), body=b"x" * 30000, framing="chunked", cuts=(7,)))
def test_any_request_gets_a_json_error_or_reaches_the_upstream_well_formed(
        mode: str, models_path: str, request: FuzzRequest) -> None:
    """Whatever a client sends, it gets complete, well-framed answers: a JSON
    error with error.message and error.type, a local answer, or the
    upstream's answer to a well-formed request (under the base URL, no dot
    segment, the key set, no client credential, the token presented when
    one is required, the body as sent unless a gpt-5 rewrite, still JSON).
    Never a 500, a traceback, a logged crash or a hung connection."""
    result = run(mode, models_path, request)
    # The mix of outcomes, shown by --hypothesis-show-statistics.
    if result.received:
        chunked = any(a.header(b"transfer-encoding") for a in result.answers)
        event("forwarded, answer streamed" if chunked else "forwarded")
    else:
        event(f"answered {result.answers[0].status}" if result.answers else "closed without an answer")


@MODE_PARAMS
@API_SETTINGS
@given(request=api_requests())
@example(request=post(b"/v1/chat/completions", b'{"model":"gpt-5","max_tokens":8,"temperature":0.2}'))
@example(request=post(b"/v1/responses", b'{"model":"GPT-5-mini","max_tokens":8,"stream":true}'))
@example(request=post(b"/v1/embeddings", b'{"input":"\\ud800"}'))
def test_well_formed_api_requests_with_the_token_reach_the_upstream_intact(
        mode: str, models_path: str, request: FuzzRequest) -> None:
    """A well-formed request to a forwarded route, with the token, reaches the
    upstream once, whatever its body: same method, path and query (plus the
    configured api-version), the client's own headers, and the body byte for
    byte (a gpt-5 request may be rewritten, into JSON)."""
    result = run(mode, models_path, request)
    if mode == "token" and len(request.body) > 20_000:  # MAX_REQUEST_BODY_MB
        assert [a.status for a in result.answers] == [413] and not result.received
        return
    assert len(result.received) == 1, result.answers
    sent = result.received[0]
    path, _, query = request.target.partition(b"?")
    if mode == "token":
        extra = b"api-version=" + API_VERSION
        query = query + b"&" + extra if query else extra
    assert sent.url == BASE + path + (b"?" + query if query else b"")
    # The client's own headers go as they are (but Accept, which a gpt-5 stream gets set).
    gpt5 = gpt5_rewrite_allowed(request.body) and path in (b"/v1/chat/completions", b"/v1/responses")
    for name, value in request.headers:
        if name.lower() not in (b"host", b"authorization") and not (gpt5 and name.lower() == b"accept"):
            assert value in sent.headers.getRawHeaders(name, []), (name, value)
    if sent.body != request.body:
        assert gpt5, "the body changed on its way"


# Bugs the properties above found (fixed in 44e23ef, 48605ad and after),
# kept as regression tests: each docstring says what went wrong.


@MODE_PARAMS
def test_bug_head_on_a_post_only_route_is_a_json_405_not_a_500(mode: str, models_path: str) -> None:
    """Was: HEAD /v1/chat/completions (or /v1/responses) answers 500 with
    Twisted's HTML "Processing Failed": JSONResource.render finds
    twisted.web.resource.Resource.render_HEAD, which calls a render_GET that
    Forwarded does not have for POST-only routes."""
    for target in (b"/v1/chat/completions", b"/v1/responses"):
        result = run(mode, models_path, post(target, b"", method=b"HEAD", framing="none"))
        assert [a.status for a in result.answers] == [405]
        assert b"HEAD" not in (result.answers[0].header(b"allow") or b"")


@MODE_PARAMS
def test_bug_gpt5_rewrite_of_a_lone_surrogate_escape_is_forwarded(mode: str, models_path: str) -> None:
    """Was: a gpt-5 chat request that is rewritten (max_tokens here) and holds
    a lone surrogate escape (valid JSON text, e.g. half an emoji cut by a
    client) answers 500: prepare_body re-serialises with ensure_ascii=False,
    and encoding the lone surrogate to UTF-8 raises UnicodeEncodeError."""
    body = b'{"model":"gpt-5","max_tokens":16,"messages":[{"role":"user","content":"\\ud83d"}]}'
    result = run(mode, models_path, post(b"/v1/chat/completions", body))
    assert [a.status for a in result.answers] == [200]
    assert len(result.received) == 1


@MODE_PARAMS
def test_bug_gpt5_rewrite_keeps_a_huge_number_json(mode: str, models_path: str) -> None:
    """Was: a gpt-5 request that is rewritten and holds a number beyond a
    double (1e999, valid JSON) goes upstream as "Infinity", which is not
    JSON: prepare_body parses it to float('inf') and json.dumps writes it
    with allow_nan=True."""
    body = b'{"model":"gpt-5","max_tokens":16,"top_p":1e999,"messages":[]}'
    result = run(mode, models_path, post(b"/v1/chat/completions", body))
    assert len(result.received) == 1
    assert is_json(result.received[0].body), result.received[0].body


@MODE_PARAMS
def test_bug_raw_bytes_0x7f_to_0xb0_in_a_v1_path_are_not_a_500(mode: str, models_path: str) -> None:
    """Was: "GET /v1/caf\\xa9 HTTP/1.1" answers 500 (Twisted's HTML
    "Processing Failed"): Twisted's request-line check rejects target bytes
    "c <= 32 or c > 176", a decimal 176 where octal 0o176 ("~") was meant,
    so bytes 0x7f-0xb0 get through, and Passthrough.render's
    request.path.decode("ascii") raises UnicodeDecodeError."""
    result = run(mode, models_path, post(b"/v1/caf\xa9", b"", method=b"GET"))
    assert [a.status for a in result.answers] != [500]


@MODE_PARAMS
def test_bug_trailing_semicolon_sends_a_dot_segment_upstream(mode: str, models_path: str) -> None:
    """Was: "GET /v1/..;" passes Passthrough's dot-segment check ("..;" is
    not ".."), and Twisted's Agent then sends the path as "/genai/v1/..":
    URI.originForm re-joins path and ";params" with urlunparse, which drops
    an empty parameter.  The upstream resolves it to /genai/, outside /v1
    (and "/v1/files/x;" reaches it as "/v1/files/x").  A 404, or the path
    forwarded as sent, would do."""
    for target in (b"/v1/..;", b"/v1/files/%2e%2e;"):
        run(mode, models_path, post(target, b"", method=b"GET"))


@MODE_PARAMS
def test_bug_target_without_its_leading_slash_leaves_v1_upstream(mode: str, models_path: str) -> None:
    """Was: "GET xv1/../admin HTTP/1.1" reaches the upstream as
    "/genai/xv1/../admin", that is /genai/admin.  twisted.web resolves a
    target by dropping its first byte, whatever it is (postpath =
    path[1:].split("/")), so "xv1/..." is routed to /v1's passthrough;
    Passthrough.render splits request.path itself, takes "xv1" for the
    "v1" segment it skips, checks only what follows ("..", "admin" ->
    "admin"), and forwards request.path as it came."""
    for target in (b"xv1/../admin", b"*v1/%2e%2e/admin"):
        run(mode, models_path, post(target, b"", method=b"GET"))


@MODE_PARAMS
def test_bug_hash_in_the_query_cuts_it_short_upstream(mode: str, models_path: str) -> None:
    """Was (minor): "GET /v1/files?a=1#b=2" is accepted (Twisted's parser
    takes any printable byte) and its query forwarded as it is, but
    Twisted's Agent parses the URL again and drops "#b=2" as a fragment:
    the upstream gets "?a=1", and in token mode the api-version the proxy
    appends after it ("?a=1#b=2&api-version=...") is lost too.  urls.py's
    target_safe could percent-encode "#" like the other bytes a request
    target may not hold (as 44e23ef does)."""
    run(mode, models_path, post(b"/v1/files?a=1#b=2", b"", method=b"GET"))


def test_bug_head_with_a_raw_high_byte_breaks_the_json_log(models_path: str) -> None:
    """Was: "HEAD /x\\xa9 HTTP/1.1" (a byte Twisted lets through, see
    above) gets a 404 whose body twisted.web drops, logging "HEAD request
    {slf} ... is returning a message body" under the ProxyRequest's
    namespace (genaiproxy.site.ProxyRequest).  LinesObserver renders it as
    one of its own events; str(request) decodes the URI as ASCII and raises
    UnicodeDecodeError, a ValueError, so render falls back to
    repr(record), which raises again: the event, and in the service the
    whole batch being written with it, is lost."""
    result = exchange(build_proxy("open", models_path), FuzzRequest(b"HEAD", b"/x\xa9"))
    assert not result.crashes, "\n".join(result.crashes)


@MODE_PARAMS
def test_bug_asterisk_target_gets_a_json_error(mode: str, models_path: str) -> None:
    """Was: "GET * HTTP/1.1" (any method but OPTIONS) is answered by
    twisted.web's Request.process itself (_handleStar), before the Site:
    a 405 without a body or Content-Type, with "Server: TwistedWeb/<version>"
    and no X-Request-ID, instead of the proxy's JSON error."""
    result = run(mode, models_path, FuzzRequest(b"GET", b"*", headers=((b"Host", b"x"),)))
    assert result.answers[0].header(b"server") == b"genai-proxy/0.1.0"
    assert result.answers[0].header(b"x-request-id")


def test_bug_upstream_answer_before_the_upload_is_sent_reads_a_closed_file(models_path: str) -> None:
    """Was: when the upstream answers a spooled upload (a chunked body, or
    one of 100 kB and more) before the proxy has sent all of it (a gateway's
    early 401 or 413), the proxy relays the answer and finishes the client's
    request, and twisted.web closes the spool file; Twisted's client goes on
    sending the body (state TRANSMITTING_AFTER_RECEIVING_RESPONSE), and
    FileBodyProducer reads the closed file: "ValueError: read of closed
    file", logged with "Error writing request, but not in valid state to
    finalize request"."""
    proxy = build_proxy("open", models_path, early_rejection=True)
    proxy.hold_uploads = True  # the upload is still under way when the answer comes
    request = post(b"/v1/files", b"x" * 200_000, (b"Content-Type", b"application/octet-stream"))
    result = exchange(proxy, request)
    assert [a.status for a in result.answers] == [413]
    assert not result.crashes, "\n".join(result.crashes)


def test_bug_an_upstream_answer_that_arrives_at_once_crashes_the_forward(models_path: str) -> None:
    """Was (latent): ForwardCall.start assumes the upstream call has not
    finished when upstream.call() returns.  When it has (an agent that
    answers at once, as treq's RequestTraversalAgent does, or an attempt
    that fails at once and is not retried), _respond or _failed sets
    self._call to None before start() calls self._call.addErrback:
    AttributeError, a 500, and a RuntimeError for writing after finish."""
    proxy = build_proxy("open", models_path)
    proxy.agent.immediate = True
    result = exchange(proxy, post(b"/v1/chat/completions", b"{}"))
    assert not result.crashes, "\n".join(result.crashes)
    assert [a.status for a in result.answers] == [200]


def test_bug_early_refusals_carry_no_x_request_id(models_path: str) -> None:
    """Was (README vs behaviour): README says "Every answer carries
    X-Request-ID", but the channel's own refusals (400 for what is not
    HTTP/1.1, 408, 414, 431), written by ProxyChannel.refuse before any
    request exists, had none (fixed in 48605ad)."""
    for request in (FuzzRequest(b"GET", b"/v1/models", version=b"HTTP/9.9"),
                    FuzzRequest(b"GET", b"/v1/" + b"x" * 20000)):
        result = run("open", models_path, request)
        assert [a.status for a in result.answers] in ([400], [414])
        assert result.answers[0].header(b"x-request-id"), result.answers[0]


@MODE_PARAMS
def test_bug_trailing_semicolon_is_cut_off_upstream(mode: str, models_path: str) -> None:
    """Was (minor): "GET /v1/files/x;" was forwarded, but reached the
    upstream as "/genai/v1/files/x": Twisted's Agent splits the last
    segment's ";params" off (urlparse) and, when they are empty, does not
    put the ";" back (URI.originForm's urlunparse).  44e23ef stopped "..;"
    from becoming ".."; this is the path sent as it came (a trailing ";"
    percent-encoded will do)."""
    result = run(mode, models_path, post(b"/v1/files/x;", b"", method=b"GET"))
    for sent in result.received:  # as sent, or percent-encoded
        assert unquote_to_bytes(sent.uri.partition(b"?")[0]) == b"/genai/v1/files/x;", sent.uri


def test_bug_lower_case_method_goes_upstream_in_upper_case(models_path: str) -> None:
    """Was (minor): methods are case-sensitive (RFC 9110), and README says
    other /v1 paths are forwarded "with its method", but "delete" went
    upstream as "DELETE": treq's HTTPClient.request upper-cases every method.
    Refusing a method that is not upper case will do."""
    result = run("open", models_path, post(b"/v1/files/file-1", b"", method=b"delete"))
    assert [r.method for r in result.received] in ([], [b"delete"])
