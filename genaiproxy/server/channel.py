"""The client connection: limits on what a client may send, and how long it may take.

twisted.web's L{HTTPChannel} parses requests; this subclass answers the ways a
broken or hostile client can hold the proxy's resources, in terms a client
understands (a JSON error with the right status) and without waiting for what
it is refusing:

  - a request line or header line over C{max_header_line_bytes}: 414 or 431
    (Twisted would reset the connection without an answer);
  - a request head over C{max_header_bytes} or C{max_header_count} headers: 431;
  - a head that has not fully arrived C{header_timeout} seconds after its
    first byte, however it trickles: 408 (Twisted's idle timer restarts on
    every byte, so a byte a second would hold the connection for ever);
  - a body that stalls for C{body_idle_timeout}: 408;
  - a declared body over C{max_body_bytes}: 413 as soon as the head is in,
    without reading it (and without C{100 Continue}); a chunked body the
    moment it passes the limit (the body limit lives here whole: the
    request's chunks are counted by L{ProxyChannel.body_received}, and
    L{TooLargeResource} is the site's answer);
  - a connection idle between requests for C{keepalive_timeout}: closed;
  - any other malformed request: a JSON 400 rather than Twisted's bare one.

After such an answer the connection closes the way servers must when the
client may still be sending: the answer goes out, the write side is shut,
and what still arrives is read and dropped for a few seconds, so that the
client's TCP stack receives the answer instead of a reset.
"""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.resource import Resource
from twisted.web.server import Request as SiteRequest

from genaiproxy import __version__
from genaiproxy.api import error_document, json_bytes, set_json_error
from genaiproxy.config import default_of
from genaiproxy.server._twisted_private import HookedChannel

log = Logger(namespace="genaiproxy.channel")

# Request ids need to be unique, not secret: a seeded PRNG avoids a system
# call per request (uuid4 reads os.urandom).
_random_bits = random.Random().getrandbits


def new_request_id() -> str:
    """A new request id (a version-4 UUID)."""
    return str(uuid.UUID(int=_random_bits(128), version=4))

# After an early answer, how long what the client still sends is drained.
LINGER_SEC = 5.0

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


@dataclass(frozen=True)
class ClientLimits:
    """What one client connection may send, and how slowly (0: no limit).
    The defaults are the settings table's (no body limit, unless given)."""

    max_body_bytes: int = 0
    max_header_line_bytes: int = default_of("MAX_HEADER_LINE_BYTES")
    max_header_bytes: int = default_of("MAX_HEADER_BYTES")
    max_header_count: int = default_of("MAX_HEADER_COUNT")
    header_timeout: float = default_of("HEADER_TIMEOUT")
    keepalive_timeout: float = default_of("KEEPALIVE_TIMEOUT")
    body_idle_timeout: float = default_of("REQUEST_TIMEOUT")
    max_connections: int = default_of("MAX_CLIENT_CONNECTIONS")


# Where a connection is between requests.
_IDLE, _HEAD, _BODY, _BUSY = range(4)


