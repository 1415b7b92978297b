"""What an open stream keeps in memory (ten thousand are open at once):
no copy of the request body, no cyclic garbage for its upstream
connection, no per-connection dict holding the channel's own state."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import Any

import pytest
from treq import collect
from twisted.internet.interfaces import IResolutionReceiver
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.client import URI
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from genaiproxy.config import trust_root
from genaiproxy.config.credentials import ClientTokens
from genaiproxy.server.channel import ClientLimits, ProxyChannel
from genaiproxy.server.site import AccessPolicy, ProxySite
from genaiproxy.testing import PROXY_URL, MemoryProxy
from genaiproxy.upstream.endpoints import UpstreamEndpoints

FIRST_EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'


class HeldStream(Resource):
    """An upstream that reads the request, lets go of its body, writes a
    first event and keeps the stream open."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Request] = []

    def render_POST(self, request: Request) -> int:
        assert request.content is not None
        request.content.close()  # (its own copy of the body: not the proxy's)
        self.received.append(request)
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(FIRST_EVENT)
        return NOT_DONE_YET


def test_an_open_stream_holds_no_copy_of_the_request_body():
    """Once a stream has started, neither the client's body (which
    twisted.web keeps with the request to its end) nor the body sent
    upstream (which Twisted's client keeps with its request) stays in
    memory, not even as garbage for the collector's rare full passes: a
    client sends 50 to 100 KB each turn, for every open stream."""
    upstream = HeldStream()
    # (The logged body would stay in Twisted's buffer of early log events,
    # which a test never ends: in the daemon it goes to the log file.)
    proxy = MemoryProxy(upstream, {"LOG_BODIES": "false"})
    body = {"model": "gpt-4.1", "stream": True,
            "messages": [{"role": "user", "content": "word " * 18_000}]}  # 90 KB
    gc.collect()
    gc.disable()  # (what only a collection would free counts as kept)
    tracemalloc.start()
    try:
        answering = proxy.client.post(PROXY_URL + "/v1/chat/completions", json=body,
                                      unbuffered=True)
        response = proxy.result_of(answering)
        chunks: list[bytes] = []
        collect(response, chunks.append)
        proxy.flush()
        assert b"".join(chunks) == FIRST_EVENT
        large = [trace for trace in tracemalloc.take_snapshot().traces if trace.size >= 80_000]
    finally:
        tracemalloc.stop()
        gc.enable()
    assert large == []
    [held] = upstream.received
    held.finish()
    proxy.flush()
    assert proxy.forwarder.in_flight == 0


class Leaving(Protocol):
    """A client that reads the first bytes of a stream and goes away."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.stopProducing()  # (Twisted's client closes the connection)


# What the proxy makes for each stream (besides Twisted's own objects).
PER_STREAM = {"ProxyRequest", "ForwardCall", "StreamedAnswer", "StreamPump", "IdleTimer",
              "UsageReader", "UsageChunkRemover"}


def _on_a_cycle(obj: Any, garbage_ids: set[int]) -> bool:
    """Whether C{obj} (garbage) lies on a reference cycle that does not go
    through a client channel: the in-memory connection keeps its channel in
    a cycle with its fake transport (a TCP transport lets go of its
    protocol when the connection is lost), and the channel lists its request."""
    todo = list(gc.get_referents(obj))
    seen: set[int] = set()
    while todo:
        referent = todo.pop()
        if referent is obj:
            return True
        if (id(referent) in seen or id(referent) not in garbage_ids
                or isinstance(referent, ProxyChannel)):
            continue
        seen.add(id(referent))
        todo.extend(gc.get_referents(referent))
    return False


def garbage_after(ending: str) -> set[str]:
    """The objects the proxy makes for a stream that the stream leaves on
    reference cycles (which only a full pass of the garbage collector
    frees) once it ended (C{ending}: "done", "broken", or "client_gone")."""
    upstream = HeldStream()
    proxy = MemoryProxy(upstream, {"LOG_BODIES": "false", "MAX_RETRIES": "0"})
    body = {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        answering = proxy.client.post(PROXY_URL + "/v1/chat/completions", json=body,
                                      unbuffered=True)
        response = proxy.result_of(answering)
        if ending == "client_gone":
            response.deliverBody(Leaving())
            proxy.flush()
        else:
            collect(response, lambda chunk: None).addErrback(lambda _: None)
            proxy.flush()
            [held] = upstream.received
            if ending == "done":
                held.write(b"data: [DONE]\n\n")
                held.finish()
            else:
                held.channel.transport.abortConnection()
            del held
        proxy.flush()
        assert proxy.forwarder.in_flight == 0
        del response, answering
        upstream.received.clear()
        gc.collect()
        ids = {id(o) for o in gc.garbage}
        return {type(o).__qualname__ for o in gc.garbage
                if type(o).__qualname__ in PER_STREAM and _on_a_cycle(o, ids)}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize("ending", ["done", "broken", "client_gone"])
def test_an_ended_stream_leaves_no_garbage_of_its_own(ending):
    """Once a stream ended (cleanly, broken upstream, or its client gone),
    its request, call, answer and pump are freed at once: none is left in a
    reference cycle for the garbage collector's full passes, which come
    rarely while thousands of streams are open (the whole request waited for
    one: some 15 KB a stream)."""
    assert garbage_after(ending) == set()


@implementer(IResolutionReceiver)
class _Receiver:
    pass


class RecordingResolver:
    """A name resolver that records the names asked and answers none."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def resolveHostName(self, receiver: Any, hostName: str, portNumber: int = 0,
                        addressTypes: Any = None, transportSemantics: str = "TCP") -> Any:
        self.asked.append(hostName)
        receiver.resolutionBegan(None)
        return receiver


