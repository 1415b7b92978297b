"""How connections to the upstream are made, for Twisted's Agent.

L{UpstreamEndpoints} is the agent's endpoint factory
(C{Agent.usingEndpointFactory}).  For each origin it decides the route once:

    direct             HostnameEndpoint (an IP address: TCP4/TCP6ClientEndpoint)
    https              + wrapClientTLS (trust root + host-name check)
    via HTTPS_PROXY    CONNECT tunnel through the proxy, then TLS to the origin
                       inside it (SNI and certificate are the origin's)

A plain-http upstream behind the forward proxy is not a tunnel: the proxy
gets the request itself with an absolute URI, which is what Twisted's
L{ProxyAgent} sends; L{upstream_agent} picks it for that route.  NO_PROXY
is honoured for every route.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.web.client import URI, Agent, HTTPConnectionPool, ProxyAgent
from twisted.web.iweb import IAgent, IAgentEndpointFactory
from zope.interface import implementer

from genaiproxy.config import SystemAndExtraTrust, client_tls
from genaiproxy.upstream.tunnel import ConnectTunnelEndpoint, ForwardProxy, ProxyEndpoint, bypasses_proxy


def tcp_endpoint(reactor: Any, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """A TCP connection to C{host}:C{port}: a L{HostnameEndpoint} for a
    name; for an IP address (IPv6 with or without its URL brackets), the
    TCP endpoint a HostnameEndpoint would end up with, without its name
    resolution (a lookup in the reactor's thread pool, and a class and
    closures made for every connection, which only a full pass of the
    garbage collector frees: some 4 KB a connection, held while ten
    thousand streams open)."""
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if isIPAddress(address):
        return TCP4ClientEndpoint(reactor, address, port, timeout=timeout)
    if isIPv6Address(address):
        return TCP6ClientEndpoint(reactor, address, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


@implementer(IStreamClientEndpoint)
class QuietEndpoint:
    """An endpoint whose connection factories do not log a line each time a
    connection starts and stops (Twisted's factories are noisy by default),
    and whose repr names the route without any credentials."""

    def __init__(self, wrapped: IStreamClientEndpoint, description: str) -> None:
        self._wrapped = wrapped
        self._description = description

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        if hasattr(protocolFactory, "noisy"):
            protocolFactory.noisy = False
        return self._wrapped.connect(protocolFactory)

    def __repr__(self) -> str:
        return f"<QuietEndpoint {self._description}>"


@implementer(IAgentEndpointFactory)
class UpstreamEndpoints:
    """Endpoints to upstream origins: direct or through HTTPS_PROXY (unless
    NO_PROXY says otherwise), with TLS to the origin for https.

    Endpoints are made once per origin and reused.
    """

    def __init__(
        self,
        reactor: Any,
        connect_timeout: float,
        trust: SystemAndExtraTrust,
        proxy: ForwardProxy | None,
        no_proxy: str,
    ) -> None:
        self._reactor = reactor
        self._timeout = connect_timeout
        self._trust = trust
        self._proxy = proxy
        self._no_proxy = no_proxy
        self._made: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def proxy_for(self, host: str, port: int) -> ForwardProxy | None:
        """The forward proxy to reach C{host}:C{port} through, or None for direct."""
        if self._proxy is None or bypasses_proxy(host, port, self._no_proxy):
            return None
        return self._proxy

    def to_proxy(self, proxy: ForwardProxy) -> IStreamClientEndpoint:
        """A connection to the forward proxy itself (TLS when its URL is https)."""
        endpoint = tcp_endpoint(self._reactor, proxy.host, proxy.port, self._timeout)
        if proxy.tls:
            endpoint = wrapClientTLS(client_tls(proxy.host, self._trust), endpoint)
        return endpoint

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._made.get(key)
        if endpoint is None:
            endpoint = self._made[key] = self._make(uri.scheme, uri.host.decode("ascii"), uri.port)
        return endpoint

    def _make(self, scheme: bytes, host: str, port: int) -> IStreamClientEndpoint:
        proxy = self.proxy_for(host, port)
        endpoint: IStreamClientEndpoint
        if proxy is None:
            endpoint = tcp_endpoint(self._reactor, host, port, self._timeout)
            route = f"{host}:{port}"
        elif scheme == b"https":
            endpoint = ConnectTunnelEndpoint(self.to_proxy(proxy), proxy, host, port)
            route = f"{host}:{port} via {proxy.display}"
        else:
            # Origin-form requests on a plain connection to the proxy would
            # be wrong: that route belongs to ProxyAgent (upstream_agent).
            raise ValueError(f"http://{host}:{port} is reached through ProxyAgent, not a tunnel")
        if scheme == b"https":
            endpoint = wrapClientTLS(client_tls(host, self._trust), endpoint)
        return QuietEndpoint(endpoint, route)


def upstream_agent(
    reactor: Any,
    endpoints: UpstreamEndpoints,
    pool: HTTPConnectionPool,
    scheme: str,
    host: str,
    port: int,
) -> IAgent:
    """The agent for an upstream at C{scheme}://C{host}:C{port}.

    Twisted's L{Agent} on our endpoint factory for every route but one: a
    plain-http upstream behind the forward proxy, whose requests go to the
    proxy with an absolute URI, as L{ProxyAgent} sends them.
    """
    proxy = endpoints.proxy_for(host, port)
    if proxy is not None and scheme == "http":
        endpoint = QuietEndpoint(ProxyEndpoint(endpoints.to_proxy(proxy), proxy), proxy.display)
        return ProxyAgent(endpoint, reactor, pool=pool)
    return Agent.usingEndpointFactory(reactor, endpoints, pool=pool)
