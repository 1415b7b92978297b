"""One client request on its way to the upstream and back.

A L{ForwardCall} is the life of one request: prepare the body, call the
upstream with retries, then either pass a whole answer back or pump a
stream.  The client going away at any point cancels the upstream call.  What
all requests share (the upstream client, the in-flight set, the metrics) is
the L{genaiproxy.forwarding.forwarder.Forwarder} that starts it.
"""

from __future__ import annotations

from io import BytesIO
from time import monotonic
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from genaiproxy.api import (
    NO_BODY,
    USAGE_ROUTES,
    PreparedBody,
    Route,
    error_document,
    json_object,
    prepare_body,
    set_json,
    usage_of,
    with_api_version,
)
from genaiproxy.config import DEFAULT_UPSTREAM, ModelRoute
from genaiproxy.forwarding.pump import StreamPump, collect_body
from genaiproxy.forwarding.streamed import SSE_TYPE, StreamedAnswer
from genaiproxy.observe import LoggedHeaders, body_for_log, route_of
from genaiproxy.upstream import HOP_BY_HOP_HEADERS, RequestBody, UpstreamError, body_length, classify

if TYPE_CHECKING:
    from genaiproxy.forwarding.forwarder import Forwarder

log = Logger(namespace="genaiproxy.forward")

__all__ = ["ForwardCall", "Route", "with_api_version"]

# Passthrough answers up to this size, when JSON, are read whole (and logged);
# anything else is pumped through as it arrives.
_BUFFERED_MAX = 1 << 20

# Upstream response headers the client does not get: per-hop ones, those the
# proxy sets itself, and CORS decisions that belong to this proxy alone.
_NOT_RETURNED = HOP_BY_HOP_HEADERS | {b"content-length", b"date", b"server", b"x-request-id"}


def _is_returned(lower: bytes) -> bool:
    return lower not in _NOT_RETURNED and not lower.startswith(b"access-control-")


