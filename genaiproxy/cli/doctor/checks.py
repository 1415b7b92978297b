"""The network probes of C{genai-proxy doctor}, made with the daemon's own parts.

Each probe takes one step of the path a request takes to an upstream and
fires with what it saw, or fails with why: name resolution, a TCP
connection (to the origin or to the forward proxy), a CONNECT tunnel
through the proxy (L{genaiproxy.upstream.tunnel}), and the TLS handshake, once
without verification to see the chain the server presents, and once with
the daemon's own client TLS options and trust root (L{genaiproxy.config.tls}), to
see whether the daemon would accept it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from genaiproxy.config import SystemAndExtraTrust, client_tls
from genaiproxy.upstream import ConnectTunnelEndpoint, ForwardProxy, UpstreamEndpoints


def resolve(reactor: Any, host: str, port: int) -> Deferred[list[str]]:
    """The addresses C{host} resolves to, as the daemon's connections would
    look them up (getaddrinfo, in a thread)."""

    def lookup() -> list[str]:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in found))

    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), lookup)


class _Probe(Protocol):
    """Connects, tells C{made}, and hangs up."""

    def __init__(self) -> None:
        self.made: Deferred[str] = Deferred()

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.made.callback(f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}")
        self.transport.loseConnection()  # type: ignore[union-attr]


def _connect(endpoint: IStreamClientEndpoint) -> Deferred[str]:
    probe = _Probe()
    connecting = endpoint.connect(Factory.forProtocol(lambda: probe))
    return connecting.addCallback(lambda _: probe.made)


def tcp(reactor: Any, host: str, port: int, timeout: float) -> Deferred[str]:
    """Open (and close) a TCP connection; fire with the peer's address."""
    return _connect(HostnameEndpoint(reactor, host, port, timeout=timeout))


def tunnel(endpoints: UpstreamEndpoints, proxy: ForwardProxy, host: str, port: int,
           ) -> Deferred[str]:
    """Ask the forward proxy for a CONNECT tunnel to C{host}:C{port}, as the
    daemon does; fails with L{genaiproxy.upstream.tunnel.ProxyConnectError} (and its
    status) when the proxy refuses."""
    return _connect(ConnectTunnelEndpoint(endpoints.to_proxy(proxy), proxy, host, port))


def route_to(reactor: Any, endpoints: UpstreamEndpoints, host: str, port: int,
             timeout: float) -> IStreamClientEndpoint:
    """The plain endpoint under TLS to C{host}: direct, or a tunnel."""
    proxy = endpoints.proxy_for(host, port)
    if proxy is None:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    return ConnectTunnelEndpoint(endpoints.to_proxy(proxy), proxy, host, port)


@implementer(IOpenSSLClientConnectionCreator)
class _NoVerification:
    """Client TLS that accepts any chain: only to see what is presented."""

    def __init__(self, host: str) -> None:
        self._host = host.encode("idna")
        self._context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self._context.set_verify(SSL.VERIFY_NONE)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_tlsext_host_name(self._host)
        connection.set_connect_state()
        return connection


@implementer(IHandshakeListener)
class _Handshake(Protocol):
    """Fires C{done} with the peer's chain once the TLS handshake is over,
    or with the failure that ended the connection before."""

    def __init__(self) -> None:
        self.done: Deferred[list[x509.Certificate]] = Deferred()

    def handshakeCompleted(self) -> None:
        handle = self.transport.getHandle()  # type: ignore[union-attr]
        chain = handle.get_peer_cert_chain() or []
        self.done.callback([certificate.to_cryptography() for certificate in chain])
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.errback(reason)


def handshake(base: IStreamClientEndpoint, creator: IOpenSSLClientConnectionCreator,
              ) -> Deferred[list[x509.Certificate]]:
    """A TLS handshake over C{base}; fire with the chain presented."""
    protocol = _Handshake()
    connecting = wrapClientTLS(creator, base).connect(Factory.forProtocol(lambda: protocol))
    return connecting.addCallback(lambda _: protocol.done)


def presented_chain(base: IStreamClientEndpoint, host: str) -> Deferred[list[x509.Certificate]]:
    """The certificate chain C{host} presents, whoever signed it."""
    return handshake(base, _NoVerification(host))


def verified(base: IStreamClientEndpoint, host: str, trust: SystemAndExtraTrust,
             ) -> Deferred[list[x509.Certificate]]:
    """The handshake the daemon makes: its trust root, the host name checked."""
    return handshake(base, client_tls(host, trust))


@dataclass(frozen=True)
class CertificateSummary:
    """What a person needs to see of one certificate."""

    subject: str
    issuer: str
    names: tuple[str, ...]  # DNS names and IP addresses it is valid for


def _common_name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


def summarize(certificate: x509.Certificate) -> CertificateSummary:
    """The subject, issuer and names of C{certificate}."""
    names: list[str] = []
    try:
        alternative = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        names += alternative.get_values_for_type(x509.DNSName)
        names += [str(address) for address in alternative.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    subject = certificate.subject
    # A leaf without a common name goes by its first name (trustme's do).
    shown = _common_name(subject) if subject.get_attributes_for_oid(
        NameOID.COMMON_NAME) or not names else names[0]
    return CertificateSummary(shown, _common_name(certificate.issuer), tuple(names))


def tls_reason(failure: Failure) -> str:
    """An OpenSSL failure in words ("certificate verify failed"), else the
    failure's own message."""
    for reason in getattr(failure.value, "reasons", None) or [failure]:
        error = reason.value if isinstance(reason, Failure) else reason
        if isinstance(error, SSL.Error) and error.args and isinstance(error.args[0], list):
            details = [entry[2] for entry in error.args[0]
                       if isinstance(entry, tuple) and len(entry) == 3 and entry[2]]
            if details:
                return "; ".join(details)
    return failure.getErrorMessage()
