"""The client channel's closes and the connection cap, in memory with a Clock."""

from __future__ import annotations

import tempfile

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.pages import notFound

from genaiproxy.config.credentials import ClientTokens
from genaiproxy.server.channel import LINGER_SEC, ClientLimits
from genaiproxy.server.site import AccessPolicy, ProxySite
from genaiproxy.upstream.bodies import KeepOpen


class TLSLikeTransport(StringTransport):
    """A transport that, like TLS, cannot shut only its write side and whose
    close the peer may never complete."""

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True

    def __getattribute__(self, name: str):  # no loseWriteConnection, as TLS
        if name == "loseWriteConnection":
            raise AttributeError(name)
        return super().__getattribute__(name)


def make_site(**limits) -> tuple[ProxySite, Clock]:
    clock = Clock()
    # Every path is a 404 (twisted.web.pages', not Resource's deprecated default).
    site = ProxySite(notFound(), AccessPolicy(ClientTokens(), ()), ClientLimits(**limits))
    site.reactor = clock  # type: ignore[assignment]
    return site, clock


def connect(site: ProxySite, transport: StringTransport):
    channel = site.buildProtocol(None)
    channel.makeConnection(transport)
    return channel


def test_a_refusal_on_a_tls_like_transport_is_cut_after_the_linger():
    """After a 408, a close the client never completes is aborted (TLS
    waits for the client's close_notify, which may never come)."""
    site, clock = make_site(header_timeout=1.0)
    transport = TLSLikeTransport()
    channel = connect(site, transport)
    channel.dataReceived(b"G")
    clock.advance(1.0)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert not transport.aborted
    clock.advance(LINGER_SEC)
    assert transport.aborted


def test_an_idle_connection_whose_close_hangs_is_aborted():
    """The keep-alive close is cut too when the client does not complete it."""
    site, clock = make_site(keepalive_timeout=2.0)
    transport = TLSLikeTransport()
    connect(site, transport)
    clock.advance(2.0)
    assert transport.disconnecting and not transport.aborted
    clock.advance(60)
    assert transport.aborted


def test_past_the_cap_the_connection_gets_a_protocol_that_aborts_it():
    """Not None (a TLS listener would wrap None and fail): a protocol that
    ends the connection at once, and is not counted."""
    site, _ = make_site(max_connections=1)
    connect(site, StringTransport())
    extra = TLSLikeTransport()
    refused = site.buildProtocol(None)
    assert refused is not None
    refused.makeConnection(extra)
    assert extra.aborted and site.open_connections == 1


def test_each_attempt_reads_a_spooled_upload_at_its_own_position():
    """An attempt still sending after an early answer and the retry that
    starts over read the same file without moving each other."""
    with tempfile.TemporaryFile() as upload:
        upload.write(bytes(range(100)))
        upload.seek(0)
        first = KeepOpen(upload)
        assert first.read(10) == bytes(range(10))
        upload.seek(0)
        second = KeepOpen(upload)
        assert second.read(-1) == bytes(range(100))
        assert first.read(10) == bytes(range(10, 20))
        first.close()
        second.close()
    # The caller's file is closed; a copy made before still reads.


def test_a_stray_crlf_after_a_request_does_not_start_the_head_deadline():
    """Some clients send CRLF after a request: the idle connection must not
    then get a 408 for a head that never started."""
    site, clock = make_site(header_timeout=1.0, keepalive_timeout=30.0)
    transport = StringTransport()
    channel = connect(site, transport)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    transport.clear()
    channel.dataReceived(b"\r\n")
    clock.advance(5)
    assert transport.value() == b"" and not transport.disconnecting
    clock.advance(30)
    assert transport.disconnecting and b"408" not in transport.value()


def test_limits_set_to_zero_are_no_limits():
    """0 turns each client limit off: a head of 150 long headers, sent after
    a long pause, is served, and an idle connection stays open."""
    site, clock = make_site(max_header_line_bytes=0, max_header_bytes=0, max_header_count=0,
                            header_timeout=0, keepalive_timeout=0)
    transport = StringTransport()
    channel = connect(site, transport)
    channel.dataReceived(b"GET /x HTTP/1.1\r\n")
    clock.advance(3600)
    channel.dataReceived(b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 20_000) for i in range(150)))
    channel.dataReceived(b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    clock.advance(3600)
    assert not transport.disconnecting


def test_after_an_answer_the_idle_limit_is_the_keepalive_one():
    """Once a request with a body is answered, the connection waits for the
    next one for KEEPALIVE_TIMEOUT: neither the head's deadline nor the
    body's idle limit (both shorter here) carries over, and the close is
    quiet (no 408)."""
    site, clock = make_site(header_timeout=1.0, body_idle_timeout=2.0, keepalive_timeout=30.0)
    transport = StringTransport()
    channel = connect(site, transport)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    transport.clear()
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting and transport.value() == b""


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read():
    """A Content-Length over MAX_REQUEST_BODY_MB gets its 413 as soon as the
    head is in, with no "100 Continue"; the connection closes and what the
    client still sends is dropped."""
    site, _ = make_site(max_body_bytes=10)
    transport = StringTransport()
    channel = connect(site, transport)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         b"Content-Length: 11\r\n\r\n")
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer
    assert b'"request_too_large"' in answer and b"connection: close" in answer.lower()
    transport.clear()
    channel.dataReceived(b"hello world GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value() == b""


def test_a_chunked_body_is_refused_the_moment_it_passes_the_limit():
    """A chunked body gets its 413 at the first chunk that takes it over the
    limit, once, even when its last chunk is in the same read; nothing of
    it is kept, and the connection closes."""
    site, _ = make_site(max_body_bytes=10)
    transport = StringTransport()
    channel = connect(site, transport)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.count(b"HTTP/1.1 ") == 1
    assert transport.disconnecting


def test_chunks_after_the_refused_one_in_the_same_read_are_dropped():
    """The 413 is answered (and its request done with) inside the read that
    took the body over the limit; the chunks after it in that read are
    dropped without error, so the answer reaches the client instead of a
    connection cut by an exception (seen with 64 KiB chunks from httpx)."""
    site, _ = make_site(max_body_bytes=10)
    transport = StringTransport()
    channel = connect(site, transport)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"6\r\nhello \r\n5\r\nworld\r\n3\r\nabc\r\n3\r\ndef\r\n")
    channel.dataReceived(b"3\r\nghi\r\n0\r\n\r\n")
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.count(b"HTTP/1.1 ") == 1
    assert transport.disconnecting


def test_a_chunked_body_at_the_limit_is_kept():
    """The limit is inclusive: a chunked body of exactly MAX_REQUEST_BODY_MB
    is served."""
    site, _ = make_site(max_body_bytes=10)
    transport = StringTransport()
    channel = connect(site, transport)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    assert not transport.disconnecting


def test_a_refusal_releases_the_transport_from_the_channel():
    """The channel registered itself with its transport as the producer of
    what it reads; a refusal lets it go before shutting the write side, so
    the transport does not wait on it to close."""
    site, clock = make_site(header_timeout=1.0)
    transport = StringTransport()
    channel = connect(site, transport)
    assert transport.producer is channel
    channel.dataReceived(b"G")
    clock.advance(1.0)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert transport.producer is None
