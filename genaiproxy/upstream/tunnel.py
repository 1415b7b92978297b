"""Reaching the upstream through a corporate forward proxy (HTTPS_PROXY).

For an https upstream, L{ConnectTunnelEndpoint} asks the proxy for
C{CONNECT host:port}, and once the proxy answers 200 hands the raw connection
to the protocol on top, which (wrapped by C{wrapClientTLS}) then speaks TLS
to the origin itself: SNI and certificate checks are against the origin,
never the proxy.  For an http upstream the proxy gets absolute-URI requests
on a plain connection (L{ProxyEndpoint}).  Both name the proxy, with its
credentials removed, when it cannot be used.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from genaiproxy.config import strip_userinfo

_MAX_HEAD = 16384


class ProxyConnectError(Exception):
    """The forward proxy could not be reached or refused the tunnel."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ForwardProxy:
    """HTTPS_PROXY parsed once: where it is, how to show it, its credentials."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host: str = parts.hostname or ""
        self.port: int = parts.port or (443 if parts.scheme == "https" else 8080)
        self.display = strip_userinfo(url)
        self.tls = parts.scheme == "https"
        self.authorization: bytes | None = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.authorization = b"Basic " + base64.b64encode(credentials.encode("utf-8"))

    def __repr__(self) -> str:
        return f"<ForwardProxy {self.display}>"


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY (comma-separated) sends C{host}:C{port} direct.

    Entries may be C{*}, a host name (which also covers its subdomains; a
    leading dot is allowed), an IP address or network (C{10.0.0.0/8}), each
    optionally with C{:port}.
    """
    host = host.lower().strip("[]").rstrip(".")
    try:
        address: Any = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port: int | None = None
        if entry.count(":") == 1 and entry.rsplit(":", 1)[1].isdigit():
            entry, port_text = entry.rsplit(":", 1)
            entry_port = int(port_text)
        if entry_port is not None and entry_port != port:
            continue
        entry = entry.strip("[]").lstrip("*").lstrip(".").rstrip(".")
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if host == entry or host.endswith("." + entry):
            return True
    return False


class _TunnelProtocol(Protocol):
    """Sends CONNECT, waits for the proxy's answer, then becomes a pipe to
    the protocol built by the wrapped factory."""

    def __init__(self, endpoint: ConnectTunnelEndpoint, factory: IProtocolFactory, addr: Any) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._addr = addr
        self._head = b""
        self._inner: IProtocol | None = None
        self.established: Deferred[IProtocol] = Deferred(lambda _: self._connection().abortConnection())

    def _connection(self) -> ITCPTransport:
        """The connection to the proxy (TCP, or TLS over it), made before
        this protocol is used."""
        return cast(ITCPTransport, self.transport)

    def connectionMade(self) -> None:
        target = self._endpoint.target
        lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target]
        if self._endpoint.proxy.authorization is not None:
            lines.append(b"Proxy-Authorization: " + self._endpoint.proxy.authorization)
        self._connection().write(b"\r\n".join(lines) + b"\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HEAD:
                self._refuse("sent an oversized answer to CONNECT", None)
            return
        head, rest = self._head[:end], self._head[end + 4:]
        status_line = head.split(b"\r\n", 1)[0]
        try:
            status = int(status_line.split(b" ", 2)[1])
        except (IndexError, ValueError):
            self._refuse(f"sent an invalid answer to CONNECT: {status_line[:80]!r}", None)
            return
        if status != 200:
            reason = status_line.split(b" ", 2)[2:]
            phrase = reason[0].decode("latin-1") if reason else ""
            self._refuse(f"refused CONNECT with {status} {phrase}".rstrip(), status)
            return
        inner = self._factory.buildProtocol(self._addr)
        if inner is None:
            # The proxy did its part; what is on top declined the connection.
            if not self.established.called:
                self.established.errback(
                    ConnectionRefusedError("the tunnel was opened but no protocol took it"))
            self._connection().loseConnection()
            return
        self._inner = inner
        inner.makeConnection(self._connection())
        if not self.established.called:
            self.established.callback(inner)
        if rest:
            inner.dataReceived(rest)

    def _refuse(self, why: str, status: int | None) -> None:
        if not self.established.called:
            self.established.errback(
                ProxyConnectError(f"proxy {self._endpoint.proxy.display} {why}", status)
            )
        self._connection().loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._inner is not None:
            self._inner.connectionLost(reason)
        elif not self.established.called:
            self.established.errback(
                ProxyConnectError(
                    f"proxy {self._endpoint.proxy.display} closed the connection before "
                    f"answering CONNECT: {reason.getErrorMessage()}"
                )
            )


class _TunnelFactory(Factory):
    noisy = False

    def __init__(self, endpoint: ConnectTunnelEndpoint, wrapped: IProtocolFactory) -> None:
        self._endpoint = endpoint
        self._wrapped = wrapped

    def buildProtocol(self, addr: Any) -> _TunnelProtocol:
        return _TunnelProtocol(self._endpoint, self._wrapped, addr)


def _established(tunnel: IProtocol) -> Deferred[IProtocol]:
    """The protocol on top, once the proxy accepted the CONNECT."""
    # The endpoint built it with a _TunnelFactory.
    return cast(_TunnelProtocol, tunnel).established


def _unreachable(failure: Failure, proxy: ForwardProxy) -> Failure:
    if failure.check(ProxyConnectError):
        return failure
    return Failure(
        ProxyConnectError(f"proxy {proxy.display} could not be reached: {failure.getErrorMessage()}")
    )


@implementer(IStreamClientEndpoint)
class ConnectTunnelEndpoint:
    """An endpoint whose connections are CONNECT tunnels through C{proxy}."""

    def __init__(
        self, proxy_endpoint: IStreamClientEndpoint, proxy: ForwardProxy, host: str, port: int
    ) -> None:
        self._proxy_endpoint = proxy_endpoint
        self.proxy = proxy
        name = host.encode("idna") if ":" not in host else b"[" + host.encode("ascii") + b"]"
        self.target = name + b":%d" % port

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        connecting = self._proxy_endpoint.connect(_TunnelFactory(self, protocolFactory))
        connecting.addCallback(_established)
        connecting.addErrback(_unreachable, self.proxy)
        return connecting


@implementer(IStreamClientEndpoint)
class ProxyEndpoint:
    """A plain connection to the proxy (absolute-URI requests for http
    upstreams), whose failures name the proxy."""

    def __init__(self, proxy_endpoint: IStreamClientEndpoint, proxy: ForwardProxy) -> None:
        self._proxy_endpoint = proxy_endpoint
        self.proxy = proxy

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return self._proxy_endpoint.connect(protocolFactory).addErrback(_unreachable, self.proxy)
