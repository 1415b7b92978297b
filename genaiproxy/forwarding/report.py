"""What a forwarded call reports of its request: the fields that say which
request an event is about, the error its client gets, its retries and
rate-limit waits, and its end and its tokens in the metrics.

Functions of the call (L{ReportingCall}, which
L{genaiproxy.forwarding.answer.AnsweringCall} extends), so that the call, one
per open request and ten thousand at once, holds nothing more for them.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Protocol

from twisted.logger import Logger
from twisted.web.iweb import IResponse

from genaiproxy.api import Route, error_document
from genaiproxy.forwarding.context import CallContext
from genaiproxy.upstream import UpstreamClient, UpstreamError

__all__ = [
    "ReportingCall",
    "about",
    "count_request",
    "count_tokens",
    "elapsed_ms",
    "failure_document",
    "report_retry",
    "report_wait",
    "tried_names",
]

log = Logger(namespace="genaiproxy.forward")


class ReportingCall(Protocol):
    """What the reports read of a call (a
    L{genaiproxy.forwarding.call.ForwardCall}).

    @ivar tags: the fields every event of the request carries (its id, and
        the client whose token it carried).
    @ivar model: the model the client asked for, if it named one.
    @ivar tried: the upstreams tried before the one in use, with what
        became of each.
    """

    context: CallContext
    request: Any
    route: Route
    tags: dict[str, str]
    started: float
    upstream: UpstreamClient
    upstream_name: str
    model: str | None
    tried: tuple[str, ...]


def about(call: ReportingCall) -> dict[str, Any]:
    """The fields that say which request an answer's events are about."""
    request = call.request
    fields: dict[str, Any] = {**call.tags, "method": request.method.decode("latin-1"),
                              "path": request.path.decode("latin-1"),
                              "upstream_name": call.upstream_name}
    if call.model is not None:
        fields["model"] = call.model
    return fields


def elapsed_ms(call: ReportingCall) -> float:
    """Milliseconds since the request began, to a tenth."""
    return int((monotonic() - call.started) * 10000) / 10


def tried_names(call: ReportingCall) -> tuple[str, ...]:
    """The upstreams the request went to, when it went to more than one."""
    return (*call.tried, call.upstream_name) if call.tried else ()


def failure_document(call: ReportingCall, problem: UpstreamError) -> dict[str, Any]:
    """The error the client gets for C{problem}, naming the upstreams tried."""
    message = f"upstream request failed ({problem.kind}): {problem.message}"
    if call.tried:
        message += "; upstreams tried: " + ", ".join(
            [*call.tried, f"{call.upstream_name} ({problem.kind})"])
    return error_document(message, "proxy_error", request_id=call.tags["id"],
                          upstream=call.upstream.config.upstream_display)


def count_tokens(call: ReportingCall, usage: dict[str, int]) -> None:
    """Add the tokens an answer reports to the metrics, under the request's
    model and client, and to the client's limits."""
    client = call.tags.get("client", "")
    call.context.metrics.count_tokens(call.model, client, usage)
    limiter = call.context.limits
    if limiter.active or limiter.priced:
        limiter.spend(limiter.client_of(client), call.model, usage)


def report_retry(call: ReportingCall, retry: int, delay: float, problem: UpstreamError) -> None:
    """An attempt failed and another is to follow after C{delay} seconds."""
    call.context.metrics.retries.labels(problem.kind).inc()
    log.warn(
        "retry",
        **call.tags,
        retry=retry,
        backoff_sec=delay,
        error={"type": problem.kind, "message": problem.message},
    )


def report_wait(call: ReportingCall, retry: int, wait: float,
                answer: tuple[IResponse, bytes | None]) -> None:
    """The upstream asked for a short wait (a 429 or 503), waited out."""
    call.context.metrics.rate_limit_waits.inc()
    log.warn("rate_limit_wait", **call.tags, retry=retry, wait_sec=round(wait, 3),
             status=answer[0].code)


def count_request(call: ReportingCall, status: int, streamed: int | None) -> None:
    """The request's end, in the metrics: its status (499: the client left
    first), how long it took, and the bytes its stream carried (C{None}: not
    a stream)."""
    metrics = call.context.metrics
    model, client = metrics.model_label(call.model), call.tags.get("client", "")
    metrics.child(metrics.requests, call.route.label, model, str(status), client,
                  call.upstream_name).inc()
    metrics.child(metrics.duration, call.route.label, model, client).observe(
        monotonic() - call.started)
    if streamed is not None:
        metrics.streams.dec()
        metrics.streamed_bytes.inc(streamed)
