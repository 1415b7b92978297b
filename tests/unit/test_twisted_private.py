"""What the proxy relies on in Twisted's private API, pinned.

Twisted has no public way to do these few things (each use is explained where
it is made: genaiproxy/server/_twisted_private.py, genaiproxy/config/tls.py,
and genaiproxy/config/listen.py, whose pin is in test_settings_table.py).
A Twisted release that renames or reroutes one of them fails a test here by
name, instead of quietly changing what clients get; setup.py keeps Twisted
below its next major release until these pass with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509 import load_pem_x509_certificate
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.web.http import HTTPChannel, Request
from zope.interface import implementer

from genaiproxy.config.tls import client_tls, trust_root
from genaiproxy.server._twisted_private import HookedChannel


class Dispatched(Request):
    """A request that records that the channel dispatched it."""

    dispatched: list[Dispatched] = []

    def process(self) -> None:
        self.dispatched.append(self)


class Recorder(HookedChannel):
    """A channel that records what its two hooks are called with."""

    requestFactory = Dispatched
    timeOut = None  # no timer on the global reactor

    def __init__(self) -> None:
        super().__init__()
        self.bad: int = 0
        self.ends: list[bytes] = []

    def bad_request(self) -> None:
        self.bad += 1

    def body_ended(self, rest: bytes) -> None:
        self.ends.append(rest)
        super().body_ended(rest)


def feed(data: bytes) -> tuple[Recorder, StringTransport]:
    Dispatched.dispatched = []
    channel = Recorder()
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(data)
    return channel, transport


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\nNo-colon-here\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /\r\n",
], ids=["no-colon", "bad-name", "bad-length", "two-lengths", "bad-coding", "bad-chunk",
        "bad-request-line"])
def test_every_malformed_request_goes_to_bad_request(head: bytes) -> None:
    """HTTPChannel answers a malformed request only through its private
    C{_respondToBadRequestAndDisconnect}: the hook turns it into
    C{bad_request}, which the proxy's channel answers with a JSON 400.
    Without it, the client would get Twisted's bare 400 (written here if
    the hook were bypassed) and nothing would be dispatched either way."""
    channel, transport = feed(head)
    assert channel.bad >= 1
    assert transport.value() == b""
    assert Dispatched.dispatched == []
    # The connection ends, as a real one does after a 400: a chunked
    # body's spooled file is closed with it.
    channel.connectionLost(Failure(ConnectionDone()))


def test_the_attributes_a_stream_sets_start_at_their_defaults() -> None:
    """The two attributes HookedChannel sets ahead of a stream (so that
    they are shared keys of every channel's dict) are Twisted's, with the
    class defaults it sets them to, and a stream's producer sets them."""
    assert HTTPChannel._requestProducer is None  # type: ignore[attr-defined]
    assert HTTPChannel._requestProducerStreaming is None  # type: ignore[attr-defined]
    channel, _ = feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert vars(channel)["_requestProducer"] is None
    producer = Protocol()
    channel.registerProducer(producer, True)
    assert (channel._requestProducer, channel._requestProducerStreaming) == (  # type: ignore[attr-defined]
        producer, True)


def test_bad_request_by_default_is_twisteds_answer() -> None:
    """The public name calls Twisted's own answer: a bare 400, then a close."""
    channel = HookedChannel()
    channel.timeOut = None
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET / HTTP/1.1\r\nNo-colon-here\r\n\r\n")
    assert transport.value() == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert transport.disconnecting


@pytest.mark.parametrize("body", [
    b"Content-Length: 5\r\n\r\nhello",
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
], ids=["content-length", "chunked"])
def test_the_end_of_a_body_goes_to_body_ended_with_what_follows(body: bytes) -> None:
    """The transfer decoders report a body's end only through the private
    C{_finishRequestBody}: the hook turns it into C{body_ended}, with the
    bytes after the body (a pipelined request), and the default dispatches
    the request.  The proxy's channel drops the end of a body it already
    answered (a chunked body refused at the limit) there."""
    following = b"GET /next HTTP/1.1\r\n"
    channel, _ = feed(b"POST /first HTTP/1.1\r\n" + body + following)
    assert channel.ends == [following]
    assert [request.uri for request in Dispatched.dispatched] == [b"/first"]
    assert Dispatched.dispatched[0].content.read() == b"hello"


@implementer(IHandshakeListener)
class Handshaker(Protocol):
    """Records whether the TLS handshake completed."""

    done = False

    def handshakeCompleted(self) -> None:
        self.done = True


def handshake(client_trust_bundle: str, ca: trustme.CA) -> bool:
    """Whether a client using the proxy's upstream TLS options, trusting
    C{client_trust_bundle}, completes a handshake with a server whose
    certificate C{ca} issued for upstream.test (in memory)."""
    issued = ca.issue_cert("upstream.test")
    # cryptography's objects: pyOpenSSL deprecates its own X509 and PKey here.
    server_options = CertificateOptions(
        privateKey=load_pem_private_key(issued.private_key_pem.bytes(), None),
        certificate=load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()))
    client_options = client_tls("upstream.test", trust_root(client_trust_bundle, ""))
    listener = Handshaker()
    server_factory = TLSMemoryBIOFactory(server_options, False, Factory.forProtocol(Protocol))
    client_factory = TLSMemoryBIOFactory(client_options, True, Factory.forProtocol(lambda: listener))
    _, _, pump = connectedServerAndClient(lambda: server_factory.buildProtocol(None),
                                          lambda: client_factory.buildProtocol(None))
    pump.flush()
    return listener.done


def test_a_ca_bundle_reaches_the_tls_context_through_the_trust_root(tmp_path: Path) -> None:
    """optionsForClientTLS takes our trust root as an IOpenSSLTrustRoot (an
    interface importable only from twisted.internet._sslverify) and calls
    its private C{_addCACertsToContext} on every context it makes: that is
    how GENAI_CA_BUNDLE's CA comes to be trusted beside the system's.  A
    server certificate from that CA is accepted with the bundle, and
    refused without it."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    assert handshake(str(bundle), ca)
    assert not handshake("", ca)
