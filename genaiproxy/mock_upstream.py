"""A mock OpenAI-compatible upstream: a real HTTP server on twisted.web.

Used by tests, benchmarks and the quickstart demo as the thing the proxy
forwards to.  It answers ``/v1/models``, ``/v1/health`` and
``/v1/chat/completions`` (plain and SSE streaming) under any base-URL prefix,
and misbehaves on request through ``X-Mock-*`` headers:

``X-Mock-Status: N``
    answer with status N and an OpenAI-style error body (429 adds
    ``Retry-After: 1``); streaming requests get the same plain JSON error.
``X-Mock-Events: N`` / ``X-Mock-Event-Delay: S``
    override the stream's event count and the delay between events.
``X-Mock-Drop-After: N``
    streams: reset the connection after N content events; other requests:
    reset it without answering.
``X-Mock-Hang: 1``
    never answer.
``X-Mock-Fail-First: N`` with ``X-Request-ID: id``
    reset the connection of the first N requests carrying that id.
``X-Mock-Content-Type: T``
    answer a non-streaming completion with the bare reply text as type T.

``GET /_mock/requests`` lists the last requests received (``DELETE`` clears
them and the counters) and ``GET /_mock/stats`` reports counters.

Run it with ``python -m genaiproxy.mock_upstream`` (see ``--help``); it prints
``mock upstream listening on http://HOST:PORT`` once listening, or embed it
with :func:`build_site`.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import socket
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

DEFAULT_EVENTS = 5
DEFAULT_EVENT_DELAY = 0.05
DEFAULT_REPLY = "Hello from the mock upstream."
MODEL_IDS = ("gpt-4.1", "gpt-5")
DEFAULT_MODEL = MODEL_IDS[0]
REQUEST_LOG_SIZE = 200

_JSON = b"application/json"
_SSE = b"text/event-stream; charset=utf-8"
_WORD = re.compile(r"\s*\S+\s*")
# Reason phrases Twisted's http.RESPONSES lacks but clients may show.
_EXTRA_REASONS = {422: b"Unprocessable Content", 429: b"Too Many Requests"}


class _BadRequest(Exception):
    """A client error to report as a 400 OpenAI error."""


@dataclass
class MockState:
    """Everything one mock site remembers: request log and counters."""

    requests: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=REQUEST_LOG_SIZE)
    )
    request_count: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    streams_dropped: int = 0
    open_connections: int = 0
    completion_count: int = 0
    # X-Request-ID -> connections already reset for X-Mock-Fail-First.
    failed_by_request_id: dict[str, int] = field(default_factory=dict)

    def reset(self) -> int:
        """Forget logged requests and counters (not the live connection
        gauge); return how many logged requests were dropped."""
        cleared = len(self.requests)
        self.requests.clear()
        self.failed_by_request_id.clear()
        self.request_count = 0
        self.streams_started = self.streams_completed = 0
        self.streams_cancelled = self.streams_dropped = 0
        return cleared

    def stats(self) -> dict[str, int]:
        """The counters as served by ``GET /_mock/stats``."""
        return {
            "requests": self.request_count,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "streams_dropped": self.streams_dropped,
            "open_connections": self.open_connections,
        }


def split_reply(reply: str, pieces: int) -> list[str]:
    """Cut ``reply`` into ``pieces`` word-ish stream deltas.

    With no more pieces than words the deltas join back to exactly the
    reply; with more, the words repeat (space-separated) so that every event
    still carries some content.
    """
    if pieces <= 0:
        return []
    words = _WORD.findall(reply)
    if not words:
        return [reply] + [""] * (pieces - 1)
    if pieces <= len(words):
        size, extra = divmod(len(words), pieces)
        result, start = [], 0
        for index in range(pieces):
            end = start + size + (1 if index < extra else 0)
            result.append("".join(words[start:end]))
            start = end
        return result
    bare = [word.strip() for word in words]
    return [
        bare[index % len(bare)] + ("" if index == pieces - 1 else " ")
        for index in range(pieces)
    ]


def _error_body(message: str, error_type: str, code: str | None) -> bytes:
    """Encode an OpenAI-style error object."""
    error = {"message": message, "type": error_type, "code": code}
    return json.dumps({"error": error}).encode()


def _send_json(request: server.Request, payload: Any, status: int = 200) -> bytes:
    """Set status and JSON content type; return the body for render()."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", _JSON)
    return json.dumps(payload).encode()


