"""NO_PROXY matching and the CONNECT handshake on in-memory transports."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from genaiproxy.upstream.tunnel import (
    ConnectTunnelEndpoint,
    ForwardProxy,
    ProxyConnectError,
    bypasses_proxy,
)


@pytest.mark.parametrize("host, port, no_proxy, direct", [
    ("api.example.com", 443, "", False),
    ("api.example.com", 443, "*", True),
    ("api.example.com", 443, "example.com", True),
    ("api.example.com", 443, ".example.com", True),
    ("example.com", 443, ".example.com", True),
    ("badexample.com", 443, "example.com", False),
    ("localhost", 8080, "localhost", True),
    ("LOCALHOST", 8080, " other , localhost ", True),
    ("10.1.2.3", 443, "10.0.0.0/8", True),
    ("10.1.2.3", 443, "10.1.2.3", True),
    ("11.1.2.3", 443, "10.0.0.0/8", False),
    ("api.example.com", 443, "example.com:8443", False),
    ("api.example.com", 8443, "example.com:8443", True),
    ("::1", 443, "::1", True),
])
def test_no_proxy(host, port, no_proxy, direct):
    assert bypasses_proxy(host, port, no_proxy) is direct


def test_proxy_credentials_kept_out_of_display():
    proxy = ForwardProxy("http://user%40corp:p%3Ass@proxy.example:3128")
    assert proxy.display == "http://proxy.example:3128"
    assert proxy.authorization == b"Basic dXNlckBjb3JwOnA6c3M="  # user@corp:p:ss
    assert "p:ss" not in repr(proxy) and "p%3Ass" not in repr(proxy)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class FakeProxyEndpoint:
    def __init__(self) -> None:
        self.transport = StringTransport()
        self.protocol: Any = None

    def connect(self, factory: Factory):
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        return succeed(self.protocol)


def open_tunnel(proxy_url: str = "http://u:p@proxy:3128"):
    fake = FakeProxyEndpoint()
    endpoint = ConnectTunnelEndpoint(fake, ForwardProxy(proxy_url), "api.example.com", 443)
    results: list[Any] = []
    endpoint.connect(Factory.forProtocol(Recorder)).addBoth(results.append)
    return fake, results


def test_connect_then_pipe():
    fake, results = open_tunnel()
    sent = fake.transport.value()
    assert sent.startswith(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n")
    assert b"Proxy-Authorization: Basic dTpw\r\n" in sent
    assert results == []
    fake.protocol.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\nfirst bytes")
    [inner] = results
    assert isinstance(inner, Recorder) and inner.data == b"first bytes"
    fake.protocol.dataReceived(b" more")
    assert inner.data == b"first bytes more"


def test_refused_connect_names_proxy_and_status():
    fake, results = open_tunnel()
    fake.protocol.dataReceived(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    [failure] = results
    assert failure.check(ProxyConnectError)
    assert failure.value.status == 407
    assert str(failure.value) == (
        "proxy http://proxy:3128 refused CONNECT with 407 Proxy Authentication Required"
    )
    assert fake.transport.disconnecting


def test_proxy_closing_before_answer():
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    fake, results = open_tunnel()
    fake.protocol.connectionLost(Failure(ConnectionDone()))
    assert results[0].check(ProxyConnectError)
    assert "closed the connection" in str(results[0].value)


def test_protocol_declining_an_opened_tunnel_is_not_blamed_on_the_proxy():
    """When the proxy answered 200 but no protocol takes the tunnel, the
    failure says so; it is not reported as the proxy closing before its answer."""
    from twisted.internet.protocol import Factory as PlainFactory

    fake = FakeProxyEndpoint()
    endpoint = ConnectTunnelEndpoint(fake, ForwardProxy("http://proxy:3128"), "api.example.com", 443)

    class Declining(PlainFactory):
        def buildProtocol(self, addr):
            return None

    results: list[Any] = []
    endpoint.connect(Declining()).addBoth(results.append)
    fake.protocol.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\n")
    [failure] = results
    assert "no protocol took it" in str(failure.value)
    assert "before answering CONNECT" not in str(failure.value)
