"""A forwarded request's turn at its client's limits (L{genaiproxy.limits}).

Before a request goes upstream, L{ask_limits} checks its client's model list
(403), then lets it through or refuses it (429, or 503 while a closed Redis
is away) at once, or once Redis answers; every answer to a limited client
carries OpenAI's C{x-ratelimit-*} headers.  A request let through holds its
admission until its end, when L{give_back} frees its concurrency slot.  The
proxy's own refusals never reach an upstream, so they are never retried,
never sent to a fallback and never an upstream's failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from genaiproxy.forwarding.answer import AnsweringCall, answer_error
from genaiproxy.limits import Admission

__all__ = ["LimitedCall", "ask_limits", "give_back", "limited"]


class LimitedCall(AnsweringCall, Protocol):
    """What the limits read and set of a call (a
    L{genaiproxy.forwarding.call.ForwardCall}).

    @ivar admission: what the limits said, once the request was let through.
    """

    admission: Admission | None


def _client(call: LimitedCall) -> str:
    return call.context.limits.client_of(call.tags.get("client", ""))


def ask_limits(call: LimitedCall, go: Callable[[], None],
               crashed: Callable[[Failure], None]) -> None:
    """Check C{call}'s request against its client's limits; C{go} sends it
    on when they let it through (C{crashed}: a bug of ours on the way)."""
    limiter = call.context.limits
    client = _client(call)
    models = limiter.models_of(client)
    if models is not None and call.model is not None and call.model not in models:
        answer_error(call, 403, limiter.refused_model(client, call.model))
        return
    admission = limiter.admit(client)
    if isinstance(admission, Deferred):
        admission.addCallback(_admitted, call, client, go).addErrback(crashed)
    else:
        _admitted(admission, call, client, go)


def _admitted(admission: Admission, call: LimitedCall, client: str,
              go: Callable[[], None]) -> None:
    limiter = call.context.limits
    if call.gone:
        if admission.refused_by is None:
            limiter.release(client, admission)
        return
    headers = call.request.responseHeaders
    for name, value in limiter.headers(admission):
        headers.setRawHeaders(name, [value])
    if admission.refused_by is not None:
        status, document, wait = limiter.refusal(client, admission)
        headers.setRawHeaders(b"retry-after", [b"%d" % wait])
        answer_error(call, status, document)
        return
    call.admission = admission
    go()


def give_back(call: LimitedCall) -> None:
    """The request has ended: its concurrency slot is free again."""
    if call.admission is not None:
        call.context.limits.release(_client(call), call.admission)
        call.admission = None


def limited(call: LimitedCall) -> bool:
    """Whether C{call}'s answer carries its client's own C{x-ratelimit-*}
    headers (set when it was let through), in place of the upstream's."""
    admission = call.admission
    return admission is not None and (
        admission.requests is not None or admission.tokens is not None)
