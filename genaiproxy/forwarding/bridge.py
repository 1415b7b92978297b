"""A Responses API request answered through an upstream's chat completions.

A L{genaiproxy.forwarding.call.ForwardCall} for C{POST /v1/responses} whose
upstream does not serve the Responses API (C{RESPONSES_API=chat}, or
C{auto} once the upstream answered 404 or 405 there) holds a
L{ResponsesBridge}: it sends the chat request that
L{genaiproxy.api.responses.chat_request_of} makes of the client's body to
C{/v1/chat/completions}, and turns the answer back into the Responses API:
a whole answer into a C{response} object (L{answer}), a stream event by
event (L{events}, which the stream pump runs each upstream chunk through).
An error answer of the upstream passes through as it came: the same status
and OpenAI error body a Responses endpoint would have sent.
"""

from __future__ import annotations

import json
from typing import Any

from genaiproxy.api import json_bytes, json_object
from genaiproxy.api.responses import (
    BridgedRequest,
    BridgeRequestError,
    ResponsesEventWriter,
    chat_request_of,
    new_item_id,
    response_of,
)

__all__ = ["CHAT_PATH", "BridgeRequestError", "ResponseEvents", "ResponsesBridge"]

# Where a bridged request goes on the upstream.
CHAT_PATH = "/v1/chat/completions"


class ResponseEvents:
    """The Responses events of one bridged stream, as the stream pump's
    rewriter: each upstream chunk in, the events it completes out."""

    __slots__ = ("writer",)

    def __init__(self, writer: ResponsesEventWriter) -> None:
        self.writer = writer

    def feed(self, data: bytes) -> bytes:
        """The events the upstream's next bytes complete."""
        return self.writer.feed(data)

    def flush(self) -> bytes:
        """The end of the answer, once the upstream's stream ended cleanly."""
        return self.writer.finish()

    def fail(self, message: str) -> bytes:
        """C{response.failed}, for a stream that broke upstream."""
        return self.writer.fail(message)


class ResponsesBridge:
    """One Responses request, as the chat request it was made into."""

    __slots__ = ("_created_at", "request")

    def __init__(self, request: BridgedRequest, created_at: int) -> None:
        self.request = request
        self._created_at = created_at

    @classmethod
    def of(cls, raw: bytes, created_at: int) -> ResponsesBridge:
        """The bridge for the client's body C{raw}.

        @raise BridgeRequestError: a body that is not a Responses request a
            chat upstream can serve (answered 400).
        """
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise BridgeRequestError("The request body must be a JSON object.", None) from None
        return cls(chat_request_of(body), created_at)

    @property
    def stream(self) -> bool:
        """The client asked for a stream of events."""
        return self.request.stream

    def chat_body(self, model: str | None = None) -> bytes:
        """The chat completions body, naming C{model} upstream when given
        (a models.yaml alias)."""
        chat = self.request.chat
        if model is not None and model != chat.get("model"):
            chat = {**chat, "model": model}
        return json_bytes(chat)

    def logged(self) -> dict[str, Any]:
        """What the request's log event says of the translation."""
        request = self.request
        fields: dict[str, Any] = {"bridged": "chat"}
        for name in ("left_out", "dropped", "ignored"):
            value = getattr(request, name)
            if value:
                fields[f"bridge_{name}"] = list(value)
        return fields

    def answer(self, body: bytes) -> bytes:
        """The C{response} object for the upstream's whole chat completion
        C{body}, or C{body} as it is when it is not one."""
        completion = json_object(body)
        if completion is None:
            return body
        request = self.request
        return json_bytes(response_of(completion, request.echo, request.tools,
                                      new_item_id("resp"), self._created_at))

    def events(self) -> ResponseEvents:
        """The rewriter of the upstream's chat stream into Responses events."""
        request = self.request
        return ResponseEvents(ResponsesEventWriter(request.echo, request.tools,
                                                   new_item_id("resp"), self._created_at))