def test_an_upstream_at_an_ip_address_is_connected_without_a_lookup():
    """An upstream given by IP address (IPv6 with its URL brackets) is
    connected to at once: no name lookup (which runs in a thread), and no
    cyclic garbage per connection for the collector's full passes to find
    (Twisted's name-resolving endpoint makes a class for each).  A host
    name is still looked up."""
    reactor = MemoryReactorClock()
    resolver = reactor.nameResolver = RecordingResolver()  # type: ignore[assignment]
    endpoints = UpstreamEndpoints(reactor, 5.0, trust_root("", ""), None, "")
    factory = Factory.forProtocol(Protocol)
    for url, address in ((b"http://127.0.0.1:8080/v1", "127.0.0.1"),
                         (b"http://[::1]:11434/v1", "::1")):
        endpoint = endpoints.endpointForURI(URI.fromBytes(url))
        endpoint.connect(factory)
        gc.collect()
        for _ in range(5):
            endpoint.connect(factory)
        assert gc.collect() == 0
        assert reactor.tcpClients[-1][:2] == (address, URI.fromBytes(url).port)
    assert resolver.asked == []
    endpoints.endpointForURI(URI.fromBytes(b"https://gateway.example:443/v1")).connect(factory)
    assert resolver.asked == ["gateway.example"]


class Streaming(Resource):
    """Answers every request as a stream would: its producer registered on
    the request, the answer left open."""

    isLeaf = True

    def render(self, request: Request) -> int:
        request.registerProducer(Protocol(), True)
        return NOT_DONE_YET


def test_a_streams_channel_shares_its_dict_keys_after_other_connections():
    """After forty connections that were not streams, a stream's channel
    still stores its attributes in the keys all channels share (the keys a
    stream adds were shared with the first connection): its dict is no
    larger than a plain request's."""

    class Channel(ProxyChannel):  # (a class of its own: shared keys start afresh)
        pass

    def serve(resource: Resource, head: bytes) -> ProxyChannel:
        site = ProxySite(resource, AccessPolicy(ClientTokens(), ()), ClientLimits())
        site.reactor = MemoryReactorClock()  # type: ignore[assignment]
        site.protocol = Channel  # type: ignore[assignment]
        channel = site.buildProtocol(None)
        channel.makeConnection(StringTransport())
        channel.dataReceived(head)
        return channel

    head = b"GET /v1/models HTTP/1.1\r\nHost: proxy\r\n\r\n"
    plain = [serve(notFound(), head) for _ in range(40)]
    stream = serve(Streaming(), head)
    assert sys.getsizeof(vars(stream)) <= sys.getsizeof(vars(plain[-1]))


def test_the_channels_own_state_is_not_in_its_instance_dict():
    """A client channel's own state (its limits, phase and counters) lives
    in slots: its instance dict holds only Twisted's attributes, few enough
    (at most 29) for CPython to share its keys among all channels instead
    of giving each open connection a 1.6 KB table of its own."""
    site = ProxySite(notFound(), AccessPolicy(ClientTokens(), ()), ClientLimits())
    site.reactor = MemoryReactorClock()  # type: ignore[assignment]
    channel = site.buildProtocol(None)
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
                         b"Content-Length: 2\r\n\r\n{}")
    own = {"limits", "MAX_LENGTH", "maxHeaders", "totalHeadersSize", "_phase", "_head_lines",
           "_head_bytes", "_max_head_bytes", "_max_head_lines", "_body_room", "_linger",
           "_refused"}
    assert not own & set(vars(channel))
    assert len(vars(channel)) <= 29
