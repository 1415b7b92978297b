"""The Anthropic Messages API's paths: C{POST /v1/messages} (forwarded:
answered through the upstream's chat completions, or passed through with
C{MESSAGES_API=native}) and C{POST /v1/messages/count_tokens} (answered here,
without the upstream).

Their resources say C{anthropic}: the site then writes every error of such a
request in Anthropic's shape and names the request's id in a C{request-id}
header, as Anthropic's own API does.  Any query string (Claude Code sends
C{?beta=true}) is accepted.
"""

from __future__ import annotations

import json

from twisted.web.resource import Resource
from twisted.web.server import Request

from genaiproxy.api import Route, set_json, set_json_error
from genaiproxy.api.messages import count_tokens
from genaiproxy.forwarding import Forwarder
from genaiproxy.server.resources import Forwarded, JSONResource, NotFound

__all__ = ["Messages"]

# Routed by its model; the body is left as it is (the bridge reads it, or
# the native upstream does).
MESSAGES_ROUTE = Route(label="messages", by_model=True, bridge="messages")


class AnthropicNotFound(NotFound):
    """404 below /v1/messages, in Anthropic's shape."""

    anthropic = True


class CountTokens(JSONResource):
    """POST /v1/messages/count_tokens: an estimate of the request's input
    tokens, made here (no upstream call, no network)."""

    isLeaf = True
    anthropic = True

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        request.content.seek(0)
        try:
            body = json.loads(request.content.read())
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return set_json_error(request, 400, "The body must be a JSON object with messages.",
                                  "invalid_request_error")
        return set_json(request, {"input_tokens": count_tokens(body)})


class Messages(Forwarded):
    """POST /v1/messages, and count_tokens below it."""

    anthropic = True

    def __init__(self, forwarder: Forwarder) -> None:
        super().__init__(forwarder, "/v1/messages", ("POST",), MESSAGES_ROUTE)
        self._count_tokens = CountTokens()

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"count_tokens" and not request.postpath:
            return self._count_tokens
        if path == b"" and not request.postpath:
            return self
        return AnthropicNotFound()
