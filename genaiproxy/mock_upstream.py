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
``X-Mock-Gzip: 1`` (with ``Accept-Encoding: gzip``)
    gzip the answer (``Content-Encoding: gzip``, no ``Content-Length``),
    flushed after every write so that stream events still go out one by one.

``GET /_mock/requests`` lists the last requests received, each body cut to
its first 64 KiB (``body_length`` has the full size); ``DELETE`` clears them
and the counters.  ``GET /_mock/stats`` reports counters.

Run it with ``python -m genaiproxy.mock_upstream`` (see ``--help``); it prints
``mock upstream listening on http://HOST:PORT`` once listening, or embed it
with :func:`build_site`.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorSSL,
    IReactorTime,
    ISystemHandle,
    ITCPTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import EncodingResourceWrapper, Resource

DEFAULT_EVENTS = 5
DEFAULT_EVENT_DELAY = 0.05
DEFAULT_REPLY = "Hello from the mock upstream."
MODEL_IDS = ("gpt-4.1", "gpt-5")
DEFAULT_MODEL = MODEL_IDS[0]
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 4096
REQUEST_LOG_SIZE = 200
# Bytes of each request body kept in the request log.
REQUEST_LOG_BODY_LIMIT = 64 * 1024

_JSON = b"application/json"
_SSE = b"text/event-stream; charset=utf-8"
_WORD = re.compile(r"\s*\S+\s*")
# Reason phrases Twisted's http.RESPONSES lacks but clients may show.
_EXTRA_REASONS = {422: b"Unprocessable Content", 429: b"Too Many Requests"}