def _send_error(request: server.Request, status: int, message: str) -> bytes:
    """Answer with an OpenAI ``invalid_request_error``."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", _JSON)
    return _error_body(message, "invalid_request_error", None)


def _header(request: server.Request, name: bytes) -> str | None:
    """A request header as text (case-insensitive name), or None."""
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1").strip()


def _int_header(request: server.Request, name: bytes) -> int | None:
    """A non-negative integer control header, or None when absent."""
    text = _header(request, name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise _BadRequest(f"{name.decode()} must be an integer, got {text!r}")
    if value < 0:
        raise _BadRequest(f"{name.decode()} must not be negative")
    return value


def _float_header(request: server.Request, name: bytes) -> float | None:
    """A non-negative number control header, or None when absent."""
    text = _header(request, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _BadRequest(f"{name.decode()} must be a number, got {text!r}")
    if not value >= 0:  # also rejects NaN
        raise _BadRequest(f"{name.decode()} must not be negative")
    return value


def _abort(request: server.Request) -> None:
    """Reset the connection now, dropping anything not yet sent."""
    request.channel.transport.abortConnection()


def _reset_after_flush(request: server.Request) -> None:
    """Reset the connection once what was already written has been sent.

    ``abortConnection()`` would throw away the events still sitting in the
    transport's write buffer, so instead close with SO_LINGER 0: Twisted
    flushes, then the kernel sends a RST instead of a graceful close.
    """
    transport = request.channel.transport
    try:
        transport.getHandle().setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    except (AttributeError, OSError):
        pass  # not a real socket (e.g. a test transport): plain close
    transport.loseConnection()


class _Stream:
    """One SSE chat-completion stream, paced by the clock.

    Events are written from timer callbacks as they fall due; when the
    client goes away the pending timer is cancelled and nothing more is
    written to the request.
    """

    def __init__(
        self,
        state: MockState,
        clock: IReactorTime,
        request: server.Request,
        chunks: list[bytes],
        tail: bytes,
        delay: float,
        drop_after: int | None,
    ) -> None:
        self._state = state
        self._clock = clock
        self._request = request
        self._chunks = chunks
        self._tail = tail
        self._delay = delay
        self._drop_after = drop_after
        self._sent = 0
        self._call: IDelayedCall | None = None
        self._done = False

    def start(self) -> None:
        """Send headers and the first event now, schedule the rest."""
        self._state.streams_started += 1
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"content-type", _SSE)
        request.setHeader(b"cache-control", b"no-cache")
        request.notifyFinish().addErrback(self._client_gone)
        request.write(b"")  # headers go out even if no event follows
        self._step()

    def _step(self) -> None:
        """Write the event that is due, then finish, drop or reschedule."""
        self._call = None
        if self._sent < len(self._chunks) and self._sent != self._drop_after:
            self._request.write(self._chunks[self._sent])
            self._sent += 1
        if self._sent == self._drop_after:
            self._drop()
            return
        if self._sent < len(self._chunks):
            self._call = self._clock.callLater(self._delay, self._step)
            return
        self._done = True
        self._request.write(self._tail)
        self._request.finish()
        self._state.streams_completed += 1

    def _drop(self) -> None:
        """Cut the connection mid-stream, without the terminating chunk."""
        self._done = True
        self._state.streams_dropped += 1
        _reset_after_flush(self._request)

    def _client_gone(self, reason: Failure) -> None:
        """The connection closed before the end: stop the timer."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if not self._done:
            self._done = True
            self._state.streams_cancelled += 1


