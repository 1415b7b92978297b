"""The mock upstream's APIs other than chat: legacy completions (plain,
or ``data:`` SSE ending in ``[DONE]``), the Responses API (plain, or its
typed event stream), embeddings, and for any other ``/v1`` path an echo of
the request or a large download.

L{MockAPIs} holds them and the helpers chat shares
(L{genaiproxy.mock.chat.MockChat} extends it); the resource in
L{genaiproxy.mock.server} routes a request here once the failure controls
let it through.  The objects themselves are built in
L{genaiproxy.mock.payloads}.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web import server

from genaiproxy.mock.payloads import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_MODEL,
    EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_DIMENSIONS,
    BadRequest,
    data_event,
    embedding_inputs,
    embedding_vector,
    include_usage,
    pack_floats,
    requested_model,
    response_events,
    response_object,
    split_reply,
    usage_for,
)
from genaiproxy.mock.plumbing import MockState, PacedStream, float_header, int_header, mock_header, send_json


class MockAPIs:
    """The API renderers; state, clock, pacing and reply are the resource's."""

    state: MockState
    clock: IReactorTime
    events: int
    event_delay: float
    reply: str

    def _next_number(self) -> int:
        """A fresh number for the ids of a generated object."""
        self.state.completion_count += 1
        return self.state.completion_count

    def _pacing(self, request: server.Request) -> tuple[int, float]:
        """The stream's event count and delay: site defaults or headers."""
        events = int_header(request, b"x-mock-events")
        delay = float_header(request, b"x-mock-event-delay")
        return (
            self.events if events is None else events,
            self.event_delay if delay is None else delay,
        )

    def _bare_reply(self, request: server.Request, text: str | None = None) -> bytes | None:
        """The reply (or C{text}) as plain bytes if X-Mock-Content-Type asks
        for it."""
        content_type = mock_header(request, b"x-mock-content-type")
        if not content_type:
            return None
        request.setHeader(b"content-type", content_type.encode("latin-1"))
        return (self.reply if text is None else text).encode()

    def _completion_base(
        self, id_prefix: str, kind: str, payload: dict[str, Any], number: int | None = None
    ) -> dict[str, Any]:
        """The fields every chat or legacy completion object starts with
        (numbered C{number}, or afresh)."""
        return {
            "id": f"{id_prefix}-mock-{self._next_number() if number is None else number}",
            "object": kind,
            "created": int(self.clock.seconds()),
            "model": requested_model(payload, DEFAULT_MODEL),
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
        if include_usage(payload):
            tail += data_event({**base, "choices": [], "usage": usage})
        tail += b"data: [DONE]\n\n"
        PacedStream(self.state, self.clock, request, chunks, tail, delay, drop_after).start()
        return server.NOT_DONE_YET

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
        usage = usage_for(payload.get("prompt"), self.reply)

        def choice(text: str, finish_reason: str | None) -> dict[str, Any]:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}

        if stream:
            no_usage = {"usage": None} if include_usage(payload) else {}
            chunks = [
                data_event({**base, "choices": [choice(piece, None)], **no_usage})
                for piece in split_reply(self.reply, events)
            ]
            last = data_event({**base, "choices": [choice("", "stop")], **no_usage})
            return self._data_stream(request, payload, base, chunks, last, usage, delay, drop_after)

        bare = self._bare_reply(request)
        if bare is not None:
            return bare
        return send_json(
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
        response = response_object(
            payload, self._next_number(), int(self.clock.seconds()), "".join(pieces)
        )
        if stream:
            head, chunks, tail = response_events(response, pieces)
            PacedStream(
                self.state, self.clock, request, chunks, tail, delay, drop_after, head
            ).start()
            return server.NOT_DONE_YET
        bare = self._bare_reply(request)
        if bare is not None:
            return bare
        return send_json(request, response)

    def _render_embeddings(
        self, request: server.Request, payload: dict[str, Any]
    ) -> bytes:
        """An embedding list: one hash-derived vector per input."""
        inputs = embedding_inputs(payload.get("input"))
        dimensions = payload.get("dimensions", EMBEDDING_DIMENSIONS)
        if type(dimensions) is not int or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
            raise BadRequest(
                f"'dimensions' must be an integer from 1 to {MAX_EMBEDDING_DIMENSIONS}"
            )
        encoding = payload.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise BadRequest("'encoding_format' must be 'float' or 'base64'")
        data = []
        for index, (text, _) in enumerate(inputs):
            floats = embedding_vector(text, dimensions)
            vector: list[float] | str = floats
            if encoding == "base64":
                vector = pack_floats(floats)
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(count for _, count in inputs)
        return send_json(
            request,
            {
                "object": "list",
                "data": data,
                "model": requested_model(payload, DEFAULT_EMBEDDING_MODEL),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
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

    @staticmethod
    def _render_bulk(request: server.Request, size: int) -> int:
        """C{size} bytes of a download, written in 1 MiB pieces."""
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % size)
        piece = b"\x5a" * (1 << 20)
        for start in range(0, size, len(piece)):
            request.write(piece[: size - start])
        request.finish()
        return server.NOT_DONE_YET
