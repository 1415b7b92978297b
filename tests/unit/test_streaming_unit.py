"""StreamPump and BodyCollector driven by a Clock and fake transports."""

from __future__ import annotations

from typing import Any

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed

from genaiproxy.forwarding.pump import BodyCollector, StreamPump


class FakeUpstreamTransport:
    """Records what the pump asks of the upstream connection."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


class FakeClientRequest:
    """The few IRequest methods the pump uses."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)


def make_pump(timeout: float = 5.0):
    clock, request, transport = Clock(), FakeClientRequest(), FakeUpstreamTransport()
    ended: list[Any | None] = []
    chunks: list[bytes] = []
    pump = StreamPump(request, clock, timeout, chunks.append, ended.append)
    pump.makeConnection(transport)
    return pump, clock, request, transport, ended, chunks


def test_chunks_are_written_as_they_arrive():
    pump, clock, request, transport, ended, chunks = make_pump()
    assert request.producer is pump
    pump.dataReceived(b"data: 1\n\n")
    assert request.written == [b"data: 1\n\n"] and chunks == [b"data: 1\n\n"]
    pump.dataReceived(b"data: 2\n\n")
    assert request.written[-1] == b"data: 2\n\n"
    pump.connectionLost(Failure(ResponseDone()))
    assert ended == [None] and request.producer is None
    assert pump.bytes_sent == 18


def test_idle_timeout_resets_on_every_chunk():
    pump, clock, request, transport, ended, chunks = make_pump(timeout=5)
    for _ in range(10):
        clock.advance(4)
        pump.dataReceived(b"x")
    assert not transport.stopped, "a stream that keeps sending was cut"
    clock.advance(5)
    assert transport.stopped
    pump.connectionLost(Failure(ResponseFailed([Failure(error.ConnectionLost())])))
    assert ended[0].kind == "read_timeout"


def test_paused_stream_is_not_timed_out():
    """A slow client pauses the upstream; waiting on the client is not idleness."""
    pump, clock, request, transport, ended, chunks = make_pump(timeout=5)
    pump.pauseProducing()
    assert transport.paused
    clock.advance(60)
    assert not transport.stopped
    pump.resumeProducing()
    assert not transport.paused
    clock.advance(5)
    assert transport.stopped


def test_broken_upstream_reported():
    pump, clock, request, transport, ended, chunks = make_pump()
    pump.dataReceived(b"data: 1\n\n")
    pump.connectionLost(Failure(ResponseFailed([Failure(error.ConnectionLost())])))
    assert ended[0].kind == "connection_lost"


def test_client_gone_stops_upstream_and_silences_the_pump():
    pump, clock, request, transport, ended, chunks = make_pump()
    pump.stopProducing()  # what twisted.web does when the client disconnects
    assert transport.stopped
    pump.dataReceived(b"late")
    pump.connectionLost(Failure(ResponseFailed([Failure(error.ConnectionLost())])))
    assert request.written == [] and ended == []
    assert not clock.getDelayedCalls()


def test_body_collector_gathers_and_times_out():
    clock = Clock()
    collector = BodyCollector(clock, 2.0)
    transport = FakeUpstreamTransport()
    collector.makeConnection(transport)
    collector.start_timer()
    collector.dataReceived(b"{")
    clock.advance(1.5)
    collector.dataReceived(b"}")
    collector.connectionLost(Failure(ResponseDone()))
    assert collector.done.result == b"{}"

    slow = BodyCollector(clock, 2.0)
    slow.makeConnection(transport)
    slow.start_timer()
    clock.advance(2.0)
    assert transport.stopped
    slow.connectionLost(Failure(ResponseFailed([Failure(error.ConnectionLost())])))
    failures = []
    slow.done.addErrback(failures.append)
    assert failures[0].value.kind == "read_timeout"


def test_event_boundary_tracking():
    pump, clock, request, transport, ended, chunks = make_pump()
    assert pump.at_event_boundary
    pump.dataReceived(b'data: {"a": 1}\n\ndata: {"cho')
    assert not pump.at_event_boundary
    pump.dataReceived(b'ices": []}\n')
    assert not pump.at_event_boundary
    pump.dataReceived(b"\n")
    assert pump.at_event_boundary
