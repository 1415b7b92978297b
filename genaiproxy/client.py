"""A lean HTTP/1.1 client for the upstream: keep-alive pool, one request per
connection at a time, responses parsed by httptools (llhttp).

Why not twisted.web's Agent: the proxy's latency budget is a fraction of a
millisecond per request, and Agent's generic machinery (endpoint objects and
URI parsing per request, a line-based parser, stateful dispatchers) costs
about as much as the rest of the proxy together.  This client keeps the same
contract for its callers: a response offers C{code}, C{phrase}, C{headers}
(L{twisted.web.http_headers.Headers}) and C{deliverBody(protocol)}, bodies end
with L{ResponseDone} or L{PotentialDataLoss}, and failures are Twisted's
L{ResponseNeverReceived} / L{ResponseFailed}, so the retry rules stay those of
the spec.  Connections come from an endpoint factory, which is where TLS and
forward proxies plug in.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import IO, Any, Callable, Optional, Union

import httptools
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

PoolKey = tuple[Any, ...]
# A request body: in memory, or in a (spooled) file to stream from.
RequestBody = Union[bytes, IO[bytes], None]

_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamResponse:
    """Status and headers of an upstream answer; the body is delivered to a
    protocol given to L{deliverBody}, as with twisted.web's IResponse."""

    def __init__(self, connection: "UpstreamConnection", code: int, phrase: bytes, headers: Headers) -> None:
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self._connection = connection
        self._protocol: Optional[Protocol] = None
        self._buffer: list[bytes] = []
        self._ended: Optional[Failure] = None

    @property
    def connection(self) -> Optional["UpstreamConnection"]:
        """The connection still carrying this body, or None once it ended (the
        connection may then already carry another request)."""
        return self._connection if self._ended is None else None

    def deliverBody(self, protocol: Protocol) -> None:
        """Send the body to C{protocol}: makeConnection, dataReceived, connectionLost."""
        self._protocol = protocol
        protocol.makeConnection(_BodyTransport(self))
        buffered, self._buffer = self._buffer, []
        for data in buffered:
            protocol.dataReceived(data)
        if self._ended is not None:
            protocol.connectionLost(self._ended)

    def _data(self, data: bytes) -> None:
        if self._protocol is None:
            self._buffer.append(data)
        else:
            self._protocol.dataReceived(data)

    def _end(self, reason: Failure) -> None:
        self._ended = reason
        if self._protocol is not None:
            self._protocol.connectionLost(reason)


class _BodyTransport:
    """What a body protocol may do to the connection: flow control only, and
    only while its body lasts."""

    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    def pauseProducing(self) -> None:
        connection = self._response.connection
        if connection is not None:
            connection.pause()

    def resumeProducing(self) -> None:
        connection = self._response.connection
        if connection is not None:
            connection.resume()

    def stopProducing(self) -> None:
        connection = self._response.connection
        if connection is not None:
            connection.abandon()


class UpstreamConnection(Protocol):
    """One HTTP/1.1 connection to the upstream (or through a forward proxy)."""

    def __init__(self, pool: "ConnectionPool", key: PoolKey) -> None:
        self._pool = pool
        self.key = key
        self._parser = httptools.HttpResponseParser(self)
        self._result: Optional[Deferred[UpstreamResponse]] = None
        self._response: Optional[UpstreamResponse] = None
        self._header_list: list[tuple[bytes, bytes]] = []
        self._phrase = b""
        self._head = False
        self._framed = False
        self._informational = False
        self._reusable = True
        self._abandoned = False
        self._paused = False
        self.idle_call: Optional[IDelayedCall] = None

    # Sending.

    def send(self, head: bytes, body: RequestBody, head_request: bool) -> Deferred[UpstreamResponse]:
        """Write one request; fire with its response once the headers arrive.

        A body in a file is streamed from it (from the start, so a retry
        sends it again), paced by the connection, never read into memory.
        """
        self._result = Deferred(lambda _: self.abandon())
        self._head = head_request
        self._response = None
        if body is None or isinstance(body, bytes):
            self.transport.write(head + body if body else head)
        else:
            body.seek(0)
            self.transport.write(head)
            FileSender().beginFileTransfer(body, self.transport).addErrback(lambda _: None)
        return self._result

    # httptools callbacks.

    def on_status(self, phrase: bytes) -> None:
        self._phrase += phrase

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_list.append((name, value))

    def on_headers_complete(self) -> None:
        if self._result is None:
            # An answer nobody asked for (an idle connection's unsolicited
            # 408, or one to a cancelled request): this connection can no
            # longer be trusted to pair requests with answers.
            self._reusable = False
            self._header_list, self._phrase = [], b""
            self.transport.abortConnection()
            return
        code = self._parser.get_status_code()
        if 100 <= code < 200:
            self._informational = True
            self._header_list, self._phrase = [], b""
            return
        headers = Headers()
        framed = False
        for name, value in self._header_list:
            headers.addRawHeader(name, value)
            lower = name.lower()
            if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
                framed = True
        self._framed = framed or code in _NO_BODY_STATUSES or self._head
        self._header_list = []
        if not self._parser.should_keep_alive():
            self._reusable = False
        response = self._response = UpstreamResponse(self, code, self._phrase, headers)
        self._phrase = b""
        result, self._result = self._result, None
        result.callback(response)
        if self._head or code in _NO_BODY_STATUSES:
            # No body follows; a HEAD answer may still announce a length,
            # which would confuse the parser, so such a connection is not reused.
            if self._head:
                self._reusable = False
            self._complete()

    def on_body(self, data: bytes) -> None:
        if self._response is not None:
            self._response._data(data)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._response is not None:
            self._complete()

    def _complete(self) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        reusable = self._reusable and not self._abandoned
        if reusable:
            if self._paused:  # the body's reader paused us; nothing more comes
                self.resume()
            self._pool.release(self)
        else:
            self.transport.loseConnection()
        response._end(Failure(ResponseDone()))

    # Protocol.

    def dataReceived(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(Failure(e))
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._pool.lost(self)
        if self._response is not None and not self._framed and not self._abandoned:
            # A body delimited by the end of the connection (no length, not chunked).
            response, self._response = self._response, None
            response._end(Failure(PotentialDataLoss()))
            return
        self._fail(reason)

    def _fail(self, reason: Failure) -> None:
        if self._result is not None:
            result, self._result = self._result, None
            if not result.called:  # not already cancelled
                result.errback(Failure(ResponseNeverReceived([reason])))
        elif self._response is not None:
            response, self._response = self._response, None
            response._end(Failure(ResponseFailed([reason])))

    # Flow control from the body's consumer.

    def pause(self) -> None:
        self._paused = True
        self.transport.pauseProducing()

    def resume(self) -> None:
        self._paused = False
        if not self._abandoned:
            self.transport.resumeProducing()

    def abandon(self) -> None:
        """The caller lost interest: close the connection, never reuse it."""
        self._abandoned = True
        self._reusable = False
        self.transport.abortConnection()


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, pool: "ConnectionPool", key: PoolKey) -> None:
        self._pool = pool
        self._key = key

    def buildProtocol(self, addr: Any) -> UpstreamConnection:
        return UpstreamConnection(self._pool, self._key)


