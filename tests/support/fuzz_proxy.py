"""The proxy of tests/unit/test_fuzz_site.py, in memory: built as the
service builds it (L{genaiproxy.testing.MemoryProxy}) in each of its modes,
around an upstream that records what reaches it and whose answers are held a
turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, Cooperator
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from genaiproxy.forwarding.forwarder import Forwarder
from genaiproxy.server.site import ProxySite
from genaiproxy.testing import MemoryProxy

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
