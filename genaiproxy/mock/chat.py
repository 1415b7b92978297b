"""The mock upstream's chat completions, plain or streamed (``data:`` SSE
ending in ``[DONE]``): a text reply, or, as a tool-using model, the calls
of the functions the request offers, and an answer quoting a tool's output;
with ``reasoning_content`` (or ``reasoning``) before either when asked for.

What is called, and how it is streamed, is in L{genaiproxy.mock.tool_calls};
the controls are the C{--tool-call}, C{--interleave-tool-calls},
C{--reasoning} and C{--reasoning-field} options and their X-Mock-* headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.web import server

from genaiproxy.mock.apis import MockAPIs
from genaiproxy.mock.controls import MockOptions
from genaiproxy.mock.payloads import BadRequest, count_words, data_event, include_usage, split_reply
from genaiproxy.mock.plumbing import flag_header, send_json, text_header
from genaiproxy.mock.tool_calls import (
    REASONING_FIELDS,
    ToolCall,
    call_ids,
    call_words,
    calls_to_make,
    chat_usage,
    parse_tool_call,
    quote_tool_outputs,
    tool_call_deltas,
    tool_calls_message,
    tool_outputs,
)


def _exact_pieces(text: str, events: int) -> list[str]:
    """C{text} in up to C{events} word-ish pieces that join back to exactly
    it (fewer when it has fewer words: unlike the reply's, these never
    repeat words to fill the events)."""
    return split_reply(text, min(events, max(1, len(text.split()))))


def _reasoning_deltas(model: ChatModel, events: int) -> list[dict[str, Any]]:
    """The deltas of the reasoning, before the answer's: C{content} null and
    a piece of the reasoning each (none without reasoning)."""
    if not model.reasoning:
        return []
    return [{"content": None, model.reasoning_field: piece}
            for piece in _exact_pieces(model.reasoning, events)]


def _call_deltas(
    model: ChatModel, calls: list[ToolCall], ids: list[str], events: int
) -> list[dict[str, Any]]:
    """The deltas of a streamed answer that calls tools: the reasoning, then
    one C{tool_calls} entry per chunk, the first with C{content} null."""
    deltas = _reasoning_deltas(model, events)
    entries = tool_call_deltas(calls, ids, events, model.interleave)
    deltas += [{"tool_calls": [entry]} for entry in entries]
    opening = len(deltas) - len(entries)
    deltas[opening] = {"content": None, **deltas[opening]}
    return deltas


@dataclass(frozen=True)
class ChatModel:
    """How the chat model answers one request: the options, or the
    request's X-Mock-* headers where it has them.

    @ivar tool_calls: the calls to make, of those the request offers.
    @ivar interleave: stream several calls' pieces taking turns by index.
    @ivar reasoning: the reasoning text to send before the answer, if any.
    @ivar reasoning_field: the field that carries it.
    """

    tool_calls: tuple[ToolCall, ...]
    interleave: bool
    reasoning: str | None
    reasoning_field: str

    @classmethod
    def for_request(cls, request: server.Request, options: MockOptions) -> ChatModel:
        """The options, overridden by C{X-Mock-Tool-Call} (repeatable),
        C{X-Mock-Interleave-Tool-Calls}, C{X-Mock-Reasoning} (empty: none)
        and C{X-Mock-Reasoning-Field}; a malformed header is a 400."""
        tool_calls = options.tool_calls
        raw_calls = request.requestHeaders.getRawHeaders(b"x-mock-tool-call")
        if raw_calls is not None:
            try:
                tool_calls = tuple(
                    parse_tool_call(value.decode("utf-8", "replace")) for value in raw_calls
                )
            except ValueError as error:
                raise BadRequest(f"X-Mock-Tool-Call: {error}") from None
        reasoning = text_header(request, b"x-mock-reasoning")
        if reasoning is None:
            reasoning = options.reasoning
        field = text_header(request, b"x-mock-reasoning-field") or options.reasoning_field
        if field not in REASONING_FIELDS:
            raise BadRequest(f"X-Mock-Reasoning-Field must be one of {', '.join(REASONING_FIELDS)}")
        return cls(
            tool_calls,
            flag_header(request, b"x-mock-interleave-tool-calls", options.interleave_tool_calls),
            reasoning or None,
            field,
        )


class MockChat(MockAPIs):
    """The chat completions renderer, beside the other APIs."""

    options: MockOptions

    def _render_chat(
        self,
        request: server.Request,
        payload: dict[str, Any],
        stream: bool,
        drop_after: int | None,
    ) -> bytes | int:
        """A chat completion, plain or streamed: tool calls when the model
        is told to make some the request offers, else the reply (or the
        quote of the tool outputs that end the conversation)."""
        model = ChatModel.for_request(request, self.options)
        events, delay = self._pacing(request)
        number = self._next_number()
        base = self._completion_base("chatcmpl", "chat.completion", payload, number)
        messages = payload.get("messages")
        calls = calls_to_make(payload, model.tool_calls)
        ids = call_ids(number, calls)
        outputs = tool_outputs(messages)
        text = self.reply if outputs is None else quote_tool_outputs(outputs)
        reasoning = model.reasoning
        usage = chat_usage(
            count_words(messages),
            call_words(calls) if calls else len(text.split()),
            len(reasoning.split()) if reasoning else 0,
        )
        finish_reason = "tool_calls" if calls else "stop"
        if stream:
            base = {**base, "object": "chat.completion.chunk"}
            # As OpenAI does: with a usage chunk asked for, every other chunk
            # says "usage": null.
            no_usage = {"usage": None} if include_usage(payload) else {}

            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                return data_event({**base, "choices": [choice], **no_usage})

            if calls:
                deltas = _call_deltas(model, calls, ids, events)
            else:  # the quote whole (no repeated words), or the reply
                pieces = split_reply(text, events) if outputs is None else _exact_pieces(text, events)
                deltas = [*_reasoning_deltas(model, events), *({"content": p} for p in pieces)]
            if deltas:
                deltas[0] = {"role": "assistant", **deltas[0]}
            return self._data_stream(
                request, payload, base, [chunk(delta) for delta in deltas],
                chunk({}, finish_reason), usage, delay, drop_after,
            )

        message: dict[str, Any] = {"role": "assistant", "content": None if calls else text}
        if calls:
            message["tool_calls"] = tool_calls_message(calls, ids)
        else:
            bare = self._bare_reply(request, text)
            if bare is not None:
                return bare
        if reasoning:
            message[model.reasoning_field] = reasoning
        choice = {"index": 0, "message": message, "finish_reason": finish_reason}
        return send_json(request, {**base, "choices": [choice], "usage": usage})
