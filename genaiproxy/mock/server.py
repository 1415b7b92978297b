"""A mock OpenAI-compatible upstream: a real HTTP server on twisted.web.

Used by tests, benchmarks and the quickstart demo as the thing the proxy
forwards to.  Under any base-URL prefix it answers ``/v1/models``,
``/v1/health``, ``/v1/chat/completions`` and the legacy ``/v1/completions``
(plain and ``data:``-only SSE ending in ``[DONE]``), ``/v1/responses`` (plain,
or the Responses API's typed ``event:``/``data:`` SSE with no ``[DONE]``) and
``/v1/embeddings`` (float or base64 vectors derived from a hash of the text).
Any other path under ``/v1/``, with any method, gets a ``mock.echo`` object
reporting the method, path, query, content type and the body's length and
SHA-256, so that a test can check an upload arrived intact.

It misbehaves on request through ``X-Mock-*`` headers:

``X-Mock-Status: N``
    answer with status N and an OpenAI-style error body (429 adds
    ``Retry-After: 1``); streaming requests get the same plain JSON error.
``X-Mock-Events: N`` / ``X-Mock-Event-Delay: S``
    override the stream's content (delta) event count and the delay between
    them.
``X-Mock-Drop-After: N``
    streams: reset the connection after N content (delta) events; other
    requests: reset it without answering.
``X-Mock-Hang: 1``
    never answer.
``X-Mock-Fail-First: N`` with ``X-Request-ID: id``
    reset the connection of the first N requests carrying that id.
``X-Mock-Fail-Mid-Body: 1`` (with ``X-Mock-Fail-First``)
    those first requests get the headers and the start of a body before the
    reset.
``X-Mock-Fail-Status: S`` (with ``X-Mock-Fail-First``)
    those first requests are answered with status S (and the X-Mock-Header
    headers, such as a Retry-After) instead.
``X-Mock-Content-Type: T``
    answer a non-streaming chat, legacy or Responses completion with the bare
    reply text as type T.
``X-Mock-Header: Name: value`` (repeatable)
    add that header to the answer.
``X-Mock-Body-Bytes: N``
    any other path under ``/v1/``: answer N bytes of
    ``application/octet-stream`` (a large download) instead of the echo.
``X-Mock-No-Content-Type: 1``
    streams: send no ``Content-Type`` header.
``X-Mock-No-Stream-Options: 1``
    completions: refuse a body with ``stream_options`` with a 400, as older
    API versions of Azure OpenAI do.
``X-Mock-Gzip: 1`` (with ``Accept-Encoding: gzip``)
    gzip the answer (``Content-Encoding: gzip``, no ``Content-Length``),
    flushed after every write so that stream events still go out one by one.

Started with options, it misbehaves on every request under ``/v1`` (the
requests are still recorded), as one upstream among several would:

``--require-header 'Name: value'``
    a request without that header carrying exactly that value is answered
    401 with an OpenAI-style error, as a gateway answers a missing or wrong
    key.
``--fail-status N``
    every request is answered with status N and an OpenAI-style error
    (like ``X-Mock-Status``, but whatever the request carries).
``--hang``
    no request is ever answered (like ``X-Mock-Hang``).
``--base-path /genai``
    only paths under that prefix are served, as a gateway's base path is;
    any other path is answered 404.

``GET /_mock/requests`` lists the last requests received, each body cut to
its first 64 KiB (``body_length`` has the full size); ``DELETE`` clears them
and the counters.  ``GET /_mock/stats`` reports counters.

This module routes requests, applies the failure controls and builds the
site. The APIs' answers are rendered in L{genaiproxy.mock.apis}, from
objects built in L{genaiproxy.mock.payloads}. Its HTTP plumbing (counters,
control headers, the paced stream, gzip) is in L{genaiproxy.mock.plumbing}.
Its command line is L{genaiproxy.mock.cli}.

Run it with ``python -m genaiproxy.mock`` (see ``--help``); it prints
``mock upstream listening on http://HOST:PORT`` once listening, or embed it
with :func:`build_site`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import (
    IReactorTime,
)
from twisted.web import http, server
from twisted.web.resource import EncodingResourceWrapper, Resource

from genaiproxy.mock.apis import MockAPIs
from genaiproxy.mock.payloads import (
    MODEL_IDS,
    BadRequest,
    json_object,
)
from genaiproxy.mock.plumbing import (
    JSON_TYPE,
    CountingChannel,
    GzipOnRequest,
    MockState,
    abort,
    error_body,
    int_header,
    mock_header,
    reset_after_flush,
    send_error,
    send_json,
)

DEFAULT_EVENTS = 5
DEFAULT_EVENT_DELAY = 0.05
DEFAULT_REPLY = "Hello from the mock upstream."
# Bytes of each request body kept in the request log.
REQUEST_LOG_BODY_LIMIT = 64 * 1024

# Reason phrases Twisted's http.RESPONSES lacks but clients may show.
_EXTRA_REASONS = {422: b"Unprocessable Content", 429: b"Too Many Requests"}


@dataclass(frozen=True)
class MockOptions:
    """How the mock misbehaves on every request under ``/v1`` (its
    command-line options); by default it does not."""

    # (name, value): a request without this exact header value gets a 401.
    require_header: tuple[bytes, bytes] | None = None
    fail_status: int | None = None  # answer every request with this status
    hang: bool = False  # answer no request
    # Serve only under this path (a gateway's base path): elsewhere, 404.
    base_path: str = ""


def parse_header_option(text: str) -> tuple[bytes, bytes]:
    """``'Name: value'`` as (name, value); raises ValueError without a name."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
        raise ValueError(f"expected 'Name: value', got {text!r}")
    return name.strip().encode("latin-1"), value.strip().encode("latin-1")


