"""An in-memory genai-proxy for tests, as C{treq.testing} is for treq's users.

L{MemoryProxy} is the real proxy, wired as the daemon wires it: the
L{ProxySite} and resource tree of L{genaiproxy.server}, the L{Forwarder} of
L{genaiproxy.forwarding} and the treq L{UpstreamClient} of
L{genaiproxy.upstream}, with the settings read from an environment mapping
as C{twistd genaiproxy} reads them.  Nothing opens a socket: the upstream is
a twisted.web resource of the test's own, which treq's
L{RequestTraversalAgent} serves; the clients are treq clients whose
connections reach the proxy's site in memory; the proxy's timers (timeouts,
retry back-off, keep-alive) run on a L{MemoryReactorClock} that the test
advances.  So a test sees what a client of the daemon would see (status,
headers, the bytes of a stream as they pass) and what the upstream receives
(the key injected, the client's token gone), in milliseconds::

    class Upstream(Resource):
        isLeaf = True

        def render_POST(self, request):
            request.setHeader(b"content-type", b"application/json")
            return b'{"object": "chat.completion", "choices": []}'

    proxy = MemoryProxy(Upstream(), {"AUTH_TOKEN": "client-token"})
    answer = proxy.request("POST", "/v1/chat/completions", json={"model": "gpt-4.1"},
                           headers={"Authorization": ["Bearer client-token"]})
    assert answer.code == 200

A stream is read as it passes with L{MemoryProxy.client} (a treq
L{HTTPClient}; ask with C{unbuffered=True}) and L{MemoryProxy.flush}, while
the upstream resource writes its events one by one (it returns
C{NOT_DONE_YET} and keeps the request).

What stays outside memory: a request body the proxy spools to a file (one of
100 kB or more, or sent chunked) is read on Twisted's global cooperator,
which only a running reactor drives, so send smaller bodies with their
length (bytes, or C{json=}); and models.yaml may route models to the one
upstream only (C{upstream_model}, C{hidden} and C{fallbacks} work; a file
naming other upstreams is refused, as a bad file is).
"""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, TypeVar

import treq
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.client import URI, Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IResponse
from twisted.web.resource import IResource
from zope.interface import implementer

from genaiproxy.config import (
    ClientTokens,
    Config,
    ModelCatalog,
    RoutingError,
    RoutingTable,
    SecretFile,
    build_routing,
    load_config,
)
from genaiproxy.daemon.service import client_limits, watch_secret_files
from genaiproxy.forwarding import Forwarder
from genaiproxy.server import AccessPolicy, ProxySite, build_tree
from genaiproxy.upstream import UpstreamClient
from genaiproxy.upstream.bodies import body_producer

__all__ = ["DEFAULT_ENVIRONMENT", "PROXY_URL", "UPSTREAM_URL", "Answer", "MemoryProxy"]

# Where the clients of L{MemoryProxy.client} send their requests (any URL
# reaches the proxy; this one reads well in a test).
PROXY_URL = "http://proxy.test"
# The upstream's base URL unless the environment gives one: what the
# upstream resource sees as the request's path starts with its path.
UPSTREAM_URL = "http://upstream.test"

# The settings a L{MemoryProxy} starts from; those a test gives are laid over
# them.  The three upstream variables are the ones the daemon requires.
DEFAULT_ENVIRONMENT: Mapping[str, str] = MappingProxyType({
    "GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key",
    "GENAI_API_KEY": "sk-memory-proxy-key",
    "GENAI_BASE_URL": UPSTREAM_URL,
})

# The addresses the proxy's channels see: a client on loopback, the proxy's port.
_CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)
_PROXY_ADDRESS = IPv4Address("TCP", "127.0.0.1", 8111)
# Rounds of moving bytes after which L{MemoryProxy.flush} gives up: a
# conversation that never settles is a bug to report, not to wait on.
_MAX_ROUNDS = 1000

_T = TypeVar("_T")