# A text-generating renderer: (request, JSON body, stream?, drop-after).
_Generator = Callable[[server.Request, dict[str, Any], bool, int | None], bytes | int]


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
    connections_accepted: int = 0
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
        self.connections_accepted = 0
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
            "connections_accepted": self.connections_accepted,
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
        raise _BadRequest(f"{name.decode()} must be an integer, got {text!r}") from None
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
        raise _BadRequest(f"{name.decode()} must be a number, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise _BadRequest(f"{name.decode()} must not be negative")
    return value


def _connection(request: server.Request) -> ITCPTransport:
    """The connection C{request} came on (TCP, or TLS over it)."""
    return cast(ITCPTransport, request.channel.transport)


def _abort(request: server.Request) -> None:
    """Reset the connection now, dropping anything not yet sent."""
    _connection(request).abortConnection()


def _reset_after_flush(request: server.Request) -> None:
    """Reset the connection once what was already written has been sent.

    ``abortConnection()`` would throw away the events still sitting in the
    transport's write buffer, so instead close with SO_LINGER 0: Twisted
    flushes, then the kernel sends a RST instead of a graceful close.
    """
    transport = _connection(request)
    try:
        handle = cast(ISystemHandle, transport).getHandle()
        cast(socket.socket, handle).setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    except (AttributeError, OSError):
        pass  # not a real socket (e.g. a test transport): plain close
    transport.loseConnection()


class _Stream:
    """One SSE stream, paced by the clock.

    ``head`` (events that carry no content) goes out with the first content
    chunk, each further chunk after ``delay``, then ``tail``.  Events are
    written from timer callbacks as they fall due; when the client goes away
    the pending timer is cancelled and nothing more is written to the
    request.
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
        head: bytes = b"",
    ) -> None:
        self._state = state
        self._clock = clock
        self._request = request
        self._chunks = chunks
        self._tail = tail
        self._delay = delay
        self._drop_after = drop_after
        self._head = head
        self._sent = 0
        self._call: IDelayedCall | None = None
        self._done = False

    def start(self) -> None:
        """Send headers and the first event now, schedule the rest."""
        self._state.streams_started += 1
        request = self._request
        request.setResponseCode(200)
        if _header(request, b"x-mock-no-content-type") in (None, "", "0"):
            request.setHeader(b"content-type", _SSE)
        else:
            request.defaultContentType = None  # twisted.web would add text/html
        request.setHeader(b"cache-control", b"no-cache")
        request.notifyFinish().addErrback(self._client_gone)
        request.write(self._head)  # headers go out even if no event follows
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
        """Apply the failure controls, then answer the API path."""
        fail_first = _int_header(request, b"x-mock-fail-first")
        request_id = _header(request, b"x-request-id")
        if fail_first and request_id is not None:
            failed = self.state.failed_by_request_id.get(request_id, 0)
            if failed < fail_first:
                self.state.failed_by_request_id[request_id] = failed + 1
                if _header(request, b"x-mock-fail-mid-body") in (None, "", "0"):
                    _abort(request)
                else:  # headers and the start of a body, then the reset
                    request.setResponseCode(200)
                    request.setHeader(b"content-type", _JSON)
                    request.setHeader(b"content-length", b"1000")
                    request.write(b'{"partial": ')
                    _reset_after_flush(request)
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
        under_v1 = "/v1/" in path
        route = path[:-1] if path != "/" and path.endswith("/") and under_v1 else path
        generate = self._generator(route)
        if generate is not None:
            if method != b"POST":
                return self._not_allowed(request, b"POST")
            payload = _json_object(body)
            stream = payload.get("stream") is True
            if drop_after is not None and not stream:
                _abort(request)
                return server.NOT_DONE_YET
            return generate(request, payload, stream, drop_after)
        if drop_after is not None:
            _abort(request)
            return server.NOT_DONE_YET
        if route.endswith("/v1/embeddings"):
            if method != b"POST":
                return self._not_allowed(request, b"POST")
            return self._render_embeddings(request, _json_object(body))
        if route.endswith("/v1/models"):
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            models = [
                {"id": model, "object": "model", "created": 0, "owned_by": "mock"}
                for model in MODEL_IDS
            ]
            return _send_json(request, {"object": "list", "data": models})
        if route.endswith("/v1/health"):
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            return _send_json(request, {"status": "ok"})
        bulk = _int_header(request, b"x-mock-body-bytes")
        if under_v1 and bulk is not None:
            return self._render_bulk(request, bulk)
        if under_v1:
            return self._render_echo(request, path, body)
        if route.endswith("/"):
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"mock upstream ok"
        return _send_error(request, 404, f"Unknown path: {path}")

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

    def _next_number(self) -> int:
        """A fresh number for the ids of a generated object."""
        self.state.completion_count += 1
        return self.state.completion_count

    def _pacing(self, request: server.Request) -> tuple[int, float]:
        """The stream's event count and delay: site defaults or headers."""
        events = _int_header(request, b"x-mock-events")
        delay = _float_header(request, b"x-mock-event-delay")
        return (
            self.events if events is None else events,
            self.event_delay if delay is None else delay,
        )

    def _bare_reply(self, request: server.Request) -> bytes | None:
        """The reply as plain bytes if X-Mock-Content-Type asks for it."""
        content_type = _header(request, b"x-mock-content-type")
        if not content_type:
            return None
        request.setHeader(b"content-type", content_type.encode("latin-1"))
        return self.reply.encode()

    def _completion_base(self, id_prefix: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The fields every chat or legacy completion object starts with."""
        return {
            "id": f"{id_prefix}-mock-{self._next_number()}",
            "object": kind,
            "created": int(self.clock.seconds()),
            "model": _model(payload, DEFAULT_MODEL),
        }

    def _data_stream(
        self,
        request: server.Request,
        payload: dict[str, Any],
        base: dict[str, Any],
        chunks: list[bytes],
        last: bytes,
        usage: dict[str, Any],
        delay: float,
        drop_after: int | None,
    ) -> int:
        """Stream C{chunks}, then C{last}, the usage chunk when asked for, and [DONE]."""
        tail = last
        if _include_usage(payload):
            tail += _data_event({**base, "choices": [], "usage": usage})
        tail += b"data: [DONE]\n\n"
        _Stream(self.state, self.clock, request, chunks, tail, delay, drop_after).start()
        return server.NOT_DONE_YET

    def _render_chat(
        self,
        request: server.Request,
        payload: dict[str, Any],
        stream: bool,
        drop_after: int | None,
    ) -> bytes | int:
        """A chat completion, plain or streamed."""
        events, delay = self._pacing(request)
        base = self._completion_base("chatcmpl", "chat.completion", payload)
        usage = _usage(payload.get("messages"), self.reply)
        if stream:
            base = {**base, "object": "chat.completion.chunk"}

            def delta(content: dict[str, str], finish_reason: str | None) -> bytes:
                choice = {"index": 0, "delta": content, "finish_reason": finish_reason}
                return _data_event({**base, "choices": [choice]})

            pieces = split_reply(self.reply, events)
            chunks = [delta({"content": piece}, None) for piece in pieces[1:]]
            if pieces:
                chunks.insert(0, delta({"role": "assistant", "content": pieces[0]}, None))
            return self._data_stream(
                request, payload, base, chunks, delta({}, "stop"), usage, delay, drop_after
            )

        bare = self._bare_reply(request)
        if bare is not None:
            return bare
        message = {"role": "assistant", "content": self.reply}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return _send_json(request, {**base, "choices": [choice], "usage": usage})

    def _render_completions(
        self,
        request: server.Request,
        payload: dict[str, Any],
        stream: bool,
        drop_after: int | None,
    ) -> bytes | int:
        """A legacy ``text_completion``, plain or streamed like chat."""
        events, delay = self._pacing(request)
        base = self._completion_base("cmpl", "text_completion", payload)
        usage = _usage(payload.get("prompt"), self.reply)

        def choice(text: str, finish_reason: str | None) -> dict[str, Any]:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}

        if stream:
            chunks = [
                _data_event({**base, "choices": [choice(piece, None)]})
                for piece in split_reply(self.reply, events)
            ]
            last = _data_event({**base, "choices": [choice("", "stop")]})
            return self._data_stream(request, payload, base, chunks, last, usage, delay, drop_after)

        bare = self._bare_reply(request)
        if bare is not None:
            return bare
        return _send_json(
            request, {**base, "choices": [choice(self.reply, "stop")], "usage": usage}
        )

    def _render_responses(
        self,
        request: server.Request,
        payload: dict[str, Any],
        stream: bool,
        drop_after: int | None,
    ) -> bytes | int:
        """A Responses API ``response``, plain or as its typed event stream."""
        events, delay = self._pacing(request)
        pieces = split_reply(self.reply, events) if stream else [self.reply]
        response = _response_object(
            payload, self._next_number(), int(self.clock.seconds()), "".join(pieces)
        )
        if stream:
            head, chunks, tail = _response_events(response, pieces)
            _Stream(
                self.state, self.clock, request, chunks, tail, delay, drop_after, head
            ).start()
            return server.NOT_DONE_YET
        bare = self._bare_reply(request)
        if bare is not None:
            return bare
        return _send_json(request, response)

    def _render_embeddings(
        self, request: server.Request, payload: dict[str, Any]
    ) -> bytes:
        """An embedding list: one hash-derived vector per input."""
        inputs = _embedding_inputs(payload.get("input"))
        dimensions = payload.get("dimensions", EMBEDDING_DIMENSIONS)
        if type(dimensions) is not int or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
            raise _BadRequest(
                f"'dimensions' must be an integer from 1 to {MAX_EMBEDDING_DIMENSIONS}"
            )
        encoding = payload.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _BadRequest("'encoding_format' must be 'float' or 'base64'")
        data = []
        for index, (text, _) in enumerate(inputs):
            floats = embedding_vector(text, dimensions)
            vector: list[float] | str = floats
            if encoding == "base64":
                vector = _pack_floats(floats)
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(count for _, count in inputs)
        return _send_json(
            request,
            {
                "object": "list",
                "data": data,
                "model": _model(payload, DEFAULT_EMBEDDING_MODEL),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _render_echo(self, request: server.Request, path: str, body: bytes) -> bytes:
        """Describe the request received, for any other ``/v1/`` path."""
        _, _, query = request.uri.partition(b"?")
        return _send_json(
            request,
            {
                "object": "mock.echo",
                "method": request.method.decode("latin-1"),
                "path": path,
                "query": query.decode("utf-8", "replace"),
                "body_bytes": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "content_type": _header(request, b"content-type"),
            },
        )

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


def _json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise _BadRequest("Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise _BadRequest("Request body must be a JSON object")
    return payload


def _model(payload: dict[str, Any], default: str) -> str:
    """The requested model, echoed back as real upstreams do."""
    model = payload.get("model")
    return model if isinstance(model, str) else default


def _include_usage(payload: dict[str, Any]) -> bool:
    """Whether a chat or legacy stream should end with a usage chunk."""
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _count_words(value: Any) -> int:
    """A rough "token" count: words in the strings of a prompt.

    Takes a plain string, a list of strings, or chat messages / Responses
    input items whose ``content``, ``text`` or ``output`` hold the text.
    """
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_count_words(value.get(key)) for key in ("content", "text", "output"))
    return 0


def _usage(prompt: Any, reply: str) -> dict[str, int]:
    """Chat/legacy usage: prompt and reply word counts."""
    prompt_tokens, completion_tokens = _count_words(prompt), len(reply.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _data_event(payload: dict[str, Any]) -> bytes:
    """One ``data:``-only SSE event (chat and legacy completions)."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _echoed(payload: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any) -> Any:
    """A request field the Responses API echoes back, if of the right type
    (exact types, so that a bool is no number)."""
    value = payload.get(name)
    return value if type(value) in kinds else default


def _response_object(
    payload: dict[str, Any], number: int, created: int, text: str
) -> dict[str, Any]:
    """A completed Responses API ``response`` holding one message of ``text``.

    Shaped like the real API's (the request's settings echoed, nulls where
    unused) so that the openai SDKs parse it and ``output_text`` is ``text``.
    """
    message = {
        "type": "message",
        "id": f"msg_mock_{number}",
        "status": "completed",
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        ],
    }
    input_tokens = _count_words(payload.get("input")) + _count_words(
        payload.get("instructions")
    )
    output_tokens = len(text.split())
    return {
        "id": f"resp_mock_{number}",
        "object": "response",
        "created_at": created,
        "status": "completed",
        "background": False,
        "completed_at": created,
        "error": None,
        "incomplete_details": None,
        "instructions": _echoed(payload, "instructions", (str, list), None),
        "max_output_tokens": _echoed(payload, "max_output_tokens", (int,), None),
        "model": _model(payload, DEFAULT_MODEL),
        "output": [message],
        "parallel_tool_calls": _echoed(payload, "parallel_tool_calls", (bool,), True),
        "previous_response_id": _echoed(payload, "previous_response_id", (str,), None),
        "reasoning": _echoed(payload, "reasoning", (dict,), {"effort": None, "summary": None}),
        "service_tier": "default",
        "store": _echoed(payload, "store", (bool,), True),
        "temperature": _echoed(payload, "temperature", (int, float), 1.0),
        "text": _echoed(payload, "text", (dict,), {"format": {"type": "text"}}),
        "tool_choice": _echoed(payload, "tool_choice", (str, dict), "auto"),
        "tools": _echoed(payload, "tools", (list,), []),
        "top_p": _echoed(payload, "top_p", (int, float), 1.0),
        "truncation": _echoed(payload, "truncation", (str,), "disabled"),
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "user": _echoed(payload, "user", (str,), None),
        "metadata": _echoed(payload, "metadata", (dict,), {}),
    }


def _response_events(
    response: dict[str, Any], pieces: list[str]
) -> tuple[bytes, list[bytes], bytes]:
    """The Responses API stream of ``response``: head, deltas and tail.

    Each event is ``event: TYPE`` plus ``data: JSON`` carrying the same
    ``type`` and a ``sequence_number`` counting from 0.  The stream opens
    with the response ``in_progress`` and empty, adds the message and its
    text part, sends one ``response.output_text.delta`` per piece, closes the
    part and the message and ends with ``response.completed`` (no
    ``[DONE]``: the real API sends none).
    """
    numbers = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(numbers), **fields}
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), json.dumps(data).encode())

    message = response["output"][0]
    part = message["content"][0]
    pending = {
        **response,
        "status": "in_progress",
        "completed_at": None,
        "output": [],
        "usage": None,
    }
    where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    head = (
        event("response.created", response=pending)
        + event("response.in_progress", response=pending)
        + event(
            "response.output_item.added",
            output_index=0,
            item={**message, "status": "in_progress", "content": []},
        )
        + event("response.content_part.added", **where, part={**part, "text": ""})
    )
    chunks = [
        event("response.output_text.delta", **where, delta=piece, logprobs=[])
        for piece in pieces
    ]
    tail = (
        event("response.output_text.done", **where, text=part["text"], logprobs=[])
        + event("response.content_part.done", **where, part=part)
        + event("response.output_item.done", output_index=0, item=message)
        + event("response.completed", response=response)
    )
    return head, chunks, tail


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """The inputs of an embeddings request as (text to hash, token count).

    ``input`` may be a string, a list of strings, a token array or a list of
    token arrays (hashed as their JSON text).
    """
    if isinstance(value, str):
        return [(value, _count_words(value))]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return [(item, _count_words(item)) for item in value]
        if all(type(item) is int for item in value):
            return [(json.dumps(value), len(value))]
        if all(
            isinstance(item, list) and item and all(type(token) is int for token in item)
            for item in value
        ):
            return [(json.dumps(item), len(item)) for item in value]
    raise _BadRequest(
        "'input' must be a string, a list of strings or of token arrays, not empty"
    )


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit-length vector for ``text``, from its SHAKE-256.

    The values are exact float32 values, so the ``float`` encoding and the
    decoded ``base64`` one give equal lists.
    """
    raw = hashlib.shake_256(text.encode("utf-8", "surrogatepass")).digest(4 * dimensions)
    values = [number / 2**31 - 1.0 for number in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(value / norm for value in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


def _pack_floats(vector: list[float]) -> str:
    """The ``base64`` embedding encoding: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


