"""Another API's request answered through an upstream's chat completions.

A L{genaiproxy.forwarding.call.ForwardCall} for C{POST /v1/responses} whose
upstream does not serve the Responses API (C{RESPONSES_API=chat}, or
C{auto} once the upstream answered 404 or 405 there) holds a
L{ResponsesBridge}; one for C{POST /v1/messages} (C{MESSAGES_API=chat}) a
L{MessagesBridge}.  Either sends the chat request that the API's translator
(L{genaiproxy.api.responses}, L{genaiproxy.api.messages}) makes of the
client's body to C{/v1/chat/completions}, and turns the answer back into
the client's API: a whole answer (L{ResponsesBridge.answer}), an error
answer (L{ResponsesBridge.error}), a stream event by event
(L{ResponsesBridge.events}, which the stream pump runs each upstream chunk
through).  The Responses API's errors are OpenAI's, so an upstream error
passes through as it came; the Messages API's are Anthropic's shape.
"""

from __future__ import annotations

import json
from typing import Any

from genaiproxy.api import anthropic_error, json_bytes, json_object, usage_of
from genaiproxy.api.messages import (
    BridgedMessages,
    MessagesEventWriter,
    MessagesRequestError,
    message_of,
    new_message_id,
)
from genaiproxy.api.messages import chat_request_of as messages_request_of
from genaiproxy.api.normalize import CHAT_TOKEN_FIELD, apply_route
from genaiproxy.api.responses import (
    BridgedRequest,
    BridgeRequestError,
    ResponsesEventWriter,
    chat_request_of,
    new_item_id,
    response_of,
)

__all__ = ["BRIDGES", "CHAT_PATH", "BridgeEvents", "BridgeRequestError", "MessagesBridge",
           "ResponsesBridge"]

# Where a bridged request goes on the upstream.
CHAT_PATH = "/v1/chat/completions"


