"""Protocols that receive an upstream response body.

L{BodyCollector} gathers a (non-streamed) body in memory.  L{StreamPump}
writes each chunk to the client request the moment it arrives, and is the
client request's push producer so that a slow reader pauses the upstream
socket instead of growing a buffer.  Both end the upstream read when no byte
has arrived for REQUEST_TIMEOUT: an idle timeout, not a cap on total time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from typing import Protocol as Interface

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from genaiproxy.api import UsageReader
from genaiproxy.upstream import UpstreamError, describe_failure

IDLE_TIMEOUT_KIND = "read_timeout"


class Rewriter(Interface):
    """Changes a stream on its way to the client (bytes in, bytes out, as
    they come; what it holds back it gives at the clean end)."""

    def feed(self, data: bytes) -> bytes:
        """What the client gets now of C{data} (and of what was held)."""

    def flush(self) -> bytes:
        """What is still held, at the clean end of the stream."""


def _closed() -> None:
    """The C{on_idle} of a closed L{IdleTimer}."""


class IdleTimer:
    """Calls C{on_idle} once C{timeout} seconds pass without a L{reset}."""

    __slots__ = ("_call", "_clock", "_on_idle", "_timeout")

    def __init__(self, clock: IReactorTime, timeout: float, on_idle: Callable[[], None]) -> None:
        self._clock = clock
        self._timeout = timeout
        self._on_idle = on_idle
        self._call: IDelayedCall | None = None

    def reset(self) -> None:
        """(Re)start the countdown."""
        if self._on_idle is _closed:
            return
        if self._call is not None and self._call.active():
            self._call.reset(self._timeout)
        else:
            self._call = self._clock.callLater(self._timeout, self._fire)

    def stop(self) -> None:
        """Stop counting (while paused)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def close(self) -> None:
        """Stop counting for good (the body is done), and let go of
        C{on_idle}: a method of the timer's owner, which holds the timer, a
        cycle that would keep the owner and all it holds (a stream's
        request) until a full pass of the garbage collector."""
        self.stop()
        self._on_idle = _closed

    @property
    def stopped(self) -> bool:
        """True when no countdown is running."""
        return self._call is None

    def _fire(self) -> None:
        self._call = None
        self._on_idle()


def _finished_cleanly(reason: Failure) -> bool:
    return reason.check(ResponseDone, PotentialDataLoss) is not None


def _upstream(protocol: Protocol) -> IPushProducer | None:
    """The transport a response body is delivered on (None until then).

    C{IResponse.deliverBody} connects the protocol to a producer of the
    body (twisted.web's C{TransportProxyProducer}), typed by Twisted as the
    plain C{ITransport} of any protocol.
    """
    return cast("IPushProducer | None", protocol.transport)


class BodyCollector(Protocol):
    """Collect a whole response body; C{done} fires with the bytes.

    Cancelling C{done} stops the upstream transport.
    """

    def __init__(self, clock: IReactorTime, idle_timeout: float) -> None:
        self._chunks: list[bytes] = []
        self._timer = IdleTimer(clock, idle_timeout, self._idle)
        self._failed_with: UpstreamError | None = None
        self.done: Deferred[bytes] = Deferred(lambda _: self._stop())

    def start_timer(self) -> None:
        """Start the idle timeout (when the body did not arrive at once)."""
        if not self.done.called:
            self._timer.reset()

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)
        if not self._timer.stopped:
            self._timer.reset()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._timer.close()
        if self.done.called:
            return
        if self._failed_with is not None:
            self.done.errback(self._failed_with)
        elif _finished_cleanly(reason):
            self.done.callback(b"".join(self._chunks))
        else:
            self.done.errback(reason)

    def _idle(self) -> None:
        self._failed_with = UpstreamError(
            IDLE_TIMEOUT_KIND, "the upstream stopped sending the response body", True
        )
        self._stop()

    def _stop(self) -> None:
        self._timer.stop()
        upstream = _upstream(self)
        if upstream is not None:
            upstream.stopProducing()


def collect_body(response: Any, clock: IReactorTime, idle_timeout: float) -> Deferred[bytes]:
    """Read C{response}'s whole body with an idle timeout."""
    collector = BodyCollector(clock, idle_timeout)
    response.deliverBody(collector)
    # Small bodies usually arrive with the headers; only a body still coming
    # needs a timer.
    collector.start_timer()
    return collector.done