class _MockChannel(http.HTTPChannel):
    """An HTTP/1.1 channel that keeps the site's open-connection gauge."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.state.open_connections += 1
        self.factory.state.connections_accepted += 1

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.state.open_connections -= 1
        super().connectionLost(reason)


class _SyncFlushGzip:
    """A twisted.web request encoder that gzips and flushes every write."""

    def __init__(self, request: server.Request) -> None:
        self._request = request
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def encode(self, data: bytes) -> bytes:
        self._request.responseHeaders.removeHeader(b"content-length")
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush()


class _GzipOnRequest:
    """Gzips the answers of requests that carry X-Mock-Gzip and accept gzip."""

    def encoderForRequest(self, request: server.Request) -> _SyncFlushGzip | None:
        if _header(request, b"x-mock-gzip") in (None, "", "0"):
            return None
        accepted = b",".join(request.requestHeaders.getRawHeaders(b"accept-encoding", []))
        if b"gzip" not in accepted.lower():
            return None
        request.responseHeaders.setRawHeaders(b"content-encoding", [b"gzip"])
        return _SyncFlushGzip(request)


class MockSite(server.Site):
    """A quiet Site: no access log, no factory start/stop messages."""

    noisy = False
    # HTTPFactory types its protocol as the HTTP/2-negotiating wrapper only,
    # though buildProtocol works with any HTTPChannel.
    protocol = _MockChannel  # type: ignore[assignment]

    def __init__(self, resource: MockResource, clock: IReactorTime) -> None:
        super().__init__(EncodingResourceWrapper(resource, [_GzipOnRequest()]), reactor=clock)
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
) -> MockSite:
    """Build a mock upstream Site with its own state, ready to listen.

    ``clock`` paces the stream events and stamps ``created``; it defaults to
    the global reactor.  The site's counters are at ``site.state``.
    """
    if clock is None:
        from twisted.internet import reactor

        clock = reactor
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
        # The reactor module is typed with the interfaces every reactor has;
        # the default one also listens with TLS.
        port = cast(IReactorSSL, reactor).listenSSL(args.port, site, options, interface=args.interface)
        scheme = "https"
    else:
        # listenTCP's ServerFactory[Protocol] does not admit twisted.web's Site.
        port = reactor.listenTCP(args.port, site, interface=args.interface)  # type: ignore[arg-type]
        scheme = "http"
    host = args.interface if ":" not in args.interface else f"[{args.interface}]"
    address = cast(IPv4Address | IPv6Address, port.getHost())
    print(f"mock upstream listening on {scheme}://{host}:{address.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
