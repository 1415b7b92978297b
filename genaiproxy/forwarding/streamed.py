"""The streamed half of a forwarded request's answer, and what every event
of the request says about it.

L{StreamedAnswer} is the part of L{genaiproxy.forwarding.call.ForwardCall} that pumps
a streamed answer to the client: it starts the L{StreamPump} (with a usage
reader, and the usage-chunk remover when the proxy asked for usage), counts
the time to the first byte, logs chunk previews, and ends the stream, or
marks it broken so that the client can tell.  It also holds the fields and
error documents every event of the request shares.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.web.iweb import IResponse

from genaiproxy.api import USAGE_ROUTES, Route, UsageChunkRemover, UsageReader, error_document, json_bytes
from genaiproxy.forwarding.pump import StreamPump
from genaiproxy.observe import LoggedHeaders
from genaiproxy.upstream import UpstreamError

if TYPE_CHECKING:
    from genaiproxy.forwarding.forwarder import Forwarder
    from genaiproxy.upstream import UpstreamClient

log = Logger(namespace="genaiproxy.forward")

SSE_TYPE = b"text/event-stream"
DEFAULT_STREAM_TYPE = b"text/event-stream; charset=utf-8"


class StreamedAnswer:
    """A mix-in of L{genaiproxy.forwarding.call.ForwardCall}: the streamed answer."""

    # Its own state; what it reads of the request's is in ForwardCall's slots.
    __slots__ = ("_ended", "_pump", "_stream_type", "_streaming")

    # Set by ForwardCall.
    _fw: Forwarder
    _request: Any
    _route: Route
    _route_label: str
    _id: str
    _tags: dict[str, str]
    _started: float
    _model: str | None
    _upstream: UpstreamClient
    _upstream_name: str
    _tried: list[str]
    _asks_usage: bool
    _ended: bool
    _streaming: bool
    _stream_type: bytes
    _pump: StreamPump | None

    def _start_stream(self, response: IResponse) -> None:
        request = self._request
        content_type = response.headers.getRawHeaders(b"content-type")
        if not content_type:
            content_type = [DEFAULT_STREAM_TYPE]
            request.responseHeaders.setRawHeaders(b"content-type", content_type)
        self._stream_type = content_type[0].lower()
        self._streaming = True
        self._fw.metrics.streams.inc()
        log.info(
            "streaming_start",
            **self._about(),
            status=response.code,
            duration_ms=self._elapsed_ms(),
            headers=LoggedHeaders(request.responseHeaders, self._fw.secret_headers),
            streaming=True,
        )
        limit = self._fw.config.log_stream_max_bytes
        on_chunk = self._log_chunk if limit > 0 else None
        usage = remover = None
        if self._route_label in USAGE_ROUTES and self._stream_type.startswith(SSE_TYPE):
            usage = UsageReader(responses_api=self._route_label == "responses")
            if self._asks_usage:
                remover = UsageChunkRemover()
        self._pump = StreamPump(
            request, self._fw.clock, self._upstream.config.request_timeout, on_chunk, self._stream_ended,
            self._first_byte, usage, remover,
        )
        response.deliverBody(self._pump)

    def _first_byte(self) -> None:
        self._fw.metrics.first_byte.labels(self._route_label).observe(monotonic() - self._started)

    def _log_chunk(self, data: bytes) -> None:
        limit = self._fw.config.log_stream_max_bytes
        log.info(
            "streaming_chunk",
            **self._tags,
            bytes=len(data),
            preview=data[:limit].decode("utf-8", "replace"),
        )

    def _stream_ended(self, problem: UpstreamError | None) -> None:
        self._ended = True
        request = self._request
        pump = self._pump
        sent = pump.bytes_sent if pump is not None else 0
        events = pump.events_sent if pump is not None else 0
        usage = pump.usage.usage if pump is not None and pump.usage is not None else None
        counted: dict[str, Any] = {}
        if usage is not None:
            counted["usage"] = usage
            self._fw.metrics.count_tokens(self._model, self._tags.get("client", ""), usage)
        if problem is None:
            request.finish()
            log.info("streaming_end", **self._about(), bytes=sent, events=events,
                     duration_ms=self._elapsed_ms(), **counted)
            return
        self._fw.metrics.failures.labels(problem.kind, self._upstream_name).inc()
        document = self._error_document(problem)
        log.error("stream_broken", **self._about(), bytes=sent, events=events,
                  duration_ms=self._elapsed_ms(), **counted, **document)
        if self._stream_type.startswith(SSE_TYPE):
            # Finish any event the upstream left half-written, so that the
            # error event parses on its own.
            separator = b"" if self._pump is None or self._pump.at_event_boundary else b"\n\n"
            request.write(separator + self._error_event(document))
        # End the connection without the final empty chunk: the client sees
        # an incomplete body, never a clean-looking end of stream.
        request.transport.loseConnection()

    def _error_event(self, document: dict[str, Any]) -> bytes:
        """The last event of a broken stream, in the form its API's clients
        (and the openai SDKs, which raise on an "error" object) understand."""
        if not self._route.responses_events:
            return b"data: " + json_bytes(document) + b"\n\n"
        error = document["error"]
        event = {"type": "error", "code": error["type"], "message": error["message"],
                 "param": None, **document}
        return b"event: error\ndata: " + json_bytes(event) + b"\n\n"

    def _error_document(self, problem: UpstreamError) -> dict[str, Any]:
        message = f"upstream request failed ({problem.kind}): {problem.message}"
        if self._tried:
            message += "; upstreams tried: " + ", ".join(
                [*self._tried, f"{self._upstream_name} ({problem.kind})"])
        return error_document(message, "proxy_error", request_id=self._id,
                              upstream=self._upstream.config.upstream_display)

    def _about(self) -> dict[str, Any]:
        """The fields that say which request an answer's events are about."""
        request = self._request
        about: dict[str, Any] = {**self._tags, "method": request.method.decode("latin-1"),
                                 "path": request.path.decode("latin-1"),
                                 "upstream_name": self._upstream_name}
        if self._model is not None:
            about["model"] = self._model
        return about

    def _elapsed_ms(self) -> float:
        return int((monotonic() - self._started) * 10000) / 10
