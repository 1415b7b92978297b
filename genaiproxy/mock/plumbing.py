"""The mock upstream's HTTP plumbing: its counters and request log, helpers
to read the X-Mock-* controls and write JSON answers, the paced SSE stream,
gzip on request, and the channel that counts connections.
"""

from __future__ import annotations

import collections
import json
import socket
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISystemHandle, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, server

from genaiproxy.mock.payloads import BadRequest

REQUEST_LOG_SIZE = 200

JSON_TYPE = b"application/json"
SSE_TYPE = b"text/event-stream; charset=utf-8"


@dataclass
class MockState:
    """Everything one mock site remembers: request log and counters."""

    requests: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=REQUEST_LOG_SIZE)
    )
    request_count: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    streams_dropped: int = 0
    open_connections: int = 0
    connections_accepted: int = 0
    completion_count: int = 0
    # X-Request-ID -> connections already reset for X-Mock-Fail-First.
    failed_by_request_id: dict[str, int] = field(default_factory=dict)

    def reset(self) -> int:
        """Forget logged requests and counters (not the live connection
        gauge); return how many logged requests were dropped."""
        cleared = len(self.requests)
        self.requests.clear()
        self.failed_by_request_id.clear()
        self.request_count = 0
        self.streams_started = self.streams_completed = 0
        self.streams_cancelled = self.streams_dropped = 0
        self.connections_accepted = 0
        return cleared

    def stats(self) -> dict[str, int]:
        """The counters as served by ``GET /_mock/stats``."""
        return {
            "requests": self.request_count,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "streams_dropped": self.streams_dropped,
            "open_connections": self.open_connections,
            "connections_accepted": self.connections_accepted,
        }


def error_body(message: str, error_type: str, code: str | None) -> bytes:
    """Encode an OpenAI-style error object."""
    error = {"message": message, "type": error_type, "code": code}
    return json.dumps({"error": error}).encode()


def send_json(request: server.Request, payload: Any, status: int = 200) -> bytes:
    """Set status and JSON content type; return the body for render()."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_TYPE)
    return json.dumps(payload).encode()


def send_error(request: server.Request, status: int, message: str) -> bytes:
    """Answer with an OpenAI ``invalid_request_error``."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_TYPE)
    return error_body(message, "invalid_request_error", None)


def mock_header(request: server.Request, name: bytes) -> str | None:
    """A request header as text (case-insensitive name), or None."""
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1").strip()


def text_header(request: server.Request, name: bytes) -> str | None:
    """A free-text control header (UTF-8, else Latin-1), or None."""
    value = request.getHeader(name)
    if value is None:
        return None
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return value.decode("latin-1").strip()


def flag_header(request: server.Request, name: bytes, default: bool) -> bool:
    """An on/off control header: absent, C{default}; empty or C{0}, off;
    anything else, on (so that a header can also turn off what a
    command-line option turned on)."""
    text = mock_header(request, name)
    if text is None:
        return default
    return text not in ("", "0")


def int_header(request: server.Request, name: bytes) -> int | None:
    """A non-negative integer control header, or None when absent."""
    text = mock_header(request, name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name.decode()} must be an integer, got {text!r}") from None
    if value < 0:
        raise BadRequest(f"{name.decode()} must not be negative")
    return value


def float_header(request: server.Request, name: bytes) -> float | None:
    """A non-negative number control header, or None when absent."""
    text = mock_header(request, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name.decode()} must be a number, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise BadRequest(f"{name.decode()} must not be negative")
    return value


def not_allowed(request: server.Request, allowed: bytes) -> bytes:
    """405 for a known path with the wrong method."""
    request.setHeader(b"allow", allowed)
    return send_error(request, 405, f"Method {request.method.decode('latin-1')} not allowed")


def connection_of(request: server.Request) -> ITCPTransport:
    """The connection C{request} came on (TCP, or TLS over it)."""
    return cast(ITCPTransport, request.channel.transport)


def abort(request: server.Request) -> None:
    """Reset the connection now, dropping anything not yet sent."""
    connection_of(request).abortConnection()


def reset_after_flush(request: server.Request) -> None:
    """Reset the connection once what was already written has been sent.

    ``abortConnection()`` would throw away the events still sitting in the
    transport's write buffer, so instead close with SO_LINGER 0: Twisted
    flushes, then the kernel sends a RST instead of a graceful close.
    """
    transport = connection_of(request)
    try:
        handle = cast(ISystemHandle, transport).getHandle()
        cast(socket.socket, handle).setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    except (AttributeError, OSError):
        pass  # not a real socket (e.g. a test transport): plain close
    transport.loseConnection()


