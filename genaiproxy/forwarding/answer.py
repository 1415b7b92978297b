"""The upstream's answer as the client gets it: its head, and its body when
passed back whole.

When the upstream answers, a L{genaiproxy.forwarding.call.ForwardCall}
reads the body whole first or leaves it to be pumped (L{read_answer}),
gives the client the status and the headers that are the client's to see
(L{return_head}), then either passes the body back whole (L{answer_whole})
or pumps it through as a stream
(L{genaiproxy.forwarding.streamed.StreamedAnswer}).  An answer of the
proxy's own, an error, is L{answer_error}'s.  All of them read the call
through L{AnsweringCall}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from genaiproxy.api import USAGE_ROUTES, error_document, json_object, set_json, usage_of
from genaiproxy.forwarding.bridge import MessagesBridge, ResponsesBridge
from genaiproxy.forwarding.pump import collect_body
from genaiproxy.forwarding.report import ReportingCall, about, count_tokens, elapsed_ms, tried_names
from genaiproxy.observe import CheckedJSON, LoggedHeaders, body_for_log
from genaiproxy.upstream import HOP_BY_HOP_HEADERS

__all__ = ["SSE_TYPE", "AnsweringCall", "answer_crash", "answer_error", "answer_whole",
           "read_answer", "return_head", "tell_tried"]

log = Logger(namespace="genaiproxy.forward")

# Upstream response headers the client does not get: per-hop ones, those the
# proxy sets itself, and CORS decisions that belong to this proxy alone.
_NOT_RETURNED = HOP_BY_HOP_HEADERS | {b"content-length", b"date", b"server", b"x-request-id"}

# Passthrough answers up to this size, when JSON, are read whole (and logged);
# anything else is pumped through as it arrives.
_BUFFERED_MAX = 1 << 20

# A stream of server-sent events, as its content type starts.
SSE_TYPE = b"text/event-stream"


class AnsweringCall(ReportingCall, Protocol):
    """What an answer reads of the call it belongs to (a
    L{genaiproxy.forwarding.call.ForwardCall}): what the call's reports
    read (L{genaiproxy.forwarding.report.ReportingCall}) and more, and the
    one thing it sets.

    @ivar ended: set once the answer is over, so that the connection closing
        afterwards does not count as the client going away.
    """

    asks_usage: bool
    bridge: ResponsesBridge | MessagesBridge | None
    ended: bool

    @property
    def gone(self) -> bool:
        """Whether the client went away before its answer was over."""


def read_answer(call: AnsweringCall, response: IResponse, wants_stream: bool) -> Any:
    """Fire with C{(response, body)}, or C{(response, None)} for an answer
    to pump through as it comes (C{wants_stream}: the client asked for a
    stream)."""
    if response.code < 400 and _pumped(call, response, wants_stream):
        return (response, None)
    # Error answers (even to streaming requests) are passed whole, so
    # that SDKs raise the matching error class; reading the whole body
    # before answering also keeps a failure in it retryable.
    d = collect_body(response, call.context.clock, call.upstream.config.request_timeout)
    return d.addCallback(lambda body: (response, body))


def _pumped(call: AnsweringCall, response: IResponse, wants_stream: bool) -> bool:
    if wants_stream:
        return True
    content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0].lower()
    if content_type.startswith(SSE_TYPE):
        return True
    if not call.route.passthrough:
        return False
    # Twisted's client keeps Content-Length out of the headers and gives
    # it as the length (unknown for chunked and decoded gzip answers).
    length = response.length
    small = isinstance(length, int) and length <= _BUFFERED_MAX
    return not (small and b"json" in content_type)


def _is_returned(lower: bytes) -> bool:
    return lower not in _NOT_RETURNED and not lower.startswith(b"access-control-")


def tell_tried(headers: Headers, tried: Sequence[str]) -> None:
    """Name the upstreams a request went to, when it went to more than one."""
    if tried:
        headers.setRawHeaders(b"X-Upstreams-Tried", [", ".join(tried).encode("latin-1")])


def return_head(request: Any, response: IResponse, tried: Sequence[str],
                limited: bool) -> None:
    """Give the client the upstream's status and the headers that are its to
    see, and say which upstream answered it how (C{tried}: the upstreams
    tried, the one that answered last, when there were several).
    C{limited}: the client's own limits' C{x-ratelimit-*} headers are set,
    and the shared key's are not its to see."""
    request.setResponseCode(response.code, response.phrase)
    out = request.responseHeaders
    for name, values in response.headers.getAllRawHeaders():
        lower = name.lower()
        if not _is_returned(lower) or (limited and lower.startswith(b"x-ratelimit-")):
            continue
        if lower == b"vary" and out.hasHeader(b"vary"):
            values = out.getRawHeaders(b"vary", []) + values  # keep our "Vary: Origin"
        out.setRawHeaders(name, values)
    upstream_id = response.headers.getRawHeaders(b"x-request-id")
    if upstream_id:
        out.setRawHeaders(b"X-Upstream-Request-ID", upstream_id)
    tell_tried(out, tried)
    out.setRawHeaders(b"X-Upstream-Status", [b"%d" % response.code])


def answer_whole(call: AnsweringCall, response: IResponse, body: bytes) -> None:
    """Pass C{body} (read whole) back to the client, then log the answer
    with the usage it reports."""
    request = call.request
    if request.method == b"HEAD":
        # No body, but the length the upstream announced for a GET.
        length = response.headers.getRawHeaders(b"content-length")
        if length:
            request.responseHeaders.setRawHeaders(b"content-length", length[-1:])
    elif response.code not in NO_BODY_CODES:
        request.setHeader(b"content-length", b"%d" % len(body))
    duration_ms = elapsed_ms(call)
    call.ended = True
    request.write(body)
    request.finish()
    # Logged after the answer went out, so that it does not wait for this.
    fields: dict[str, Any] = {
        **about(call),
        "status": response.code,
        "duration_ms": duration_ms,
        "headers": LoggedHeaders(request.responseHeaders, call.context.secret_headers),
    }
    document = None  # parsed once, for the usage and the log
    if response.code < 400 and call.route.label in USAGE_ROUTES:
        document = json_object(body)
        usage = usage_of(document)
        if usage is not None:
            fields["usage"] = usage
            count_tokens(call, usage)
    if call.context.config.log_bodies:
        content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        logged = body_for_log(body, content_type.decode("latin-1"))
        if document is not None and "body" in logged:  # parsed already: valid JSON
            logged["body"] = CheckedJSON(body)
        fields.update(logged)
    log.info("response", **fields)


def answer_error(call: AnsweringCall, status: int, document: dict[str, Any]) -> None:
    """Answer the client with the proxy's own error C{document}."""
    request = call.request
    body = set_json(request, document, status)
    tell_tried(request.responseHeaders, tried_names(call))
    call.ended = True
    request.write(body)
    request.finish()


def answer_crash(call: AnsweringCall, failure: Failure) -> None:
    """A bug of ours while answering: log it with its traceback, and answer
    500 if nothing was written yet (else cut the connection, visibly,
    rather than leave the client waiting)."""
    request_id = call.tags["id"]
    log.failure("unexpected error while forwarding", failure, id=request_id,
                client=call.tags.get("client"))
    if call.gone or call.ended:
        return
    if call.request.startedWriting:
        call.ended = True
        call.request.transport.abortConnection()
        return
    document = error_document("internal proxy error", "proxy_error", request_id=request_id)
    try:
        answer_error(call, 500, document)
    except Exception:  # not even that: cut the connection rather than hang
        log.failure("cannot answer 500", id=request_id)
        call.ended = True
        call.request.transport.abortConnection()
