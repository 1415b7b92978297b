"""The streamed half of a forwarded request's answer.

A L{genaiproxy.forwarding.call.ForwardCall} whose answer turns out to be a
stream makes a L{StreamedAnswer} and holds it to the end of the request.  It
starts the L{StreamPump} (with a usage reader, and the usage-chunk remover
when the proxy asked for usage), counts the time to the first byte, logs
chunk previews, and ends the stream, or marks it broken so that the client
can tell.  What it reads of its call is
L{genaiproxy.forwarding.answer.AnsweringCall}.
"""

from __future__ import annotations

from io import BytesIO
from time import monotonic
from typing import Any

from twisted.logger import Logger
from twisted.web.iweb import IResponse

from genaiproxy.api import USAGE_ROUTES, Route, UsageChunkRemover, UsageReader, json_bytes
from genaiproxy.forwarding.answer import SSE_TYPE, AnsweringCall
from genaiproxy.forwarding.bridge import BridgeEvents
from genaiproxy.forwarding.pump import Rewriter, StreamPump
from genaiproxy.forwarding.report import about, count_tokens, elapsed_ms, failure_document
from genaiproxy.observe import LoggedHeaders
from genaiproxy.upstream import UpstreamError

__all__ = ["DEFAULT_STREAM_TYPE", "StreamedAnswer"]

log = Logger(namespace="genaiproxy.forward")

DEFAULT_STREAM_TYPE = b"text/event-stream; charset=utf-8"


def _drop_request_body(request: Any) -> None:
    """Let go of the client's request body, which twisted.web keeps until
    the request ends: once a stream starts no attempt follows (retries and
    fallbacks come before its first byte), and a real client sends 50 to
    100 KB each turn, held for the stream's whole life.  A body spooled to
    a file is left alone (an attempt may still be sending it)."""
    content = request.content
    if isinstance(content, BytesIO):
        content.seek(0)
        content.truncate()


def _drop_upstream_head(response: IResponse) -> None:
    """Empty the upstream's response headers, which Twisted's client keeps
    with the response for the stream's whole life: the client got its copy
    (L{genaiproxy.forwarding.answer.return_head}), and nothing reads them
    again."""
    headers = response.headers
    for name in [name for name, _ in headers.getAllRawHeaders()]:
        headers.removeHeader(name)