def _chat_bytes(chat: dict[str, Any]) -> bytes:
    """The chat request as JSON the upstream can read.

    @raise BridgeRequestError: it holds a number JSON cannot carry (the
        client's C{1e999}, read as infinity), which would go as C{Infinity}.
    """
    try:
        return json.dumps(chat, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise BridgeRequestError("The request holds a number too large for JSON (such as "
                                 "1e999); send a finite number.", None) from None


def _logged(request: BridgedRequest | BridgedMessages) -> dict[str, Any]:
    """The request event's fields for a bridged request: that it was, and
    what of it was left out, dropped or ignored."""
    fields: dict[str, Any] = {"bridged": "chat"}
    for name in ("left_out", "dropped", "ignored"):
        value = getattr(request, name)
        if value:
            fields[f"bridge_{name}"] = list(value)
    return fields


class BridgeEvents:
    """The client API's events of one bridged stream, as the stream pump's
    rewriter: each upstream chunk in, the events it completes out."""

    __slots__ = ("writer",)

    def __init__(self, writer: ResponsesEventWriter | MessagesEventWriter) -> None:
        self.writer = writer

    def feed(self, data: bytes) -> bytes:
        """The events the upstream's next bytes complete."""
        return self.writer.feed(data)

    @property
    def usage(self) -> dict[str, int] | None:
        """The token counts the upstream's chunks reported (the writer
        reads every chunk: no usage reader need read them again)."""
        return usage_of({"usage": self.writer.usage})

    @property
    def upstream_error(self) -> dict[str, str] | None:
        """The error event the upstream's stream ended with (its C{message}
        and C{code}), when it ended with one."""
        return self.writer.upstream_error

    def flush(self) -> bytes:
        """The end of the answer, once the upstream's stream ended cleanly."""
        return self.writer.finish()

    def fail(self, message: str) -> bytes:
        """The API's failure event (C{response.failed}, Anthropic's C{error}),
        for a stream that broke upstream."""
        return self.writer.fail(message)


class ResponsesBridge:
    """One Responses request, as the chat request it was made into."""

    __slots__ = ("_created_at", "request")

    def __init__(self, request: BridgedRequest, created_at: int) -> None:
        self.request = request
        self._created_at = created_at

    @classmethod
    def of(cls, body: Any, created_at: int) -> ResponsesBridge:
        """The bridge for the client's parsed C{body} (None: not JSON).

        @raise BridgeRequestError: a body that is not a Responses request a
            chat upstream can serve (answered 400).
        """
        return cls(chat_request_of(body), created_at)

    @property
    def stream(self) -> bool:
        """The client asked for a stream of events."""
        return self.request.stream

    def chat_body(self, model: str | None = None, cap: int | None = None) -> bytes:
        """The chat completions body, naming C{model} upstream when given
        (a models.yaml alias: a gpt-5 model's rules apply to it), its tokens
        capped at C{cap} when given."""
        chat = self.request.chat
        if (model is not None and model != chat.get("model")) or cap is not None:
            chat = dict(chat)
            apply_route(chat, CHAT_TOKEN_FIELD, model, cap)
        return _chat_bytes(chat)

    def logged(self) -> dict[str, Any]:
        """What the request's log event says of the translation."""
        return _logged(self.request)

    def answer(self, body: bytes) -> bytes:
        """The C{response} object for the upstream's whole chat completion
        C{body}, or C{body} as it is when it is not one."""
        completion = json_object(body)
        if completion is None:
            return body
        request = self.request
        return json_bytes(response_of(completion, request.echo, request.tools,
                                      new_item_id("resp"), self._created_at))

    def error(self, status: int, body: bytes) -> bytes:
        """The upstream's error answer, as the client gets it: as it came."""
        return body

    def events(self) -> BridgeEvents:
        """The rewriter of the upstream's chat stream into Responses events."""
        request = self.request
        return BridgeEvents(ResponsesEventWriter(request.echo, request.tools,
                                                 new_item_id("resp"), self._created_at))


class MessagesBridge:
    """One Messages request, as the chat request it was made into."""

    __slots__ = ("_id", "request")

    def __init__(self, request: BridgedMessages) -> None:
        self.request = request
        self._id = new_message_id()

    @classmethod
    def of(cls, body: Any, created_at: int) -> MessagesBridge:
        """The bridge for the client's parsed C{body} (None: not JSON).

        @raise BridgeRequestError: a body that is not a Messages request a
            chat upstream can serve (answered 400, in Anthropic's shape).
        """
        try:
            return cls(messages_request_of(body))
        except (MessagesRequestError, RecursionError) as e:
            message = e.message if isinstance(e, MessagesRequestError) else (
                "The request body is nested too deeply.")
            raise BridgeRequestError(message, None) from None

    @property
    def stream(self) -> bool:
        """The client asked for a stream of events."""
        return self.request.stream

    def chat_body(self, model: str | None = None, cap: int | None = None) -> bytes:
        """The chat completions body, naming C{model} upstream when given,
        its tokens capped at C{cap} when given."""
        return _chat_bytes(self.request.chat_for(model or self.request.model, cap))

    def logged(self) -> dict[str, Any]:
        """What the request's log event says of the translation."""
        return _logged(self.request)

    def answer(self, body: bytes) -> bytes:
        """The C{message} for the upstream's whole chat completion C{body}."""
        completion = json_object(body)
        if completion is None:
            return body
        request = self.request
        return json_bytes(message_of(completion, request.model, self._id,
                                     request.stop_sequences))

    def error(self, status: int, body: bytes) -> bytes:
        """The upstream's error answer in Anthropic's shape (its message kept)."""
        return json_bytes(anthropic_error(status, json_object(body) or {}))

    def events(self) -> BridgeEvents:
        """The rewriter of the upstream's chat stream into Messages events."""
        request = self.request
        return BridgeEvents(MessagesEventWriter(request.model, self._id,
                                                stop_sequences=request.stop_sequences))


# The bridge of each API a route may bridge (L{genaiproxy.api.Route.bridge}).
BRIDGES: dict[str, type[ResponsesBridge] | type[MessagesBridge]] = {
    "responses": ResponsesBridge, "messages": MessagesBridge}