class PacedStream:
    """One SSE stream, paced by the clock.

    ``head`` (events that carry no content) goes out with the first content
    chunk, each further chunk after ``delay``, then ``tail``.  Events are
    written from timer callbacks as they fall due; when the client goes away
    the pending timer is cancelled and nothing more is written to the
    request.
    """

    def __init__(
        self,
        state: MockState,
        clock: IReactorTime,
        request: server.Request,
        chunks: list[bytes],
        tail: bytes,
        delay: float,
        drop_after: int | None,
        head: bytes = b"",
    ) -> None:
        self._state = state
        self._clock = clock
        self._request = request
        self._chunks = chunks
        self._tail = tail
        self._delay = delay
        self._drop_after = drop_after
        self._head = head
        # X-Mock-Error-After: the stream's error event after that many events.
        self._error_after = int_header(request, b"x-mock-error-after")
        self._sent = 0
        self._call: IDelayedCall | None = None
        self._done = False

    def start(self) -> None:
        """Send headers and the first event now, schedule the rest."""
        self._state.streams_started += 1
        request = self._request
        request.setResponseCode(200)
        if mock_header(request, b"x-mock-no-content-type") in (None, "", "0"):
            request.setHeader(b"content-type", SSE_TYPE)
        else:
            request.defaultContentType = None  # twisted.web would add text/html
        request.setHeader(b"cache-control", b"no-cache")
        request.notifyFinish().addErrback(self._client_gone)
        request.write(self._head)  # headers go out even if no event follows
        self._step()

    def _step(self) -> None:
        """Write the event that is due, then finish, drop or reschedule."""
        self._call = None
        if self._error_due():
            self._fail()
            return
        if self._sent < len(self._chunks) and self._sent != self._drop_after:
            self._request.write(self._chunks[self._sent])
            self._sent += 1
        if self._sent == self._drop_after:
            self._drop()
            return
        if self._error_due():
            self._fail()
            return
        if self._sent < len(self._chunks):
            self._call = self._clock.callLater(self._delay, self._step)
            return
        self._request.write(self._tail)
        self._finish()

    def _finish(self) -> None:
        """End the stream cleanly, after its last bytes."""
        self._done = True
        self._request.finish()
        self._state.streams_completed += 1

    def _error_due(self) -> bool:
        """Whether X-Mock-Error-After's error event is due now (at the
        latest instead of the stream's end)."""
        after = self._error_after
        return after is not None and self._sent >= min(after, len(self._chunks))

    def _fail(self) -> None:
        """End the stream with an error event in OpenAI's shape, as a gateway
        does when the model fails after the answer began: cleanly, or with
        X-Mock-Drop-After too, by cutting the connection after it."""
        self._request.write(b"data: " + json.dumps({"error": {
            "message": "The mock upstream failed mid-stream (X-Mock-Error-After)",
            "type": "server_error", "code": "server_error"}}).encode() + b"\n\n")
        if self._drop_after is not None:
            self._drop()
            return
        self._finish()

    def _drop(self) -> None:
        """Cut the connection mid-stream, without the terminating chunk."""
        self._done = True
        self._state.streams_dropped += 1
        reset_after_flush(self._request)

    def _client_gone(self, reason: Failure) -> None:
        """The connection closed before the end: stop the timer."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if not self._done:
            self._done = True
            self._state.streams_cancelled += 1


class CountingChannel(http.HTTPChannel):
    """An HTTP/1.1 channel that keeps the site's open-connection gauge."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.state.open_connections += 1
        self.factory.state.connections_accepted += 1

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.state.open_connections -= 1
        super().connectionLost(reason)


class SyncFlushGzip:
    """A twisted.web request encoder that gzips and flushes every write."""

    def __init__(self, request: server.Request) -> None:
        self._request = request
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def encode(self, data: bytes) -> bytes:
        self._request.responseHeaders.removeHeader(b"content-length")
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush()


class GzipOnRequest:
    """Gzips the answers of requests that carry X-Mock-Gzip and accept gzip."""

    def encoderForRequest(self, request: server.Request) -> SyncFlushGzip | None:
        if mock_header(request, b"x-mock-gzip") in (None, "", "0"):
            return None
        accepted = b",".join(request.requestHeaders.getRawHeaders(b"accept-encoding", []))
        if b"gzip" not in accepted.lower():
            return None
        request.responseHeaders.setRawHeaders(b"content-encoding", [b"gzip"])
        return SyncFlushGzip(request)