class MockResource(Resource):
    """The single leaf resource answering every path of the mock."""

    isLeaf = True

    def __init__(
        self,
        state: MockState,
        clock: IReactorTime,
        events: int,
        event_delay: float,
        reply: str,
    ) -> None:
        super().__init__()
        self.state = state
        self.clock = clock
        self.events = events
        self.event_delay = event_delay
        self.reply = reply

    def render(self, request: server.Request) -> bytes | int:
        """Route on the path suffix, after the X-Mock-* controls."""
        path = request.path.decode("utf-8", "replace")
        if "/_mock/" in path:
            return self._render_introspection(request, path)
        body = request.content.read() if request.content is not None else b""
        self._record(request, path, body)
        try:
            return self._render_api(request, path, body)
        except _BadRequest as error:
            return _send_error(request, 400, str(error))

    def _record(self, request: server.Request, path: str, body: bytes) -> None:
        """Append the request to the introspection log."""
        self.state.request_count += 1
        headers: dict[str, list[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers[name.decode("latin-1").lower()] = [
                value.decode("latin-1") for value in values
            ]
        _, _, query = request.uri.partition(b"?")
        self.state.requests.append(
            {
                "method": request.method.decode("latin-1"),
                "path": path,
                "query": query.decode("utf-8", "replace"),
                "headers": headers,
                "body": body.decode("utf-8", "replace"),
            }
        )

    def _render_api(
        self, request: server.Request, path: str, body: bytes
    ) -> bytes | int:
        """Apply the failure controls, then answer the API path."""
        fail_first = _int_header(request, b"x-mock-fail-first")
        request_id = _header(request, b"x-request-id")
        if fail_first and request_id is not None:
            failed = self.state.failed_by_request_id.get(request_id, 0)
            if failed < fail_first:
                self.state.failed_by_request_id[request_id] = failed + 1
                _abort(request)
                return server.NOT_DONE_YET
        if _header(request, b"x-mock-hang") not in (None, "", "0"):
            request.notifyFinish().addErrback(lambda _: None)
            return server.NOT_DONE_YET
        # "X-Mock-Header: Name: value" (repeatable) adds a response header.
        for extra in request.requestHeaders.getRawHeaders(b"x-mock-header", []):
            name, _, value = extra.partition(b":")
            if name.strip():
                request.responseHeaders.addRawHeader(name.strip(), value.strip())
        status = _int_header(request, b"x-mock-status")
        if status is not None:
            return self._render_mock_status(request, status)
        drop_after = _int_header(request, b"x-mock-drop-after")

        method = request.method
        if path != "/" and path.endswith("/") and "/v1/" in path:
            path = path[:-1]
        if path.endswith("/v1/chat/completions"):
            if method != b"POST":
                return self._not_allowed(request, b"POST")
            return self._render_chat(request, body, drop_after)
        if drop_after is not None:
            _abort(request)
            return server.NOT_DONE_YET
        if path.endswith("/v1/models"):
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            models = [
                {"id": model, "object": "model", "created": 0, "owned_by": "mock"}
                for model in MODEL_IDS
            ]
            return _send_json(request, {"object": "list", "data": models})
        if path.endswith("/v1/health"):
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            return _send_json(request, {"status": "ok"})
        if path.endswith("/") and "/v1/" not in path:
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"mock upstream ok"
        return _send_error(request, 404, f"Unknown path: {path}")

    def _render_mock_status(self, request: server.Request, status: int) -> bytes:
        """Answer an X-Mock-Status request with the requested error."""
        if not 100 <= status <= 599:
            raise _BadRequest("X-Mock-Status must be between 100 and 599")
        reason = http.RESPONSES.get(status) or _EXTRA_REASONS.get(status, b"Mock Status")
        request.setResponseCode(status, reason)
        request.setHeader(b"content-type", _JSON)
        if status == 429:
            request.setHeader(b"retry-after", b"1")
        return _error_body(f"mock error {status}", "mock_error", str(status))

    def _not_allowed(self, request: server.Request, allowed: bytes) -> bytes:
        """405 for a known path with the wrong method."""
        request.setHeader(b"allow", allowed)
        return _send_error(
            request, 405, f"Method {request.method.decode('latin-1')} not allowed"
        )

    def _render_chat(
        self, request: server.Request, body: bytes, drop_after: int | None
    ) -> bytes | int:
        """A chat completion, plain or streamed."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return _send_error(request, 400, "Request body is not valid JSON")
        if not isinstance(payload, dict):
            return _send_error(request, 400, "Request body must be a JSON object")
        stream = payload.get("stream") is True
        if drop_after is not None and not stream:
            _abort(request)
            return server.NOT_DONE_YET
        events = _int_header(request, b"x-mock-events")
        delay = _float_header(request, b"x-mock-event-delay")

        self.state.completion_count += 1
        model = payload.get("model")
        if not isinstance(model, str):
            model = DEFAULT_MODEL
        base = {
            "id": f"chatcmpl-mock-{self.state.completion_count}",
            "object": "chat.completion",
            "created": int(self.clock.seconds()),
            "model": model,
        }
        usage = {
            "prompt_tokens": _count_prompt_words(payload.get("messages")),
            "completion_tokens": len(self.reply.split()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if stream:
            options = payload.get("stream_options")
            include_usage = (
                isinstance(options, dict) and options.get("include_usage") is True
            )
            self._start_stream(
                request,
                base,
                usage if include_usage else None,
                self.events if events is None else events,
                self.event_delay if delay is None else delay,
                drop_after,
            )
            return server.NOT_DONE_YET

        content_type = _header(request, b"x-mock-content-type")
        if content_type:
            request.setHeader(b"content-type", content_type.encode("latin-1"))
            return self.reply.encode()
        message = {"role": "assistant", "content": self.reply}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return _send_json(request, {**base, "choices": [choice], "usage": usage})

    def _start_stream(
        self,
        request: server.Request,
        base: dict[str, Any],
        usage: dict[str, int] | None,
        events: int,
        delay: float,
        drop_after: int | None,
    ) -> None:
        """Pre-encode every SSE event and hand them to a paced _Stream."""
        base = {**base, "object": "chat.completion.chunk"}

        def event(payload: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps({**base, **payload}).encode() + b"\n\n"

        def delta(content: dict[str, str], finish_reason: str | None) -> bytes:
            choice = {"index": 0, "delta": content, "finish_reason": finish_reason}
            return event({"choices": [choice]})

        pieces = split_reply(self.reply, events)
        chunks = [delta({"content": piece}, None) for piece in pieces[1:]]
        if pieces:
            chunks.insert(0, delta({"role": "assistant", "content": pieces[0]}, None))
        tail = delta({}, "stop")
        if usage is not None:
            tail += event({"choices": [], "usage": usage})
        tail += b"data: [DONE]\n\n"
        _Stream(self.state, self.clock, request, chunks, tail, delay, drop_after).start()

    def _render_introspection(self, request: server.Request, path: str) -> bytes:
        """``/_mock/requests`` and ``/_mock/stats``; never recorded."""
        method = request.method
        if path.endswith("/_mock/requests"):
            if method == b"DELETE":
                return _send_json(request, {"cleared": self.state.reset()})
            if method in (b"GET", b"HEAD"):
                return _send_json(request, list(self.state.requests))
            return self._not_allowed(request, b"GET, DELETE")
        if path.endswith("/_mock/stats"):
            if method in (b"GET", b"HEAD"):
                return _send_json(request, self.state.stats())
            return self._not_allowed(request, b"GET")
        return _send_error(request, 404, f"Unknown path: {path}")


def _count_prompt_words(messages: Any) -> int:
    """A rough prompt "token" count: words in the string message contents."""
    if not isinstance(messages, list):
        return 0
    return sum(
        len(message["content"].split())
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), str)
    )


class _MockChannel(http.HTTPChannel):
    """An HTTP/1.1 channel that keeps the site's open-connection gauge."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.state.open_connections += 1

    def connectionLost(self, reason: Failure) -> None:
        self.factory.state.open_connections -= 1
        super().connectionLost(reason)


class MockSite(server.Site):
    """A quiet Site: no access log, no factory start/stop messages."""

    noisy = False
    protocol = _MockChannel

    def __init__(self, resource: MockResource, clock: IReactorTime) -> None:
        super().__init__(resource, reactor=clock)
        self.state = resource.state

    def startFactory(self) -> None:
        """No access log, so no log file or per-second timestamp timer."""

    def log(self, request: server.Request) -> None:
        """Skip the per-request access log: it is costly and noisy."""


def build_site(
    events: int = DEFAULT_EVENTS,
    event_delay: float = DEFAULT_EVENT_DELAY,
    reply: str = DEFAULT_REPLY,
    clock: IReactorTime | None = None,
) -> MockSite:
    """Build a mock upstream Site with its own state, ready to listen.

    ``clock`` paces the stream events and stamps ``created``; it defaults to
    the global reactor.  The site's counters are at ``site.state``.
    """
    if clock is None:
        from twisted.internet import reactor as clock
    resource = MockResource(MockState(), clock, events, event_delay, reply)
    return MockSite(resource, clock)


def _non_negative(kind: type) -> Any:
    """An argparse type accepting non-negative values of ``kind``."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def main(argv: list[str] | None = None) -> None:
    """Run the mock upstream until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="genai-mock-upstream",
        description="Mock OpenAI-compatible upstream for tests and demos.",
    )
    parser.add_argument("--port", type=_non_negative(int), default=0,
                        help="TCP port, 0 for any free one (default: 0)")
    parser.add_argument("--interface", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--events", type=_non_negative(int), default=DEFAULT_EVENTS,
                        help="content events per stream (default: %(default)s)")
    parser.add_argument("--event-delay", type=_non_negative(float),
                        default=DEFAULT_EVENT_DELAY,
                        help="seconds between stream events (default: %(default)s)")
    parser.add_argument("--reply", default=DEFAULT_REPLY,
                        help="assistant reply text (default: %(default)r)")
    parser.add_argument("--tls-cert", metavar="PEM",
                        help="serve https with this certificate chain and private key (one PEM file)")
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    # Only warnings and errors (e.g. unhandled exceptions) reach stderr.
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
        redirectStandardIO=False,
    )
    site = build_site(args.events, args.event_delay, args.reply, clock=reactor)
    if args.tls_cert:
        from twisted.internet.ssl import PrivateCertificate

        with open(args.tls_cert) as f:
            options = PrivateCertificate.loadPEM(f.read()).options()
        port = reactor.listenSSL(args.port, site, options, interface=args.interface)
        scheme = "https"
    else:
        port = reactor.listenTCP(args.port, site, interface=args.interface)
        scheme = "http"
    host = args.interface if ":" not in args.interface else f"[{args.interface}]"
    print(f"mock upstream listening on {scheme}://{host}:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