# A text-generating renderer: (request, JSON body, stream?, drop-after).
_Generator = Callable[[server.Request, dict[str, Any], bool, int | None], bytes | int]


class MockResource(MockAPIs, Resource):
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
        """Route on the path suffix, after the X-Mock-* controls."""
        path = request.path.decode("utf-8", "replace")
        if "/_mock/" in path:
            return self._render_introspection(request, path)
        body = request.content.read() if request.content is not None else b""
        self._record(request, path, body)
        base = self.options.base_path.rstrip("/")
        if base and not (path + "/").startswith(base + "/"):
            return send_error(request, 404, f"Unknown path: {path}")
        try:
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

    @staticmethod
    def _add_mock_headers(request: server.Request) -> None:
        """C{X-Mock-Header: Name: value} (repeatable) adds a response header."""
        for extra in request.requestHeaders.getRawHeaders(b"x-mock-header", []):
            name, _, value = extra.partition(b":")
            if name.strip():
                request.responseHeaders.addRawHeader(name.strip(), value.strip())

    def _render_api(
        self, request: server.Request, path: str, body: bytes
    ) -> bytes | int:
        """Apply the failure controls, then answer the API path."""
        if "/v1/" in path:
            refused = self._apply_options(request)
            if refused is not None:
                return refused
        fail_first = int_header(request, b"x-mock-fail-first")
        request_id = mock_header(request, b"x-request-id")
        if fail_first and request_id is not None:
            failed = self.state.failed_by_request_id.get(request_id, 0)
            if failed < fail_first:
                self.state.failed_by_request_id[request_id] = failed + 1
                fail_status = int_header(request, b"x-mock-fail-status")
                if fail_status is not None:  # an answer (429 + Retry-After, ...)
                    self._add_mock_headers(request)
                    return self._render_mock_status(request, fail_status)
                if mock_header(request, b"x-mock-fail-mid-body") in (None, "", "0"):
                    abort(request)
                else:  # headers and the start of a body, then the reset
                    request.setResponseCode(200)
                    request.setHeader(b"content-type", JSON_TYPE)
                    request.setHeader(b"content-length", b"1000")
                    request.write(b'{"partial": ')
                    reset_after_flush(request)
                return server.NOT_DONE_YET
        if mock_header(request, b"x-mock-hang") not in (None, "", "0"):
            request.notifyFinish().addErrback(lambda _: None)
            return server.NOT_DONE_YET
        self._add_mock_headers(request)
        status = int_header(request, b"x-mock-status")
        if status is not None:
            return self._render_mock_status(request, status)
        drop_after = int_header(request, b"x-mock-drop-after")

        method = request.method
        under_v1 = "/v1/" in path
        route = path[:-1] if path != "/" and path.endswith("/") and under_v1 else path
        generate = self._generator(route)
        if generate is not None:
            if method != b"POST":
                return self._not_allowed(request, b"POST")
            payload = json_object(body)
            if "stream_options" in payload and mock_header(
                    request, b"x-mock-no-stream-options") not in (None, "", "0"):
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
                return self._not_allowed(request, b"POST")
            return self._render_embeddings(request, json_object(body))
        if route.endswith("/v1/models"):
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            models = [
                {"id": model, "object": "model", "created": 0, "owned_by": "mock"}
                for model in MODEL_IDS
            ]
            return send_json(request, {"object": "list", "data": models})
        if route.endswith("/v1/health"):
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            return send_json(request, {"status": "ok"})
        bulk = int_header(request, b"x-mock-body-bytes")
        if under_v1 and bulk is not None:
            return self._render_bulk(request, bulk)
        if under_v1:
            return self._render_echo(request, path, body)
        if route.endswith("/"):
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"mock upstream ok"
        return send_error(request, 404, f"Unknown path: {path}")

    def _apply_options(self, request: server.Request) -> bytes | int | None:
        """The answer the command-line options give a request under /v1, or
        None when they let it through."""
        options = self.options
        if options.require_header is not None:
            name, value = options.require_header
            if request.requestHeaders.getRawHeaders(name) != [value]:
                request.setResponseCode(401)
                request.setHeader(b"content-type", JSON_TYPE)
                return error_body(f"missing or wrong {name.decode('latin-1')} header",
                                  "invalid_request_error", "invalid_api_key")
        if options.fail_status is not None:
            return self._render_mock_status(request, options.fail_status)
        if options.hang:
            request.notifyFinish().addErrback(lambda _: None)
            return server.NOT_DONE_YET
        return None

    def _render_bulk(self, request: server.Request, size: int) -> int:
        """C{size} bytes of a download, written in 1 MiB pieces."""
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % size)
        piece = b"\x5a" * (1 << 20)
        for start in range(0, size, len(piece)):
            request.write(piece[: size - start])
        request.finish()
        return server.NOT_DONE_YET

    def _generator(self, route: str) -> _Generator | None:
        """The renderer of a text-generating path (POST, maybe streamed)."""
        if route.endswith("/v1/chat/completions"):
            return self._render_chat
        if route.endswith("/v1/completions"):
            return self._render_completions
        if route.endswith("/v1/responses"):
            return self._render_responses
        return None

    def _render_mock_status(self, request: server.Request, status: int) -> bytes:
        """Answer an X-Mock-Status request with the requested error."""
        if not 100 <= status <= 599:
            raise BadRequest("X-Mock-Status must be between 100 and 599")
        reason = http.RESPONSES.get(status) or _EXTRA_REASONS.get(status, b"Mock Status")
        request.setResponseCode(status, reason)
        request.setHeader(b"content-type", JSON_TYPE)
        if status == 429 and not request.responseHeaders.hasHeader(b"retry-after"):
            request.setHeader(b"retry-after", b"1")
        return error_body(f"mock error {status}", "mock_error", str(status))

    def _not_allowed(self, request: server.Request, allowed: bytes) -> bytes:
        """405 for a known path with the wrong method."""
        request.setHeader(b"allow", allowed)
        return send_error(
            request, 405, f"Method {request.method.decode('latin-1')} not allowed"
        )

    def _render_echo(self, request: server.Request, path: str, body: bytes) -> bytes:
        """Describe the request received, for any other ``/v1/`` path."""
        _, _, query = request.uri.partition(b"?")
        return send_json(
            request,
            {
                "object": "mock.echo",
                "method": request.method.decode("latin-1"),
                "path": path,
                "query": query.decode("utf-8", "replace"),
                "body_bytes": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "content_type": mock_header(request, b"content-type"),
            },
        )

    def _render_introspection(self, request: server.Request, path: str) -> bytes:
        """``/_mock/requests`` and ``/_mock/stats``; never recorded."""
        method = request.method
        if path.endswith("/_mock/requests"):
            if method == b"DELETE":
                return send_json(request, {"cleared": self.state.reset()})
            if method in (b"GET", b"HEAD"):
                return send_json(request, list(self.state.requests))
            return self._not_allowed(request, b"GET, DELETE")
        if path.endswith("/_mock/stats"):
            if method in (b"GET", b"HEAD"):
                return send_json(request, self.state.stats())
            return self._not_allowed(request, b"GET")
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
