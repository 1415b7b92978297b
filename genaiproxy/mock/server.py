"""A mock OpenAI-compatible upstream: a real HTTP server on twisted.web.

Used by tests, benchmarks and the quickstart demo as the thing the proxy
forwards to.  Under any base-URL prefix it answers ``/v1/models``,
``/v1/health``, ``/v1/chat/completions`` and the legacy ``/v1/completions``
(plain and ``data:``-only SSE ending in ``[DONE]``), ``/v1/responses`` (plain,
or the Responses API's typed ``event:``/``data:`` SSE with no ``[DONE]``) and
``/v1/embeddings``; any other path under ``/v1/`` gets a ``mock.echo`` of the
request.  Its chat model can call the function tools a request offers and
send reasoning; started with ``--chat-only`` it has no Responses API, as
many gateways do not.  It misbehaves on request (``X-Mock-*`` headers) or
on every request (command-line options): docs/reference/mock-upstream.md
lists them all.  ``GET /_mock/requests`` lists the last requests received
(``DELETE`` clears them and the counters); ``GET /_mock/stats`` reports
counters.

This module records and routes requests and builds the site.  The failure
controls and the options are in L{genaiproxy.mock.controls}; chat in
L{genaiproxy.mock.chat} (its tool calls and reasoning in
L{genaiproxy.mock.tool_calls}); the other APIs in L{genaiproxy.mock.apis},
from objects built in L{genaiproxy.mock.payloads}.  Its HTTP plumbing
(counters, control headers, the paced stream, gzip) is in
L{genaiproxy.mock.plumbing}, its command line in L{genaiproxy.mock.cli}.

Run it with ``python -m genaiproxy.mock`` (see ``--help``); it prints
``mock upstream listening on http://HOST:PORT`` once listening, or embed it
with L{build_site}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web import http, server
from twisted.web.resource import EncodingResourceWrapper, Resource

from genaiproxy.mock.chat import MockChat
from genaiproxy.mock.controls import MockControls, MockOptions, parse_header_option
from genaiproxy.mock.payloads import MODEL_IDS, BadRequest, json_object
from genaiproxy.mock.plumbing import (
    CountingChannel,
    GzipOnRequest,
    MockState,
    abort,
    flag_header,
    int_header,
    not_allowed,
    send_error,
    send_json,
)

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_EVENT_DELAY",
    "DEFAULT_REPLY",
    "MockOptions",
    "MockResource",
    "MockSite",
    "build_site",
    "parse_header_option",
]

DEFAULT_EVENTS = 5
DEFAULT_EVENT_DELAY = 0.05
DEFAULT_REPLY = "Hello from the mock upstream."
# Bytes of each request body kept in the request log.
REQUEST_LOG_BODY_LIMIT = 64 * 1024

# A text-generating renderer: (request, JSON body, stream?, drop-after).
_Generator = Callable[[server.Request, dict[str, Any], bool, int | None], bytes | int]


class MockResource(MockChat, MockControls, Resource):
    """The single leaf resource answering every path of the mock."""

    isLeaf = True

    def __init__(
        self,
        state: MockState,
        clock: IReactorTime,
        events: int,
        event_delay: float,
        reply: str,
        options: MockOptions | None = None,
    ) -> None:
        super().__init__()
        self.state = state
        self.clock = clock
        self.events = events
        self.event_delay = event_delay
        self.reply = reply
        self.options = options or MockOptions()

    def render(self, request: server.Request) -> bytes | int:
        """Record the request, then route it on the path suffix after the
        controls (a route a chat-only gateway lacks first)."""
        path = request.path.decode("utf-8", "replace")
        if "/_mock/" in path:
            return self._render_introspection(request, path)
        body = request.content.read() if request.content is not None else b""
        self._record(request, path, body)
        base = self.options.base_path.rstrip("/")
        if base and not (path + "/").startswith(base + "/"):
            return send_error(request, 404, f"Unknown path: {path}")
        try:
            missing = self._missing_route(request, path)
            if missing is not None:
                return missing
            refused = self._apply_controls(request, path)
            if refused is not None:
                return refused
            return self._render_api(request, path, body)
        except BadRequest as error:
            return send_error(request, 400, str(error))

    def _record(self, request: server.Request, path: str, body: bytes) -> None:
        """Append the request to the introspection log."""
        self.state.request_count += 1
        headers: dict[str, list[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers[name.decode("latin-1").lower()] = [
                value.decode("latin-1") for value in values
            ]
        _, _, query = request.uri.partition(b"?")
        kept = body[:REQUEST_LOG_BODY_LIMIT]
        self.state.requests.append(
            {
                "method": request.method.decode("latin-1"),
                "path": path,
                "query": query.decode("utf-8", "replace"),
                "headers": headers,
                "body": kept.decode("utf-8", "replace"),
                "body_length": len(body),
            }
        )

    def _render_api(
        self, request: server.Request, path: str, body: bytes
    ) -> bytes | int:
        """Answer the API path (the controls have let the request through)."""
        drop_after = int_header(request, b"x-mock-drop-after")
        method = request.method
        under_v1 = "/v1/" in path
        route = path[:-1] if path != "/" and path.endswith("/") and under_v1 else path
        generate = self._generator(route)
        if generate is not None:
            if method != b"POST":
                return not_allowed(request, b"POST")
            payload = json_object(body)
            if "stream_options" in payload and flag_header(
                    request, b"x-mock-no-stream-options", False):
                # As an older Azure OpenAI API version answers.
                raise BadRequest("Unrecognized request argument supplied: stream_options")
            stream = payload.get("stream") is True
            if drop_after is not None and not stream:
                abort(request)
                return server.NOT_DONE_YET
            return generate(request, payload, stream, drop_after)
        if drop_after is not None:
            abort(request)
            return server.NOT_DONE_YET
        if route.endswith("/v1/embeddings"):
            if method != b"POST":
                return not_allowed(request, b"POST")
            return self._render_embeddings(request, json_object(body))
        if route.endswith("/v1/models"):
            if method not in (b"GET", b"HEAD"):
                return not_allowed(request, b"GET")
            models = [
                {"id": model, "object": "model", "created": 0, "owned_by": "mock"}
                for model in MODEL_IDS
            ]
            return send_json(request, {"object": "list", "data": models})
        if route.endswith("/v1/health"):
            if method not in (b"GET", b"HEAD"):
                return not_allowed(request, b"GET")
            return send_json(request, {"status": "ok"})
        bulk = int_header(request, b"x-mock-body-bytes")
        if under_v1 and bulk is not None:
            return self._render_bulk(request, bulk)
        if under_v1:
            return self._render_echo(request, path, body)
        if route.endswith("/"):
            if method not in (b"GET", b"HEAD"):
                return not_allowed(request, b"GET")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"mock upstream ok"
        return send_error(request, 404, f"Unknown path: {path}")

    def _generator(self, route: str) -> _Generator | None:
        """The renderer of a text-generating path (POST, maybe streamed)."""
        if route.endswith("/v1/chat/completions"):
            return self._render_chat
        if route.endswith("/v1/completions"):
            return self._render_completions
        if route.endswith("/v1/responses"):
            return self._render_responses
        return None

    def _render_introspection(self, request: server.Request, path: str) -> bytes:
        """``/_mock/requests`` and ``/_mock/stats``; never recorded."""
        method = request.method
        if path.endswith("/_mock/requests"):
            if method == b"DELETE":
                return send_json(request, {"cleared": self.state.reset()})
            if method in (b"GET", b"HEAD"):
                return send_json(request, list(self.state.requests))
            return not_allowed(request, b"GET, DELETE")
        if path.endswith("/_mock/stats"):
            if method in (b"GET", b"HEAD"):
                return send_json(request, self.state.stats())
            return not_allowed(request, b"GET")
        return send_error(request, 404, f"Unknown path: {path}")


class MockSite(server.Site):
    """A quiet Site: no access log, no factory start/stop messages."""

    noisy = False
    # HTTPFactory types its protocol as the HTTP/2-negotiating wrapper only,
    # though buildProtocol works with any HTTPChannel.
    protocol = CountingChannel  # type: ignore[assignment]

    def __init__(self, resource: MockResource, clock: IReactorTime) -> None:
        super().__init__(EncodingResourceWrapper(resource, [GzipOnRequest()]), reactor=clock)
        self.state = resource.state

    def startFactory(self) -> None:
        """No access log, so no log file or per-second timestamp timer."""

    def log(self, request: http.Request) -> None:
        """Skip the per-request access log: it is costly and noisy."""


def build_site(
    events: int = DEFAULT_EVENTS,
    event_delay: float = DEFAULT_EVENT_DELAY,
    reply: str = DEFAULT_REPLY,
    clock: IReactorTime | None = None,
    options: MockOptions | None = None,
) -> MockSite:
    """Build a mock upstream Site with its own state, ready to listen.

    ``clock`` paces the stream events and stamps ``created``; it defaults to
    the global reactor.  The site's counters are at ``site.state``.
    """
    if clock is None:
        from twisted.internet import reactor

        clock = reactor
    resource = MockResource(MockState(), clock, events, event_delay, reply, options)
    return MockSite(resource, clock)