class ConnectionPool:
    """Idle keep-alive connections, per key (scheme, host, port, route).

    C{endpoint_for(key)} makes the endpoint for a new connection.  Idle
    connections are closed after C{idle_timeout} seconds; at most
    C{max_idle_per_key} are kept.
    """

    def __init__(
        self,
        clock: IReactorTime,
        endpoint_for: Callable[[PoolKey], IStreamClientEndpoint],
        idle_timeout: float = 50.0,
        max_idle_per_key: int = 64,
    ) -> None:
        self._clock = clock
        self._endpoint_for = endpoint_for
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle_per_key
        self._idle: dict[PoolKey, list[UpstreamConnection]] = defaultdict(list)
        self._all: set[UpstreamConnection] = set()

    def request(self, key: PoolKey, head: bytes, body: RequestBody, head_request: bool = False) -> Deferred[UpstreamResponse]:
        """Send a serialised request on a pooled or new connection for C{key}."""
        idle = self._idle.get(key)
        if idle:
            connection = idle.pop()
            if connection.idle_call is not None and connection.idle_call.active():
                connection.idle_call.cancel()
            connection.idle_call = None
            return connection.send(head, body, head_request)
        connecting = self._endpoint_for(key).connect(_ConnectionFactory(self, key))

        def connected(connection: UpstreamConnection) -> Deferred[UpstreamResponse]:
            self._all.add(connection)
            return connection.send(head, body, head_request)

        return connecting.addCallback(connected)

    def release(self, connection: UpstreamConnection) -> None:
        """A connection finished its response and may carry another request."""
        idle = self._idle[connection.key]
        if connection in idle:
            return
        if len(idle) >= self._max_idle:
            connection.transport.loseConnection()
            return
        idle.append(connection)
        connection.idle_call = self._clock.callLater(self._idle_timeout, self._expire, connection)

    def _expire(self, connection: UpstreamConnection) -> None:
        """Close a connection idle for too long (and never hand it out again)."""
        connection.idle_call = None
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
        connection.transport.loseConnection()

    def lost(self, connection: UpstreamConnection) -> None:
        """A connection closed (by either side); forget it."""
        self._all.discard(connection)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
        if connection.idle_call is not None and connection.idle_call.active():
            connection.idle_call.cancel()
        connection.idle_call = None

    def close(self) -> Deferred[None]:
        """Close every connection (when the service stops)."""
        for connection in list(self._all):
            connection.transport.loseConnection()
        self._idle.clear()
        return succeed(None)


def body_length(body: RequestBody) -> int:
    """The size of a request body held in memory or in a file."""
    if body is None:
        return 0
    if isinstance(body, bytes):
        return len(body)
    return os.fstat(body.fileno()).st_size


def serialize_head(method: bytes, target: bytes, host: bytes, headers: Headers, length: int) -> bytes:
    """The request line and header block of an HTTP/1.1 request with a body
    of C{length} bytes."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + host]
    for name, values in headers.getAllRawHeaders():
        for value in values:
            lines.append(name + b": " + value)
    if length or method in (b"POST", b"PUT", b"PATCH"):
        lines.append(b"Content-Length: %d" % length)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)

