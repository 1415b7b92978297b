"""Forwarding one client request to the upstream and its answer back.

A L{Forwarder} holds what all requests share (upstream client, logger,
settings); a L{ForwardCall} is the life of one request: prepare the body,
call the upstream with retries, then either pass a whole answer back or pump
a stream.  The client going away at any point cancels the upstream call.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Optional

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.server import NOT_DONE_YET

from .config import strip_userinfo
from .errors import error_document, json_bytes, set_json
from .logs import LoggedHeaders, body_for_log, secret_header_names
from .normalize import PreparedBody, prepare_body
from .streaming import StreamPump, collect_body
from .client import UpstreamResponse
from .upstream import HOP_BY_HOP_HEADERS, connection_tokens, UpstreamClient, UpstreamError, classify

log = Logger(namespace="genaiproxy.forward")

SSE_TYPE = b"text/event-stream"
DEFAULT_STREAM_TYPE = b"text/event-stream; charset=utf-8"

# Upstream response headers the client does not get: per-hop ones, those the
# proxy sets itself, and CORS decisions that belong to this proxy alone.
_NOT_RETURNED = HOP_BY_HOP_HEADERS | {b"content-length", b"date", b"server", b"x-request-id"}


def _is_returned(lower: bytes) -> bool:
    return lower not in _NOT_RETURNED and not lower.startswith(b"access-control-")



class Forwarder:
    """What every forwarded request shares."""

    def __init__(self, upstream: UpstreamClient) -> None:
        self.upstream = upstream
        self.config = upstream.config
        self.clock = upstream.clock
        self.secret_headers = secret_header_names([self.config.subscription_name])

    def forward(self, request: Any, path: str, token_field: Optional[str] = None,
                bare: bool = False) -> object:
        """Send C{request} to the upstream C{path}; answer it asynchronously.

        C{token_field} names the token-limit field of the API at C{path}; when
        given, JSON bodies for gpt-5 models are normalised.  A C{bare} request
        goes without the client's query string and body (for the open health
        paths, which anyone may call).
        """
        ForwardCall(self, request, path, token_field, bare).start()
        return NOT_DONE_YET


class ForwardCall:
    """One client request on its way to the upstream and back."""

    def __init__(self, forwarder: Forwarder, request: Any, path: str, token_field: Optional[str],
                 bare: bool = False) -> None:
        self._fw = forwarder
        self._bare = bare
        self._request = request
        self._path = path
        self._token_field = token_field
        self._id: str = request.request_id
        self._started = monotonic()
        self._call: Any = None
        self._pump: Optional[StreamPump] = None
        self._gone = False
        self._ended = False
        self._stream_type = b""

    # Outbound.

    def start(self) -> None:
        request = self._request
        upstream = self._fw.upstream
        raw = b""
        if request.content is not None and not self._bare:
            raw = request.content.read()
        if self._token_field is not None and raw:
            prepared = prepare_body(raw, self._token_field)
        else:
            prepared = PreparedBody(raw, None, stream=False, gpt5=False)
        query = b"" if self._bare else request.uri.partition(b"?")[2]
        target = upstream.target_for(self._path, query)
        headers = upstream.headers_for(request.requestHeaders, self._id)
        if prepared.gpt5 and prepared.stream:
            headers.setRawHeaders(b"accept", [SSE_TYPE])
        self._log_request(prepared, query)

        read = self._read_streaming if prepared.stream else self._read_whole
        request.notifyFinish().addErrback(self._client_gone)
        self._call = upstream.call(
            request.method, target, headers, prepared.body, self._on_retry, read=read
        )
        self._call.addCallbacks(self._respond, self._failed)
        self._call.addErrback(self._crashed)

    def _read_whole(self, response: UpstreamResponse) -> Any:
        config = self._fw.config
        d = collect_body(response, self._fw.clock, config.request_timeout)
        return d.addCallback(lambda body: (response, body))

    def _read_streaming(self, response: UpstreamResponse) -> Any:
        # An error answer to a streaming request is a JSON document: pass it
        # whole so that SDKs can raise the matching error class.
        if response.code >= 400:
            return self._read_whole(response)
        return (response, None)

    def _on_retry(self, retry: int, delay: float, problem: UpstreamError) -> None:
        log.warn(
            "retry",
            id=self._id,
            retry=retry,
            backoff_sec=delay,
            error={"type": problem.kind, "message": problem.message},
        )

    # Inbound.

    def _respond(self, result: tuple[UpstreamResponse, Optional[bytes]]) -> None:
        response, body = result
        self._call = None
        request = self._request
        if self._gone:
            return
        request.setResponseCode(response.code, response.phrase)
        out = request.responseHeaders
        named_hops = connection_tokens(response.headers.getRawHeaders(b"connection"))
        for name, values in response.headers.getAllRawHeaders():
            lower = name.lower()
            if not _is_returned(lower) or lower in named_hops:
                continue
            if lower == b"vary" and out.hasHeader(b"vary"):
                values = out.getRawHeaders(b"vary", []) + values  # keep our "Vary: Origin"
            out.setRawHeaders(name, values)
        upstream_id = response.headers.getRawHeaders(b"x-request-id")
        if upstream_id:
            out.setRawHeaders(b"X-Upstream-Request-ID", upstream_id)
        out.setRawHeaders(b"X-Upstream-Status", [b"%d" % response.code])
        if body is None:
            self._start_stream(response)
        else:
            self._answer_whole(response, body)

    def _answer_whole(self, response: UpstreamResponse, body: bytes) -> None:
        request = self._request
        if request.method == b"HEAD":
            # No body, but the length the upstream announced for a GET.
            length = response.headers.getRawHeaders(b"content-length")
            if length:
                request.responseHeaders.setRawHeaders(b"content-length", length[-1:])
        elif response.code not in NO_BODY_CODES:
            request.setHeader(b"content-length", b"%d" % len(body))
        fields: dict[str, Any] = {
            "id": self._id,
            "status": response.code,
            "duration_ms": self._elapsed_ms(),
            "headers": LoggedHeaders(request.responseHeaders, self._fw.secret_headers),
        }
        if self._fw.config.log_bodies:
            content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
            fields.update(body_for_log(body, content_type.decode("latin-1")))
        log.info("response", **fields)
        self._ended = True
        request.write(body)
        request.finish()

    def _start_stream(self, response: UpstreamResponse) -> None:
        request = self._request
        content_type = response.headers.getRawHeaders(b"content-type")
        if not content_type:
            content_type = [DEFAULT_STREAM_TYPE]
            request.responseHeaders.setRawHeaders(b"content-type", content_type)
        self._stream_type = content_type[0].lower()
        log.info(
            "streaming_start",
            id=self._id,
            status=response.code,
            duration_ms=self._elapsed_ms(),
            headers=LoggedHeaders(request.responseHeaders, self._fw.secret_headers),
            streaming=True,
        )
        limit = self._fw.config.log_stream_max_bytes
        on_chunk = self._log_chunk if limit > 0 else None
        self._pump = StreamPump(
            request, self._fw.clock, self._fw.config.request_timeout, on_chunk, self._stream_ended
        )
        response.deliverBody(self._pump)

    def _log_chunk(self, data: bytes) -> None:
        limit = self._fw.config.log_stream_max_bytes
        log.info(
            "streaming_chunk",
            id=self._id,
            bytes=len(data),
            preview=data[:limit].decode("utf-8", "replace"),
        )

    def _stream_ended(self, problem: Optional[UpstreamError]) -> None:
        self._ended = True
        request = self._request
        sent = self._pump.bytes_sent if self._pump is not None else 0
        if problem is None:
            log.info("streaming_end", id=self._id, bytes=sent, duration_ms=self._elapsed_ms())
            request.finish()
            return
        document = self._error_document(problem)
        log.error("stream_broken", id=self._id, bytes=sent, duration_ms=self._elapsed_ms(), **document)
        if self._stream_type.startswith(SSE_TYPE):
            # Finish any event the upstream left half-written, so that the
            # error event parses on its own.
            separator = b"" if self._pump is None or self._pump.at_event_boundary else b"\n\n"
            request.write(separator + b"data: " + json_bytes(document) + b"\n\n")
        # End the connection without the final empty chunk: the client sees
        # an incomplete body, never a clean-looking end of stream.
        request.transport.loseConnection()

    def _failed(self, failure: Failure) -> None:
        self._call = None
        if self._gone:
            return
        problem = failure.value if failure.check(UpstreamError) else classify(failure)
        document = self._error_document(problem)
        log.error("final_error", id=self._id, duration_ms=self._elapsed_ms(), **document)
        self._answer_error(502, document)

    def _crashed(self, failure: Failure) -> None:
        """A bug of ours: log it with its traceback and answer 500 if still possible."""
        log.failure("unexpected error while forwarding", failure, id=self._id)
        if self._gone or self._ended:
            return
        if self._request.startedWriting:
            # Part of the answer is out: cut it, visibly, rather than leave
            # the client waiting.
            self._ended = True
            self._request.transport.abortConnection()
            return
        document = error_document("internal proxy error", "proxy_error", request_id=self._id)
        self._answer_error(500, document)

    def _answer_error(self, status: int, document: dict[str, Any]) -> None:
        request = self._request
        body = set_json(request, document, status)
        self._ended = True
        request.write(body)
        request.finish()

    def _error_document(self, problem: UpstreamError) -> dict[str, Any]:
        return error_document(
            f"upstream request failed ({problem.kind}): {problem.message}",
            "proxy_error",
            request_id=self._id,
            upstream=self._fw.config.upstream_display,
        )

    # The client.

    def _client_gone(self, reason: Failure) -> None:
        if self._ended:
            return
        self._gone = True
        log.info("client_disconnected", id=self._id, duration_ms=self._elapsed_ms())
        if self._call is not None:
            self._call.cancel()
        if self._pump is not None:
            self._pump.client_gone()

    # Logging helpers.

    def _log_request(self, prepared: PreparedBody, query: bytes) -> None:
        request = self._request
        fields: dict[str, Any] = {
            "id": self._id,
            "method": request.method.decode("latin-1"),
            "path": request.path.decode("latin-1"),
            "upstream": strip_userinfo(self._fw.upstream.url_for(self._path, query).decode("ascii")),
            "headers": LoggedHeaders(request.requestHeaders, self._fw.secret_headers),
        }
        if self._fw.config.log_bodies and prepared.body:
            if prepared.payload is not None:
                fields["body"] = prepared.payload
            else:
                content_type = request.getHeader(b"content-type") or b""
                fields.update(body_for_log(prepared.body, content_type.decode("latin-1")))
        log.info("request", **fields)

    def _elapsed_ms(self) -> float:
        return int((monotonic() - self._started) * 10000) / 10