class StreamedAnswer:
    """A streamed answer, pumped from the upstream to the client."""

    # One lives as long as its stream (ten thousand at once): a fixed set of
    # slots, no instance dict.
    __slots__ = ("_call", "_events", "_pump", "_sent", "_stream_type")

    def __init__(self, call: AnsweringCall) -> None:
        # (None once the stream is over: see _let_go.)
        self._call: AnsweringCall | None = call
        self._pump: StreamPump | None = None
        self._sent = 0
        self._stream_type = b""
        # A bridged stream's Responses events (the pump's rewriter).
        self._events: BridgeEvents | None = None

    @property
    def bytes_sent(self) -> int:
        """How many bytes of the stream reached the client."""
        return self._pump.bytes_sent if self._pump is not None else self._sent

    def start(self, response: IResponse) -> None:
        """Pump C{response}'s body to the client, whose answer's status and
        headers are set."""
        call = self._call
        assert call is not None
        request, context = call.request, call.context
        content_type = response.headers.getRawHeaders(b"content-type")
        if call.bridge is not None:
            content_type = None  # the bridge's events, whatever the upstream's type said
        if not content_type:
            content_type = [DEFAULT_STREAM_TYPE]
            request.responseHeaders.setRawHeaders(b"content-type", content_type)
        self._stream_type = content_type[0].lower()
        _drop_request_body(request)
        _drop_upstream_head(response)
        log.info(
            "streaming_start",
            **about(call),
            status=response.code,
            duration_ms=elapsed_ms(call),
            headers=LoggedHeaders(request.responseHeaders, context.secret_headers),
            streaming=True,
        )
        on_chunk = self._log_chunk if context.config.log_stream_max_bytes > 0 else None
        usage = None
        rewriter: Rewriter | None = None
        label = call.route.label
        if call.bridge is not None:
            rewriter = self._events = call.bridge.events()  # (it reads the usage too)
        elif label in USAGE_ROUTES and self._stream_type.startswith(SSE_TYPE):
            usage = UsageReader(responses_api=label == "responses")
            if call.asks_usage:  # (the remover hands the reader the usage chunk's usage)
                rewriter = UsageChunkRemover(usage)
        self._pump = StreamPump(
            request, context.clock, call.upstream.config.request_timeout, on_chunk, self._ended,
            self._first_byte, usage, rewriter,
        )
        response.deliverBody(self._pump)

    def client_gone(self) -> None:
        """The client went away: stop the upstream's stream."""
        if self._pump is not None:
            self._pump.client_gone()
        self._let_go()

    def _let_go(self) -> None:
        """The stream is over: keep its byte count, and let go of the pump
        and of the call.  The call holds this answer, this answer the call
        and the pump, the pump this answer's methods: cycles that would
        keep the whole request (some 15 KB) until a full pass of the
        garbage collector, which comes rarely while thousands of streams
        are open (each is many objects for it to walk)."""
        if self._pump is not None:
            self._sent = self._pump.bytes_sent
        self._pump = self._events = self._call = None

    def _first_byte(self) -> None:
        call = self._call
        if call is not None:
            metrics = call.context.metrics
            metrics.child(metrics.first_byte, call.route.label).observe(
                monotonic() - call.started)

    def _log_chunk(self, data: bytes) -> None:
        call = self._call
        if call is None:
            return
        limit = call.context.config.log_stream_max_bytes
        log.info(
            "streaming_chunk",
            **call.tags,
            bytes=len(data),
            preview=data[:limit].decode("utf-8", "replace"),
        )

    def _ended(self, problem: UpstreamError | None) -> None:
        call = self._call
        if call is None:
            return
        try:
            self._end(call, problem)
        finally:
            self._let_go()

    def _end(self, call: AnsweringCall, problem: UpstreamError | None) -> None:
        call.ended = True
        request = call.request
        pump = self._pump
        sent = pump.bytes_sent if pump is not None else 0
        events = pump.events_sent if pump is not None else 0
        if self._events is not None:
            usage = self._events.usage
        else:
            usage = pump.usage.usage if pump is not None and pump.usage is not None else None
        counted: dict[str, Any] = {}
        if usage is not None:
            counted["usage"] = usage
            count_tokens(call, usage)
        # The upstream's own error event, which the bridge told its client.
        upstream_error = self._events.upstream_error if self._events is not None else None
        if upstream_error is not None:
            counted["upstream_error"] = upstream_error
        if problem is None:
            request.finish()
            emit = log.info if upstream_error is None else log.warn
            emit("streaming_end", **about(call), bytes=sent, events=events,
                 duration_ms=elapsed_ms(call), **counted)
            return
        call.context.metrics.failures.labels(problem.kind, call.upstream_name).inc()
        document = failure_document(call, problem)
        log.error("stream_broken", **about(call), bytes=sent, events=events,
                  duration_ms=elapsed_ms(call), **counted, **document)
        if self._events is not None:
            # The bridge's events always end whole: its last says failed.
            request.write(self._events.fail(document["error"]["message"]))
        elif self._stream_type.startswith(SSE_TYPE):
            # Finish any event the upstream left half-written, so that the
            # error event parses on its own.
            separator = b"" if pump is None or pump.at_event_boundary else b"\n\n"
            request.write(separator + _error_event(call.route, document))
        # End the connection without the final empty chunk: the client sees
        # an incomplete body, never a clean-looking end of stream.
        request.transport.loseConnection()

def _error_event(route: Route, document: dict[str, Any]) -> bytes:
    """The last event of a broken stream, in the form its API's clients
    (and the openai SDKs, which raise on an "error" object) understand."""
    if route.bridge == "messages":  # passed through: Anthropic's error event
        error = {"type": "error", "error": {"type": "api_error",
                                            "message": document["error"]["message"]}}
        return b"event: error\ndata: " + json_bytes(error) + b"\n\n"
    if not route.responses_events:
        return b"data: " + json_bytes(document) + b"\n\n"
    error = document["error"]
    event = {"type": "error", "code": error["type"], "message": error["message"],
             "param": None, **document}
    return b"event: error\ndata: " + json_bytes(event) + b"\n\n"