@implementer(IPushProducer)
class StreamPump(Protocol):
    """Copy an upstream body to a client request chunk by chunk.

    C{on_chunk(data)} sees every chunk (for logging); C{on_first_byte()} is
    told when the first one arrives (for the metrics).  C{on_end(error)} is
    called once when the upstream body ends: with C{None} for a clean end
    (the request is then finished), or with an L{UpstreamError} for a broken
    stream, in which case the caller must end the client's response so that
    the client can tell (see L{genaiproxy.forwarding.streamed}).  Neither is called when the client
    went away first (L{client_gone}).

    A C{rewriter}, when given, changes what the client gets: the
    usage-chunk remover takes out what the proxy's own request for usage
    added to the stream (and hands the usage chunk's usage to the reader);
    the Responses bridge turns a chat stream into Responses events.  A
    C{usage} reader, when given, reads each chunk as the client got it,
    after it was sent.
    """

    # One lives as long as its stream (ten thousand at once): its state,
    # and the protocol's own two attributes, in slots, with no instance dict.
    __slots__ = ("_broken", "_gone", "_on_chunk", "_on_end", "_on_first_byte", "_paused",
                 "_received", "_request", "_rewriter", "_tail", "_timer", "bytes_sent",
                 "connected", "events_sent", "transport", "usage")

    def __init__(
        self,
        request: IConsumer,
        clock: IReactorTime,
        idle_timeout: float,
        on_chunk: Callable[[bytes], None] | None,
        on_end: Callable[[UpstreamError | None], None],
        on_first_byte: Callable[[], None] | None = None,
        usage: UsageReader | None = None,
        rewriter: Rewriter | None = None,
    ) -> None:
        self.transport = None  # (set by makeConnection)
        self.connected = 0
        # (None once the client went away: the request holds this pump as
        # its producer, a cycle that would keep both.)
        self._request: IConsumer | None = request
        self._on_chunk = on_chunk
        self._on_first_byte = on_first_byte
        self.usage = usage
        self._rewriter = rewriter
        self._received = False
        self._on_end = on_end
        self._timer = IdleTimer(clock, idle_timeout, self._idle)
        self._gone = False
        self._paused = False
        self._broken: UpstreamError | None = None
        self._tail = b"\n\n"
        self.bytes_sent = 0
        self.events_sent = 0

    @property
    def at_event_boundary(self) -> bool:
        """True when what was sent so far ends with a blank line (a complete
        server-sent event), so that another event may follow at once."""
        return self._tail.endswith(b"\n\n")

    # Protocol: the upstream side.

    def connectionMade(self) -> None:
        if self._request is not None:
            self._request.registerProducer(self, True)
        self._timer.reset()

    def dataReceived(self, data: bytes) -> None:
        if self._gone:
            return
        if not self._paused:
            self._timer.reset()
        if not self._received:
            self._received = True
            if self._on_first_byte is not None:
                self._on_first_byte()
        if self._rewriter is None:
            self._send(data)
        else:
            shown = self._rewriter.feed(data)
            if shown:
                self._send(shown)

    def _send(self, data: bytes) -> None:
        """Write C{data} to the client, count it, and read its usage."""
        self.bytes_sent += len(data)
        # Server-sent events end with a blank line; one may straddle chunks.
        self.events_sent += data.count(b"\n\n") + (self._tail[-1:] == b"\n" == data[:1])
        self._tail = (self._tail + data[-2:])[-2:]  # never copies a whole chunk
        if self._request is not None:
            self._request.write(data)
        if self._on_chunk is not None:
            self._on_chunk(data)
        if self.usage is not None:
            self.usage.feed(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._timer.close()
        if self._gone:
            return
        if self._request is not None:
            self._request.unregisterProducer()
        if self._broken is None and not _finished_cleanly(reason):
            self._broken = UpstreamError(
                "connection_lost",
                "the upstream connection broke mid-stream: " + describe_failure(reason),
                False,
            )
        if self._broken is None and self._rewriter is not None:
            rest = self._rewriter.flush()  # (dropped when broken: an unfinished event)
            if rest:
                self._send(rest)
        self._on_end(self._broken)

    def _idle(self) -> None:
        self._broken = UpstreamError(
            IDLE_TIMEOUT_KIND, "the upstream stopped sending for longer than REQUEST_TIMEOUT", False
        )
        upstream = _upstream(self)
        if upstream is not None:
            upstream.stopProducing()

    # IPushProducer: the client side drives these.

    def pauseProducing(self) -> None:
        self._paused = True
        self._timer.stop()
        upstream = _upstream(self)
        if upstream is not None:
            upstream.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._timer.reset()
        upstream = _upstream(self)
        if upstream is not None:
            upstream.resumeProducing()

    def stopProducing(self) -> None:
        self.client_gone()

    def client_gone(self) -> None:
        """The client disconnected: stop reading and close the upstream call."""
        if self._gone:
            return
        self._gone = True
        self._request = None
        self._timer.close()
        upstream = _upstream(self)
        if upstream is not None:
            upstream.stopProducing()
