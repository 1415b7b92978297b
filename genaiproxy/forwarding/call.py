"""One client request on its way to the upstream and back.

A L{ForwardCall} is the life of one request: prepare the body, call the
upstream with retries (and its model's fallbacks), then either pass a whole
answer back (L{genaiproxy.forwarding.answer}) or pump a stream (a
L{StreamedAnswer} the call holds).  The client going away at any point
cancels the upstream call.  What all requests share (the upstream clients,
the routing, the metrics, the in-flight set) the call sees through its
L{CallContext}.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from io import BytesIO
from time import monotonic
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from genaiproxy.api import (
    NO_BODY,
    PreparedBody,
    Route,
    UnwritableBody,
    error_document,
    fields_copy,
    parse_json,
    prepare_body,
    with_api_version,
)
from genaiproxy.config import DEFAULT_UPSTREAM, ModelRoute
from genaiproxy.forwarding.answer import (
    SSE_TYPE,
    answer_crash,
    answer_error,
    answer_whole,
    read_answer,
    return_head,
)
from genaiproxy.forwarding.bridge import (
    BRIDGES,
    CHAT_PATH,
    BridgeRequestError,
    MessagesBridge,
    ResponsesBridge,
)
from genaiproxy.forwarding.context import CallContext
from genaiproxy.forwarding.limiting import ask_limits, give_back, limited
from genaiproxy.forwarding.report import (
    count_request,
    elapsed_ms,
    failure_document,
    report_retry,
    report_wait,
    tried_names,
)
from genaiproxy.forwarding.request_event import log_request
from genaiproxy.forwarding.streamed import StreamedAnswer
from genaiproxy.limits import Admission
from genaiproxy.upstream import RequestBody, classify

log = Logger(namespace="genaiproxy.forward")

__all__ = ["ForwardCall"]

# What a call holds as sent once it can send nothing more.
_NOTHING_SENT: tuple[bytes, Headers] = (b"", Headers())

# Anthropic's headers, which a chat upstream does not know.
_ANTHROPIC_HEADERS = (b"anthropic-version", b"anthropic-beta")


class ForwardCall:
    """One client request on its way to the upstream and back.

    Its public attributes are what its answer and its reports read of it
    (L{genaiproxy.forwarding.answer.AnsweringCall}; the reports are
    L{genaiproxy.forwarding.report}'s).
    """

    # One lives as long as its request (ten thousand at once, for open
    # streams): a fixed set of slots, no instance dict.
    __slots__ = (
        "_call", "_gone", "_hop", "_hops", "_id", "_parsed", "_path", "_sent", "_sent_model",
        "_stream",
        "_wants_stream", "admission", "asks_usage", "bridge", "context", "ended", "model",
        "request", "route", "started", "tags", "tried", "upstream", "upstream_name",
    )

    def __init__(self, context: CallContext, request: Any, path: str, route: Route) -> None:
        self.context = context
        self.route = route
        self.request = request
        self._path = path
        self._wants_stream = False
        self._id: str = request.request_id
        # Every event of this request names it, and the client whose token it carried.
        client = getattr(request, "client_name", "")
        self.tags = {"id": self._id, "client": client} if client else {"id": self._id}
        self.started = monotonic()
        self._call: Any = None
        self._stream: StreamedAnswer | None = None  # when the answer is a stream
        self._gone = False
        self.ended = False  # the answer is over: a close is not the client leaving
        self.model: str | None = None
        # Whether it asks for usage for the client, and the model name sent.
        self.asks_usage = False
        self._sent_model: str | None = None
        self._sent: tuple[bytes, Headers] = _NOTHING_SENT
        self._parsed: tuple[Any] | None = None  # the client's body, parsed once (until sent)
        # The routes it may try (its model's, then its fallbacks), the one in
        # use, and those tried before it (tuples: most try one route).
        self._hops: Sequence[ModelRoute] = ()
        self._hop = 0
        self.upstream_name = DEFAULT_UPSTREAM
        self.upstream = context.upstream
        self.tried: tuple[str, ...] = ()
        # Set while the request in flight goes to the upstream's chat completions.
        self.bridge: ResponsesBridge | MessagesBridge | None = None
        # What the clients' limits said of it, once it was let through.
        self.admission: Admission | None = None

    # Outbound.

    def _prepare(self, model: str | None = None, usage: bool = True
                 ) -> tuple[PreparedBody, RequestBody]:
        """The body to send: normalised for the JSON APIs (C{model}: the name
        to send instead; the route's C{max_output_tokens} caps it; C{usage}:
        as STREAM_USAGE says), left in its spool file when a passthrough
        upload is large (unless it is routed by its model)."""
        content, route = self.request.content, self.route
        if content is None or route.bare:
            return NO_BODY, b""
        content.seek(0)
        if route.passthrough and not route.by_model and not isinstance(content, BytesIO):
            return NO_BODY, content
        raw = content.read()
        usage = usage and route.asks_usage and self.context.config.stream_usage
        prepared = prepare_body(raw, route.token_field, usage, model, self._cap,
                                self._client_json(raw))
        self.asks_usage, self._sent_model = prepared.usage_added, model
        return prepared, prepared.body

    def start(self) -> None:
        request = self.request
        # One notification serves both: the client leaving cancels the
        # upstream call, and any end takes the request off the in-flight set.
        ended = request.notifyFinish().addErrback(self._client_gone)
        ended.addBoth(self._count)
        ended.addBoth(self.context.finished, request)
        prepared, body = self._prepare()
        self._wants_stream = prepared.stream
        payload = prepared.payload
        if isinstance(payload, dict) and isinstance(payload.get("model"), str):
            self.model = payload["model"]
        if self.route.by_model:
            self._hops = self.context.hops(self.model)
            first = self._hops[0]
            if (first.upstream_model is not None and first.upstream_model != self.model) or (
                    first.max_output_tokens is not None):
                try:
                    prepared, body = self._prepare(first.upstream_model)
                except UnwritableBody as e:
                    self._refuse(e)
                    return
        if self.context.limits.active and not self.route.bare:  # (health probes: free)
            ask_limits(self, lambda: self._go_first(prepared, body), self._crashed)
        else:
            self._go_first(prepared, body)

    def _go_first(self, prepared: PreparedBody, body: RequestBody) -> None:
        """Send the request to its first upstream, and log it."""
        try:
            call, query, headers = self._go(prepared, body)
        except BridgeRequestError as e:
            self._refuse(e)
            return
        # Logged once the request is on its way (written at once on a pooled
        # connection): the event's cost stays off the request's latency path.
        log_request(self, self.upstream.url_for(self._upstream_path, query), prepared, body,
                    headers)
        # (The call may have ended already, and _respond cleared self._call.)
        self._handle(call)

    def _go(self, prepared: PreparedBody, body: RequestBody) -> tuple[Any, bytes, Headers]:
        """Send the request to the upstream of the route in use (a Responses
        request to its chat completions, when it does not serve them).

        @raise BridgeRequestError: a Responses request that cannot be bridged.
        """
        if self._hops:
            self.upstream_name = self._hops[self._hop].upstream
            self.upstream = self.context.upstreams.client(self.upstream_name)
        route, upstream, request = self.route, self.upstream, self.request
        if route.bridge and self.context.upstreams.bridges(route.bridge, self.upstream_name):
            body = self._bridged_body()
        else:
            self.bridge = None  # (a fallback to an upstream that serves the API itself)
        # A bridged request's query string (Claude Code's ?beta=true) is its API's.
        query = b"" if route.bare or self.bridge else request.uri.partition(b"?")[2]
        query = with_api_version(query, upstream.config.api_version)
        url = upstream.request_url(self._upstream_path, query)
        headers = upstream.headers_for(request.requestHeaders, self._id)
        if route.bridge == "messages":
            # The client's token (x-api-key) never goes upstream; Anthropic's
            # own headers only to an upstream that speaks the Messages API.
            for name in (b"x-api-key", *(_ANTHROPIC_HEADERS if self.bridge else ())):
                headers.removeHeader(name)
        if prepared.gpt5 and prepared.stream:
            headers.setRawHeaders(b"accept", [SSE_TYPE])
        self._sent = (url, headers)
        return self._send(body), query, headers

    @property
    def _cap(self) -> int | None:
        """The most output tokens the route in use may be asked for."""
        return self._hops[self._hop].max_output_tokens if self._hops else None

    @property
    def _upstream_path(self) -> str:
        return CHAT_PATH if self.bridge is not None else self._path

    def _bridged_body(self) -> bytes:
        """The chat body of the client's request in the route's bridged API
        (translated once, from the parse L{_prepare} made for this send)."""
        if self.bridge is None:
            assert self._parsed is not None  # (a bridged route's body is always parsed)
            self.bridge = BRIDGES[self.route.bridge].of(fields_copy(self._parsed[0]),
                                                        int(self.context.clock.seconds()))
        return self.bridge.chat_body(self._sent_model, self._cap)

    def _client_json(self, raw: bytes) -> Any:
        """The client's body C{raw} parsed once for a send (150-200 µs for
        64 KB), as a copy the rules and the bridges may rewrite."""
        if self._parsed is None:
            self._parsed = (parse_json(raw),)
        return fields_copy(self._parsed[0])

    def _send(self, body: RequestBody) -> Any:
        url, headers = self._sent
        self._parsed = None  # (3 to 11 times the body's size: a fallback parses again)
        self._call = self.upstream.call(
            self.request.method, url, headers, body, partial(report_retry, self), read=self._read,
            on_wait=partial(report_wait, self),
        )
        return self._call

    def _fall_back(self, reason: str) -> bool:
        """Send the request to the next route of its model's fallbacks, if
        one is left; True when it was sent."""
        # (An upstream a reload removed since the request began is passed over.)
        following = [index for index in range(self._hop + 1, len(self._hops))
                     if self.context.upstreams.has(self._hops[index].upstream)]
        if not following or self._gone:
            return False
        # The hop's failure counts: a dead region behind a fallback shows.
        kind = reason.replace("status ", "status_")
        self.context.metrics.failures.labels(kind, self.upstream_name).inc()
        self.tried = (*self.tried, f"{self.upstream_name} ({reason})")
        self._hop = following[0]
        hop = self._hops[self._hop]
        try:
            prepared, body = self._prepare(hop.upstream_model or hop.id)
            call, query, _ = self._go(prepared, body)
        except (BridgeRequestError, UnwritableBody) as e:
            self._refuse(e)
            return True
        log.warn("fallback", **self.tags, model=hop.id, reason=reason,
                 upstream_name=self.upstream_name,
                 upstream=self.upstream.url_for(self._upstream_path, query), tried=list(self.tried))
        self._handle(call)
        return True

    def _handle(self, call: Any) -> None:
        call.addCallbacks(self._respond, self._failed)
        call.addErrback(self._crashed)

    def _read(self, response: IResponse) -> Any:
        """The answer, read whole or left to be pumped (L{read_answer})."""
        return read_answer(self, response, self._wants_stream)

    # Inbound.

    def _respond(self, result: tuple[IResponse, bytes | None]) -> None:
        response, body = result
        self._call = None
        if self._gone:
            return
        if self._refused_usage(response, body) or self._refused_responses(response, body):
            return
        if body is not None and (response.code >= 500 or response.code == 429) and (
                self._fall_back(f"status {response.code}")):
            return
        metrics = self.context.metrics
        metrics.child(metrics.upstream_headers, self.route.label).observe(
            monotonic() - self.started)
        return_head(self.request, response, tried_names(self), limited(self))
        if body is None:
            # Nothing is sent again once a stream began: let go of its makings.
            self._sent = _NOTHING_SENT
            self._stream = StreamedAnswer(self)
            self.context.metrics.streams.inc()
            self._stream.start(response)
        else:
            if self.bridge is not None:
                body = (self.bridge.answer(body) if response.code < 300
                        else self.bridge.error(response.code, body))
            answer_whole(self, response, body)

    def _refused_responses(self, response: IResponse, body: bytes | None) -> bool:
        """An upstream (RESPONSES_API auto) that answers /responses with a
        404 or 405 gets the request again through its chat completions, as
        every later one; True when it was sent."""
        if self.route.bridge != "responses" or self.bridge is not None or body is None or (
                response.code not in (404, 405)) or self.upstream.config.responses_api != "auto":
            return False
        self.context.upstreams.found_chat_only(self.upstream_name)
        prepared, sent = self._prepare(self._sent_model)
        try:
            call, _, _ = self._go(prepared, sent)
        except BridgeRequestError as e:
            self._refuse(e)
            return True
        self._handle(call)
        return True

    def _refuse(self, problem: BridgeRequestError | UnwritableBody) -> None:
        """A request the bridge cannot send, or whose body cannot be written
        back for its route: 400, no upstream call."""
        reason = ("unwritable_body" if isinstance(problem, UnwritableBody)
                  else f"{self.route.bridge}_bridge")
        log.warn("request_refused", **self.tags, status=400, reason=reason,
                 method=self.request.method.decode("latin-1"), message=problem.message,
                 param=problem.param)
        answer_error(self, 400, error_document(problem.message, "invalid_request_error",
                                               param=problem.param, request_id=self._id))

    def _refused_usage(self, response: IResponse, body: bytes | None) -> bool:
        """An upstream that rejects C{stream_options} (an older API version)
        gets the request again as the client sent it; True when it was sent."""
        if not self.asks_usage or response.code != 400 or not body or (
                b"stream_options" not in body):
            return False
        # The same body (the name sent upstream, its gpt-5 rules), only
        # without the question.
        _, plain = self._prepare(self._sent_model, usage=False)
        log.warn("stream_usage_refused", **self.tags, status=response.code)
        self._handle(self._send(plain))
        return True

    def _failed(self, failure: Failure) -> None:
        self._call = None
        if self._gone:
            return
        problem = classify(failure)  # an UpstreamError passes through as it is
        if problem.retryable and self._fall_back(problem.kind):
            return
        self.context.metrics.failures.labels(problem.kind, self.upstream_name).inc()
        document = failure_document(self, problem)
        log.error("final_error", **self.tags, upstream_name=self.upstream_name,
                  duration_ms=elapsed_ms(self), **document)
        answer_error(self, 502, document)

    def _crashed(self, failure: Failure) -> None:
        """A bug of ours: logged with its traceback, a 500 if still possible."""
        answer_crash(self, failure)

    def _count(self, result: object) -> object:
        """The request's end, in the metrics (L{count_request}), and its
        concurrency slot given back."""
        give_back(self)
        stream = self._stream
        count_request(self, 499 if self._gone else self.request.code,
                      None if stream is None else stream.bytes_sent)
        return result

    # The client.

    @property
    def gone(self) -> bool:
        """Whether the client went away before its answer was over."""
        return self._gone

    def _client_gone(self, reason: Failure) -> None:
        if self.ended:
            return
        self._gone = True
        log.info("client_disconnected", **self.tags, duration_ms=elapsed_ms(self))
        if self._call is not None:
            self._call.cancel()
        if self._stream is not None:
            self._stream.client_gone()