@dataclass(frozen=True)
class Answer:
    """A whole answer of the proxy, as a client read it."""

    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The last value of header C{name}, or None when it was not sent."""
        values = self.headers.getRawHeaders(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The body read as JSON."""
        return jsonlib.loads(self.body)


@implementer(IStreamClientEndpoint)
class _SiteEndpoint:
    """Connects a client protocol to a new channel of the proxy's site."""

    def __init__(self, proxy: MemoryProxy) -> None:
        self._proxy = proxy

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        protocol = protocolFactory.buildProtocol(_PROXY_ADDRESS)
        if protocol is None:
            return fail(ConnectionRefusedError("the client's factory made no protocol"))
        self._proxy.connect(protocol)
        return succeed(protocol)


@implementer(IAgentEndpointFactory)
class _SiteEndpoints:
    """Every URL leads to the proxy's site, in memory."""

    def __init__(self, proxy: MemoryProxy) -> None:
        self._proxy = proxy

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        return _SiteEndpoint(self._proxy)


class MemoryProxy:
    """The proxy around an in-memory upstream, for tests.

    @ivar config: the settings, from L{DEFAULT_ENVIRONMENT} and the test's.
    @ivar clock: the proxy's reactor for time; L{advance} moves it.
    @ivar upstream: the twisted.web resource that answers the upstream calls.
    @ivar upstream_agent: treq's L{RequestTraversalAgent} serving C{upstream}.
    @ivar upstream_client: the proxy's client of its upstream.
    @ivar forwarder: what every forwarded request shares (metrics, requests
        in flight).
    @ivar catalog: the model list, from the C{models_path} given.
    @ivar tokens: the clients' tokens in force (AUTH_TOKEN and its files).
    @ivar secret_files: the secrets kept in files, as the daemon watches them.
    @ivar site: the proxy's site; L{connect} and L{client} reach it.
    """

    def __init__(self, upstream: IResource, environ: Mapping[str, str] | None = None,
                 models_path: str | None = None, clock: MemoryReactorClock | None = None,
                 wrap_agent: Callable[[RequestTraversalAgent], IAgent] | None = None) -> None:
        """
        @param upstream: answers the proxy's upstream calls; the request's
            path starts with the path of GENAI_BASE_URL (L{UPSTREAM_URL} has none).
        @param environ: settings laid over L{DEFAULT_ENVIRONMENT}, as
            variables of the daemon's environment; a bad one raises
            L{genaiproxy.config.ConfigError}, as the daemon refuses to start.
        @param models_path: the models.yaml to serve; none: an empty list.
        @param clock: the proxy's reactor for time (a new one when None).
        @param wrap_agent: given the traversal agent, returns the agent the
            proxy calls its upstream with: one that stands in between, to
            hold answers back, record what was asked, or fail calls.
        """
        env = {**DEFAULT_ENVIRONMENT, **(environ or {})}
        self.config: Config = load_config(env)
        self.clock = clock if clock is not None else MemoryReactorClock()
        self.upstream = upstream
        self.upstream_agent = RequestTraversalAgent(upstream)
        agent = wrap_agent(self.upstream_agent) if wrap_agent is not None else self.upstream_agent
        self.upstream_client = UpstreamClient(self.config, self.clock, agent=agent)
        self.forwarder = Forwarder(self.upstream_client)
        metrics = self.forwarder.metrics

        def routing(upstreams: Any, entries: list[dict[str, Any]]) -> RoutingTable:
            table = build_routing(upstreams, entries, self.config, env)
            if table.upstreams:
                raise RoutingError("the in-memory proxy has one upstream: models.yaml names "
                                   f"others ({', '.join(sorted(table.upstreams))})")
            return table

        self.catalog = ModelCatalog(models_path or os.devnull,
                                    on_load=lambda ok: metrics.reloaded("models", ok),
                                    routing=routing)
        self.catalog.on_routing = self.forwarder.set_routing
        self.catalog.on_limits = self.forwarder.limits.set_rules
        # Read now, as the daemon's service does when it starts: the routing
        # (aliases, hidden models) is in service before the first request.
        self.catalog.refresh()
        self.tokens = ClientTokens()
        self.secret_files: list[SecretFile[Any]] = watch_secret_files(
            self.config, self.upstream_client, self.tokens, metrics.reloaded)
        self.site = ProxySite(build_tree(self.forwarder, self.catalog),
                              AccessPolicy(self.tokens, self.config.allowed_origins),
                              client_limits(self.config))
        self.site.reactor = self.clock  # the channels' timers
        self._pumps: list[iosim.IOPump] = []

    @cached_property
    def client(self) -> HTTPClient:
        """A treq client whose every request goes to this proxy (at
        L{PROXY_URL} or any other URL), each on a new in-memory connection.
        Its answers arrive as L{flush} moves them."""
        agent = Agent.usingEndpointFactory(self.clock, _SiteEndpoints(self))
        return HTTPClient(agent, data_to_body_producer=body_producer)

    def connect(self, protocol: IProtocol) -> None:
        """Connect a client's C{protocol} to a new channel of the proxy, in
        memory; L{flush} carries the bytes both ways."""
        channel = self.site.buildProtocol(_CLIENT_ADDRESS)
        server = iosim.FakeTransport(channel, isServer=True, hostAddress=_PROXY_ADDRESS,
                                     peerAddress=_CLIENT_ADDRESS)
        client = iosim.FakeTransport(protocol, isServer=False, hostAddress=_CLIENT_ADDRESS,
                                     peerAddress=_PROXY_ADDRESS)
        self._pumps.append(iosim.connect(channel, server, protocol, client, greet=False,
                                         clock=self.clock))

    def flush(self) -> None:
        """Run the proxy's calls that are due now and carry every byte in
        flight (between the clients and the proxy, and between the proxy and
        its upstream) until nothing moves."""
        quiet = 0
        for _ in range(_MAX_ROUNDS):
            self.clock.advance(0)
            self.upstream_agent.flush()
            moved = False
            for pump in list(self._pumps):
                moved = pump.flush() or moved
                if pump.clientIO.disconnected and pump.serverIO.disconnected:
                    self._pumps.remove(pump)
            quiet = 0 if moved else quiet + 1
            if quiet >= 2:
                return
        raise RuntimeError(f"bytes still moving after {_MAX_ROUNDS} rounds")

    def advance(self, seconds: float) -> None:
        """L{flush} (what is under way now happens now), let C{seconds} pass
        on the proxy's clock, and L{flush} again."""
        self.flush()
        self.clock.advance(seconds)
        self.flush()

    def result_of(self, deferred: Deferred[_T]) -> _T:
        """L{flush}, then what C{deferred} fired with, or its failure raised
        (and taken from it).

        Raises L{AssertionError} when it has not fired: the proxy waits for
        something, an upstream answer or time to pass (L{advance}); ask again
        after that.
        """
        results: list[_T | Failure] = []

        def seen(result: _T | Failure) -> _T | Failure:
            results.append(result)
            return result

        deferred.addBoth(seen)
        self.flush()
        if not results:
            raise AssertionError(f"{deferred!r} has not fired")
        result = results[0]
        if isinstance(result, Failure):
            deferred.addErrback(lambda _: None)  # raised here, not logged as unhandled
            result.raiseException()
        return result

    def request(self, method: str, path: str, *, headers: Mapping[str, list[str]] | None = None,
                json: Any = None, data: bytes | None = None) -> Answer:
        """Send one request to the proxy (C{path} under L{PROXY_URL}), and
        read its whole answer; raise when it does not come (see L{result_of})."""
        kwargs: dict[str, Any] = {"headers": dict(headers or {})}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data

        def read(response: IResponse) -> Deferred[Answer]:
            body: Deferred[bytes] = treq.content(response)
            return body.addCallback(lambda content: Answer(response.code, response.headers, content))

        answering = self.client.request(method, PROXY_URL + path, **kwargs)
        return self.result_of(answering.addCallback(read))