class ProxyChannel(HookedChannel):
    """An HTTP/1.1 channel that enforces L{ClientLimits} (set by the site).

    One timer (Twisted's TimeoutMixin, which the channel already runs) serves
    every phase, so a request costs no more timers than Twisted's own: the
    keep-alive limit between requests, restarted by each byte; from a head's
    first byte, the head's deadline, which bytes do not restart; during a
    body, its idle limit.
    """

    # One lives as long as its connection (ten thousand at once, for open
    # streams).  Our own state is in slots, so that the instance dict holds
    # only Twisted's attributes (25): CPython shares the keys of a class's
    # instance dicts while there are at most 29 of them; past that, each
    # dict holds a table of its own (35 keys: 1.6 KB instead of 0.4 KB a
    # connection; see also HookedChannel.__init__).  The three limits
    # Twisted reads from its own class attributes are slots too.
    __slots__ = ("MAX_LENGTH", "_body_room", "_head_bytes", "_head_lines", "_linger",
                 "_max_head_bytes", "_max_head_lines", "_phase", "_refused", "limits",
                 "maxHeaders", "totalHeadersSize")

    def __init__(self) -> None:
        self.limits = ClientLimits()  # (the site gives its own)
        self._phase = _IDLE
        self._linger: IDelayedCall | None = None
        self._head_lines = 0
        self._head_bytes = 0
        self._max_head_bytes = sys.maxsize
        self._max_head_lines = sys.maxsize
        self._body_room = sys.maxsize  # what the current request's body may still add
        self._refused = False  # an early answer went out: input is dropped from now on
        # Twisted's defaults until connectionMade sets ours.
        self.MAX_LENGTH = HookedChannel.MAX_LENGTH
        self.maxHeaders = HookedChannel.maxHeaders
        self.totalHeadersSize = HookedChannel.totalHeadersSize
        super().__init__()

    def connectionMade(self) -> None:
        limits = self.limits
        self.MAX_LENGTH = limits.max_header_line_bytes or sys.maxsize
        self._max_head_bytes = limits.max_header_bytes or sys.maxsize
        # The request line, then at most max_header_count header lines.
        self._max_head_lines = limits.max_header_count + 1 if limits.max_header_count else sys.maxsize
        # Our own checks below answer first; Twisted's would answer a bare 400.
        self.totalHeadersSize = sys.maxsize
        self.maxHeaders = sys.maxsize
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        # (A bare CRLF after a request, which some clients send, is not a
        # request's first byte.)
        if self._phase == _IDLE and data.strip(b"\r\n"):
            self._head_started()
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        super().rawDataReceived(data)

    def resetTimeout(self) -> None:
        """Bytes restart the idle timers, not a head's deadline."""
        if self._phase != _HEAD:
            super().resetTimeout()

    def _head_started(self) -> None:
        """The first byte of a request: its head must be in within the timeout."""
        self._phase = _HEAD
        self._head_lines = self._head_bytes = 0
        # A new call rather than the idle one moved sooner: Twisted moves a
        # call sooner by searching the reactor's whole list of timers, which
        # holds one per open connection; cancelling and adding costs log(n).
        self.setTimeout(None)
        self.setTimeout(self.limits.header_timeout or None)

    def lineReceived(self, line: bytes) -> None:
        if self._phase == _IDLE:  # a pipelined request, parsed from the buffer
            if not line:  # a stray CRLF between requests: Twisted eats one
                super().lineReceived(line)
                return
            self._head_started()
        self._head_lines += 1
        self._head_bytes += len(line) + 2
        if self._head_bytes > self._max_head_bytes:
            self.refuse(431, "request_header_too_large",
                        f"The request head is larger than MAX_HEADER_BYTES "
                        f"({self.limits.max_header_bytes} bytes)")
            return
        if self._head_lines > self._max_head_lines and line:  # the blank line ends the head
            self.refuse(431, "too_many_headers",
                        f"The request has more than MAX_HEADER_COUNT "
                        f"({self.limits.max_header_count}) header lines")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        limit = self.limits.max_header_line_bytes
        if self._head_lines == 0:
            self.refuse(414, "request_line_too_long",
                        f"The request line is longer than MAX_HEADER_LINE_BYTES ({limit} bytes)")
        else:
            self.refuse(431, "request_header_too_large",
                        f"A header line is longer than MAX_HEADER_LINE_BYTES ({limit} bytes)")

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        limit = self.limits.max_body_bytes
        self._body_room = limit or sys.maxsize
        too_large = bool(limit) and self.length is not None and self.length > limit
        if too_large:
            # Dispatched at once with no body (lineReceived sees the length
            # 0): the site answers 413, and no "100 Continue" invites the
            # client to send what is refused.
            request.too_large = True
            request.requestHeaders.removeHeader(b"expect")
            self.length = 0
        super().allHeadersReceived()
        if too_large:
            self._stop_reading_after(request)
        elif self.length != 0:
            self._phase = _BODY
            self.setTimeout(self.limits.body_idle_timeout or None)
        else:
            self._phase = _BUSY  # dispatched next, by lineReceived

    def body_received(self, request: Request, size: int) -> bool:
        """Whether C{size} more bytes of C{request}'s body (a chunk the
        request is handed) are within C{max_body_bytes} and to be kept.  At
        the first byte over it, what was kept is dropped and the request is
        dispatched at once (the site answers 413); the rest of the body, and
        whatever else the client sends, is not read (the request asks no
        more once it is too large)."""
        self._body_room -= size
        if self._body_room >= 0:
            return True
        request.too_large = True  # type: ignore[attr-defined]
        # gotLength made the file before any chunk could arrive.
        assert request.content is not None
        request.content.seek(0)
        request.content.truncate()
        self._stop_reading_after(request)
        self.allContentReceived()
        return False

    def _stop_reading_after(self, request: Request) -> None:
        """The request's answer ends the connection; what else arrives is dropped."""
        self._refused = True
        self.persistent = False
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        # Hand what is left of this read to rawDataReceived, which drops it.
        self.setRawMode()

    def body_ended(self, rest: bytes) -> None:
        if self._refused:  # a refused chunked body's end, still in the decoder
            return
        super().body_ended(rest)

    def allContentReceived(self) -> None:
        self._phase = _BUSY
        # While the request is answered Twisted stops the timer, and once it
        # is answered restarts it with the period current now: between
        # requests that is the keep-alive limit, not the head's or the body's.
        self.setTimeout(None)
        # (TimeoutMixin types the period as int; callLater takes any number.)
        self.timeOut = self.limits.keepalive_timeout or None  # type: ignore[assignment]
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        if self.persistent:
            self._phase = _IDLE
        super().requestDone(request)

    def timeoutConnection(self) -> None:
        """TimeoutMixin's timer: a slow head or a stalled body is answered;
        an idle keep-alive connection is closed quietly."""
        if self._phase == _HEAD:
            self.refuse(408, "request_header_timeout",
                        f"The request head did not arrive within HEADER_TIMEOUT "
                        f"({self.limits.header_timeout:g} s)")
        elif self._phase == _BODY:
            self.refuse(408, "request_body_timeout",
                        f"The request body stalled for REQUEST_TIMEOUT "
                        f"({self.limits.body_idle_timeout:g} s)")
        elif self._phase == _IDLE and self.transport is not None:
            self.transport.loseConnection()
            self._abort_after(float(self.abortTimeout or LINGER_SEC))

    def bad_request(self) -> None:
        """Twisted's answer to a malformed request, as a JSON error."""
        self.refuse(400, "bad_request", "The request is not valid HTTP/1.1")

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answer C{status} with a JSON error before (or instead of) a request,
        then close the connection, dropping whatever else the client sends."""
        if self._refused or self.transport is None:
            return
        self.setTimeout(None)
        self._refused = True
        request_id = new_request_id()
        peer = self.transport.getPeer()
        log.warn("request_refused", id=request_id, status=status, reason=code,
                 peer=f"{getattr(peer, 'host', '')}:{getattr(peer, 'port', '')}")
        body = json_bytes(error_document(message, "invalid_request_error", code))
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nServer: genai-proxy/%s\r\nX-Request-ID: %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, _REASONS[status], __version__.encode("ascii"), request_id.encode("ascii"),
               len(body)) + body)
        self.setRawMode()
        self.loseConnection()

    def loseConnection(self) -> None:
        """Close; after a refusal, shut only the write side and drain for a while."""
        if not self._refused:
            super().loseConnection()
            return
        transport: Any = self.transport
        # As HTTPChannel.loseConnection does first: the channel registered
        # with its transport as a producer, and a transport does not close
        # while one is registered.
        if IPushProducer.providedBy(self.transport):
            transport.unregisterProducer()
        if hasattr(transport, "loseWriteConnection"):
            transport.loseWriteConnection()
        else:  # TLS: a clean close waits for the client's close_notify
            transport.loseConnection()
        self._abort_after(LINGER_SEC)

    def _abort_after(self, seconds: float) -> None:
        """A close that the client does not complete (it does not read, or
        never answers a TLS close) is cut after C{seconds}."""
        transport: Any = self.transport
        if self._linger is None and transport is not None:
            self._linger = self.callLater(seconds, transport.abortConnection)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        site = getattr(self, "site", None)
        if site is not None:
            site.connection_closed()
        super().connectionLost(reason)


class TooLargeResource(Resource):
    """The 413 answer for a body over MAX_REQUEST_BODY_MB (it was not kept)."""

    isLeaf = True

    def render(self, request: SiteRequest) -> bytes:
        limits: ClientLimits = request.channel.limits  # type: ignore[attr-defined]
        log.warn("request_refused", id=getattr(request, "request_id", ""), status=413,
                 reason="request_too_large", method=request.method.decode("latin-1"))
        return set_json_error(
            request, 413,
            f"Request body larger than MAX_REQUEST_BODY_MB ({limits.max_body_bytes / 1_000_000:g} MB)",
            "invalid_request_error", code="request_too_large",
        )