class ForwardCall(StreamedAnswer):
    """One client request on its way to the upstream and back (the streamed
    answer's part is L{StreamedAnswer})."""

    # One lives as long as its request (ten thousand at once, for open
    # streams): a fixed set of slots, no instance dict.
    __slots__ = (
        "_asks_usage", "_call", "_fw", "_gone", "_hop", "_hops", "_id", "_model", "_path",
        "_request", "_route", "_route_label", "_sent", "_sent_model", "_started", "_tags",
        "_tried", "_upstream", "_upstream_name", "_wants_stream",
    )

    def __init__(self, forwarder: Forwarder, request: Any, path: str, route: Route) -> None:
        self._fw = forwarder
        self._route = route
        self._request = request
        self._path = path
        self._wants_stream = False
        self._id: str = request.request_id
        # Every event of this request names it, and the client whose token it carried.
        client = getattr(request, "client_name", "")
        self._tags = {"id": self._id, "client": client} if client else {"id": self._id}
        self._started = monotonic()
        self._route_label = route_of(path)
        self._streaming = False
        self._call: Any = None
        self._pump: StreamPump | None = None
        self._gone = False
        self._ended = False
        self._stream_type = b""
        self._model: str | None = None
        # Set while the proxy asked for usage on the client's behalf: the
        # body the client sent, for an upstream that refuses the question.
        # Whether the request in flight asks for usage on the client's
        # behalf (STREAM_USAGE), and under which model name it was sent.
        self._asks_usage = False
        self._sent_model: str | None = None
        self._sent: tuple[bytes, Headers] = (b"", Headers())
        # The routes this request may try (its model's, then its fallbacks),
        # the one in use, and what became of those tried before it.
        self._hops: list[ModelRoute] = []
        self._hop = 0
        self._upstream_name = DEFAULT_UPSTREAM
        self._upstream = forwarder.upstream
        self._tried: list[str] = []

    # Outbound.

    def _prepare(self, model: str | None = None) -> tuple[PreparedBody, RequestBody]:
        """The body to send: parsed (and normalised) for the JSON APIs, left in
        its spool file when a passthrough upload is large (unless it is
        routed by its model).  C{model}: the name to send instead."""
        content, route = self._request.content, self._route
        if content is None or route.bare:
            return NO_BODY, b""
        content.seek(0)
        if route.passthrough and not route.by_model and not isinstance(content, BytesIO):
            return NO_BODY, content
        raw = content.read()
        prepared = prepare_body(raw, route.token_field,
                                route.asks_usage and self._fw.config.stream_usage, model)
        self._asks_usage, self._sent_model = prepared.usage_added, model
        return prepared, prepared.body

    def start(self) -> None:
        request = self._request
        # One notification serves both: the client leaving cancels the
        # upstream call, and any end takes the request off the in-flight set.
        ended = request.notifyFinish().addErrback(self._client_gone)
        ended.addBoth(self._count)
        ended.addBoth(self._fw.finished, request)
        prepared, body = self._prepare()
        self._wants_stream = prepared.stream
        payload = prepared.payload
        if isinstance(payload, dict) and isinstance(payload.get("model"), str):
            self._model = payload["model"]
        if self._route.by_model:
            self._hops = self._fw.routing.hops(self._model)
            first = self._hops[0]
            if first.upstream_model is not None and first.upstream_model != self._model:
                prepared, body = self._prepare(first.upstream_model)
        call, query, headers = self._go(prepared, body)
        # Logged once the request is on its way upstream (its bytes are
        # written at once on a pooled connection), before any answer is
        # handled: the event's cost stays off the request's latency path.
        self._log_request(prepared, body, query, headers)
        # (The call may have ended already, and _respond cleared self._call.)
        self._handle(call)

    def _go(self, prepared: PreparedBody, body: RequestBody) -> tuple[Any, bytes, Headers]:
        """Send the request to the upstream of the route in use."""
        if self._hops:
            self._upstream_name = self._hops[self._hop].upstream
            self._upstream = self._fw.upstreams.client(self._upstream_name)
        upstream, request = self._upstream, self._request
        query = b"" if self._route.bare else request.uri.partition(b"?")[2]
        query = with_api_version(query, upstream.config.api_version)
        url = upstream.request_url(self._path, query)
        headers = upstream.headers_for(request.requestHeaders, self._id)
        if prepared.gpt5 and prepared.stream:
            headers.setRawHeaders(b"accept", [SSE_TYPE])
        self._sent = (url, headers)
        return self._send(body), query, headers

    def _send(self, body: RequestBody) -> Any:
        url, headers = self._sent
        self._call = self._upstream.call(
            self._request.method, url, headers, body, self._on_retry, read=self._read,
            on_wait=self._on_wait,
        )
        return self._call

    def _fall_back(self, reason: str) -> bool:
        """Send the request to the next route of its model's fallbacks, if
        one is left; True when it was sent."""
        # (An upstream a reload removed since the request began is passed over.)
        following = [index for index in range(self._hop + 1, len(self._hops))
                     if self._fw.upstreams.has(self._hops[index].upstream)]
        if not following or self._gone:
            return False
        # The hop's failure counts, though the client never sees it: a dead
        # region behind a working fallback shows on the dashboards.
        kind = reason.replace("status ", "status_")
        self._fw.metrics.failures.labels(kind, self._upstream_name).inc()
        self._tried.append(f"{self._upstream_name} ({reason})")
        self._hop = following[0]
        hop = self._hops[self._hop]
        prepared, body = self._prepare(hop.upstream_model or hop.id)
        call, query, _ = self._go(prepared, body)
        log.warn("fallback", **self._tags, model=hop.id, reason=reason,
                 upstream_name=self._upstream_name, upstream=self._upstream.url_for(self._path, query),
                 tried=list(self._tried))
        self._handle(call)
        return True

    def _handle(self, call: Any) -> None:
        call.addCallbacks(self._respond, self._failed)
        call.addErrback(self._crashed)

    def _read(self, response: IResponse) -> Any:
        """Fire with C{(response, body)}, or C{(response, None)} for an answer
        to pump through as it comes."""
        if response.code < 400 and self._pumped(response):
            return (response, None)
        # Error answers (even to streaming requests) are passed whole, so
        # that SDKs raise the matching error class; reading the whole body
        # before answering also keeps a failure in it retryable.
        d = collect_body(response, self._fw.clock, self._upstream.config.request_timeout)
        return d.addCallback(lambda body: (response, body))

    def _pumped(self, response: IResponse) -> bool:
        if self._wants_stream:
            return True
        content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0].lower()
        if content_type.startswith(SSE_TYPE):
            return True
        if not self._route.passthrough:
            return False
        # Twisted's client keeps Content-Length out of the headers and gives
        # it as the length (unknown for chunked and decoded gzip answers).
        length = response.length
        small = isinstance(length, int) and length <= _BUFFERED_MAX
        return not (small and b"json" in content_type)

    def _on_retry(self, retry: int, delay: float, problem: UpstreamError) -> None:
        self._fw.metrics.retries.labels(problem.kind).inc()
        log.warn(
            "retry",
            **self._tags,
            retry=retry,
            backoff_sec=delay,
            error={"type": problem.kind, "message": problem.message},
        )

    def _on_wait(self, retry: int, wait: float, answer: tuple[IResponse, bytes | None]) -> None:
        self._fw.metrics.rate_limit_waits.inc()
        log.warn("rate_limit_wait", **self._tags, retry=retry, wait_sec=round(wait, 3),
                 status=answer[0].code)

    # Inbound.

    def _respond(self, result: tuple[IResponse, bytes | None]) -> None:
        response, body = result
        self._call = None
        request = self._request
        if self._gone:
            return
        if self._refused_usage(response, body):
            return
        if body is not None and (response.code >= 500 or response.code == 429) and (
                self._fall_back(f"status {response.code}")):
            return
        self._fw.metrics.upstream_headers.labels(self._route_label).observe(
            monotonic() - self._started)
        request.setResponseCode(response.code, response.phrase)
        out = request.responseHeaders
        for name, values in response.headers.getAllRawHeaders():
            lower = name.lower()
            if not _is_returned(lower):
                continue
            if lower == b"vary" and out.hasHeader(b"vary"):
                values = out.getRawHeaders(b"vary", []) + values  # keep our "Vary: Origin"
            out.setRawHeaders(name, values)
        upstream_id = response.headers.getRawHeaders(b"x-request-id")
        if upstream_id:
            out.setRawHeaders(b"X-Upstream-Request-ID", upstream_id)
        if self._tried:
            out.setRawHeaders(b"X-Upstreams-Tried", [", ".join(
                [*self._tried, self._upstream_name]).encode("latin-1")])
        out.setRawHeaders(b"X-Upstream-Status", [b"%d" % response.code])
        if body is None:
            self._start_stream(response)
        else:
            self._answer_whole(response, body)

    def _refused_usage(self, response: IResponse, body: bytes | None) -> bool:
        """An upstream that rejects C{stream_options} (an older API version)
        gets the request again as the client sent it; True when it was sent."""
        if not self._asks_usage or response.code != 400 or not body or (
                b"stream_options" not in body):
            return False
        # The same body (the name sent upstream, its gpt-5 rules), only
        # without the question: made now, from the client's, not kept for
        # every request in case.
        self._asks_usage = False
        content = self._request.content
        content.seek(0)
        plain = prepare_body(content.read(), self._route.token_field, False, self._sent_model)
        log.warn("stream_usage_refused", **self._tags, status=response.code)
        self._handle(self._send(plain.body))
        return True

    def _answer_whole(self, response: IResponse, body: bytes) -> None:
        request = self._request
        if request.method == b"HEAD":
            # No body, but the length the upstream announced for a GET.
            length = response.headers.getRawHeaders(b"content-length")
            if length:
                request.responseHeaders.setRawHeaders(b"content-length", length[-1:])
        elif response.code not in NO_BODY_CODES:
            request.setHeader(b"content-length", b"%d" % len(body))
        duration_ms = self._elapsed_ms()
        self._ended = True
        request.write(body)
        request.finish()
        # Logged after the answer went out, so that it does not wait for this.
        fields: dict[str, Any] = {
            **self._about(),
            "status": response.code,
            "duration_ms": duration_ms,
            "headers": LoggedHeaders(request.responseHeaders, self._fw.secret_headers),
        }
        document = None  # parsed once, for the usage and the log
        if response.code < 400 and self._route_label in USAGE_ROUTES:
            document = json_object(body)
            usage = usage_of(document)
            if usage is not None:
                fields["usage"] = usage
                self._fw.metrics.count_tokens(self._model, self._tags.get("client", ""), usage)
        if self._fw.config.log_bodies:
            content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
            logged = body_for_log(body, content_type.decode("latin-1"))
            if document is not None and "body" in logged:  # logged as JSON: already parsed
                logged["body"] = document
            fields.update(logged)
        log.info("response", **fields)

    def _failed(self, failure: Failure) -> None:
        self._call = None
        if self._gone:
            return
        problem = classify(failure)  # an UpstreamError passes through as it is
        if problem.retryable and self._fall_back(problem.kind):
            return
        self._fw.metrics.failures.labels(problem.kind, self._upstream_name).inc()
        document = self._error_document(problem)
        log.error("final_error", **self._tags, upstream_name=self._upstream_name,
                  duration_ms=self._elapsed_ms(), **document)
        self._answer_error(502, document)

    def _crashed(self, failure: Failure) -> None:
        """A bug of ours: log it with its traceback and answer 500 if still possible."""
        log.failure("unexpected error while forwarding", failure, id=self._id,
                    client=self._tags.get("client"))
        if self._gone or self._ended:
            return
        if self._request.startedWriting:
            # Part of the answer is out: cut it, visibly, rather than leave
            # the client waiting.
            self._ended = True
            self._request.transport.abortConnection()
            return
        document = error_document("internal proxy error", "proxy_error", request_id=self._id)
        try:
            self._answer_error(500, document)
        except Exception:  # not even that: cut the connection rather than hang
            log.failure("cannot answer 500", id=self._id)
            self._ended = True
            self._request.transport.abortConnection()

    def _answer_error(self, status: int, document: dict[str, Any]) -> None:
        request = self._request
        body = set_json(request, document, status)
        if self._tried:
            request.responseHeaders.setRawHeaders(b"X-Upstreams-Tried", [", ".join(
                [*self._tried, self._upstream_name]).encode("latin-1")])
        self._ended = True
        request.write(body)
        request.finish()

    def _count(self, result: object) -> object:
        """The request's end, in the metrics: its status (499: the client
        left first), how long it took, and what its stream carried."""
        metrics = self._fw.metrics
        status = 499 if self._gone else self._request.code
        model, client = metrics.model_label(self._model), self._tags.get("client", "")
        metrics.requests.labels(self._route_label, model, str(status), client,
                                self._upstream_name).inc()
        metrics.duration.labels(self._route_label, model, client).observe(
            monotonic() - self._started)
        if self._streaming:
            metrics.streams.dec()
            if self._pump is not None:
                metrics.streamed_bytes.inc(self._pump.bytes_sent)
        return result

    # The client.

    def _client_gone(self, reason: Failure) -> None:
        if self._ended:
            return
        self._gone = True
        log.info("client_disconnected", **self._tags, duration_ms=self._elapsed_ms())
        if self._call is not None:
            self._call.cancel()
        if self._pump is not None:
            self._pump.client_gone()

    # Logging helpers.

    def _log_request(self, prepared: PreparedBody, body: RequestBody, query: bytes,
                     sent: Headers) -> None:
        request = self._request
        fields: dict[str, Any] = {
            **self._tags,
            "method": request.method.decode("latin-1"),
            "path": request.path.decode("latin-1"),
            "upstream": self._upstream.url_for(self._path, query),
            "upstream_name": self._upstream_name,
            **({"model": self._model} if self._model is not None else {}),
            "headers": LoggedHeaders(request.requestHeaders, self._fw.secret_headers),
            # What left the proxy, after rewriting (secret values masked).
            "upstream_headers": LoggedHeaders(sent, self._fw.secret_headers),
        }
        if self._fw.config.log_bodies and body:
            content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
            if prepared.payload is not None:
                fields["body"] = prepared.payload
            elif isinstance(body, bytes):
                fields.update(body_for_log(body, content_type))
            else:
                fields.update(body_length=body_length(body), content_type=content_type)
        log.info("request", **fields)
