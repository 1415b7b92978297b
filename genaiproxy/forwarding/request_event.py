"""The C{request} event: what a forwarded request was and what left the
proxy for the upstream (the key masked, the body when C{LOG_BODIES} asks).

Logged by the call once the request is on its way, so that building the
event stays off the request's latency path.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.http_headers import Headers

from genaiproxy.api import PreparedBody
from genaiproxy.forwarding.answer import AnsweringCall
from genaiproxy.forwarding.report import about
from genaiproxy.observe import CheckedJSON, LoggedHeaders, body_for_log
from genaiproxy.upstream import RequestBody, body_length

__all__ = ["log_request"]

log = Logger(namespace="genaiproxy.forward")


def log_request(call: AnsweringCall, upstream_url: str, prepared: PreparedBody,
                body: RequestBody, sent: Headers) -> None:
    """Log C{call}'s request, sent to C{upstream_url} with the headers C{sent}."""
    request, secret = call.request, call.context.secret_headers
    fields: dict[str, Any] = {
        **about(call),
        "upstream": upstream_url,
        "headers": LoggedHeaders(request.requestHeaders, secret),
        # What left the proxy, after rewriting (secret values masked).
        "upstream_headers": LoggedHeaders(sent, secret),
    }
    if call.bridge is not None:
        fields.update(call.bridge.logged())
    if call.context.config.log_bodies and body:
        content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
        if prepared.payload is not None and isinstance(body, bytes):
            fields["body"] = CheckedJSON(body)  # parsed already: valid JSON
        elif isinstance(body, bytes):
            fields.update(body_for_log(body, content_type))
        else:
            fields.update(body_length=body_length(body), content_type=content_type)
    log.info("request", **fields)
