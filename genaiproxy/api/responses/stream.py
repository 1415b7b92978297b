"""A streamed chat completions answer as a Responses API event stream.

L{ResponsesEventWriter} reads the upstream's chat chunks (server-sent
events, cut anywhere) as they arrive and writes the Responses events they
mean at once, each as C{event: <type>} and C{data: <json>} with a
C{sequence_number} that starts at 0 and grows by one: C{response.created}
and C{response.in_progress} at once (L{start}, or the first bytes fed); for
each item C{response.output_item.added}, its part and delta events and
C{response.output_item.done}; then C{response.completed} (or
C{response.incomplete}, for a C{finish_reason} C{length} or
C{content_filter}) on C{data: [DONE]} or L{finish}, or C{response.failed}
on a failure.  The sequence in full, event by event, as OpenAI's own
streams have it and as Codex reads it, is the table of
docs/how-to/codex-on-chat-only-gateways.md ("The streamed events, one by
one").

Items open in order (C{output_index} as they first appear).  A reasoning or
message item ends when the other kind, or a tool call, begins; tool calls
stay open to the upstream's C{finish_reason}, so that calls interleaved by
C{index} (as some servers send parallel calls; OpenAI sends them one after
another) are each their own item.  At the end every opened item is closed,
even when no C{finish_reason} came.  On a failure the open items are not
closed: a client may act on an C{output_item.done} (Codex starts a tool
call on it), and their text or arguments may be cut; C{response.failed}
lists them C{incomplete}.

Deltas go out as they arrive; kept are only what a C{.done} event or the
final response must repeat: the items' text, arguments and logprobs, which
is bounded by the answer's own size (OpenAI's own C{response.completed}
repeats it all), and one unfinished upstream event, at most L{EVENT_MAX}
bytes.  C{:} comment lines (keep-alives) pass as comments.  Only the
upstream's choice 0 is read (the Responses API has no C{n}).
"""

from __future__ import annotations

from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

from genaiproxy.api.chat_chunks import EVENT_MAX, call_deltas, call_key
from genaiproxy.api.chat_message import arguments_text, reasoning_text
from genaiproxy.api.responses.items import (
    CustomInputDecoder,
    IdMaker,
    call_item,
    finish_status,
    logprobs_of,
    message_item,
    new_item_id,
    output_text_part,
    reasoning_as_summary,
    reasoning_item,
    response_object,
    responses_usage,
)
from genaiproxy.api.responses.tools import ToolNames
from genaiproxy.api.stream_writer import TEXT, ChatStreamWriter, EventTemplate

__all__ = ["EVENT_MAX", "ResponsesEventWriter"]

_CUT_SHORT = ("length", "content_filter")
# The reasoning's events, as a summary or as its text: the part events, the
# text events, the index they carry, the part's type.
_REASONING_EVENTS = {
    True: ("response.reasoning_summary_part", "response.reasoning_summary_text",
           "summary_index", "summary_text"),
    False: ("response.content_part", "response.reasoning_text", "content_index",
            "reasoning_text"),
}


def _part(kind: str, text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    """A message content part: output_text, or refusal."""
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return output_text_part(text, logprobs)


class _Text:
    """An open reasoning item, or an open content part of the message."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.logprobs: list[dict[str, Any]] = []
        self.deltas: EventTemplate = (b"", b"")  # its delta events' (L{_deltas})

    def text(self) -> str:
        return "".join(self.pieces)


class _Call:
    """One tool call, from its first delta; an item once it has a name."""

    def __init__(self) -> None:
        self.call_id = ""
        self.name = ""
        self.pieces: list[str] = []  # the arguments (while unnamed: all of them)
        self.input: list[str] = []  # a custom tool's input, decoded
        self.decoder: CustomInputDecoder | None = None
        self.index = -1  # output_index, once opened
        self.item_id = ""
        self.deltas: EventTemplate = (b"", b"")  # its delta events', once opened


class ResponsesEventWriter(ChatStreamWriter):
    """Writes the Responses events of one streamed chat answer.

    @param echo: the client's Responses request body, whose fields each
        C{response} object repeats.
    @param tools: the declared tool behind each chat function name.
    @param response_id: the response's id (C{resp_...}: L{new_item_id}).
    @param created_at: its creation time, in Unix seconds.
    @param new_id: makes the items' ids (injected in tests).
    @ivar status: None while the answer goes on, then C{completed},
        C{incomplete} or C{failed}.
    @ivar error: what the response failed with (C{code}, C{message}), or None.
    @ivar usage: the upstream's last C{usage} object (chat counts), or None.
    """

    def __init__(self, echo: Mapping[str, Any], tools: ToolNames, response_id: str,
                 created_at: int, new_id: IdMaker = new_item_id) -> None:
        self._echo, self._tools, self._new_id = echo, tools, new_id
        self._response_id, self._created_at = response_id, created_at
        self._summary = reasoning_as_summary(echo)
        self._sequence = 0
        super().__init__()
        self.error: dict[str, str] | None = None
        self.usage: dict[str, Any] | None = None
        self._finish_reason: str | None = None
        # The answer: every item opened (done ones as their final dicts).
        self._items: list[dict[str, Any] | None] = []
        self._reasoning: _Text | None = None
        self._reasoning_at: dict[str, Any] = {}  # its item_id, output_index, ...
        self._message_at: dict[str, Any] = {}  # the open message's item_id, output_index
        self._parts: list[dict[str, Any]] = []  # its content parts, done
        self._part: _Text | None = None
        self._part_kind = ""  # "output_text" or "refusal"
        self._calls: dict[Any, _Call] = {}  # the open ones, by index (or id)
        self._last_call: Any = None

    def _emit(self, kind: str, fields: dict[str, Any]) -> None:
        self._write(kind, {"type": kind, **fields, "sequence_number": self._sequence})
        self._sequence += 1

    def _deltas(self, kind: str, fields: dict[str, Any], **after: Any) -> EventTemplate:
        """The template of the delta events of one item or part: C{fields},
        the C{delta}, the fields C{after} it; the sequence number left out
        (L{_emit_delta} writes it)."""
        head, tail = self._template(kind, {"type": kind, **fields, "delta": TEXT, **after})
        return head, tail[:-len(b"}\n\n")]

    def _emit_delta(self, deltas: EventTemplate, text: str) -> None:
        """One delta event, as L{_emit} would write it."""
        head, tail = deltas
        self._out.append(b'%s%s%s,"sequence_number":%d}\n\n' % (
            head, encode_basestring_ascii(text).encode(), tail, self._sequence))
        self._sequence += 1

    def _response(self, status: str, **fields: Any) -> dict[str, Any]:
        output = [item for item in self._items if item is not None]
        return response_object(self._echo, self._response_id, self._created_at, status,
                               output, **fields)

    def _opening(self) -> None:
        response = self._response("in_progress")
        self._emit("response.created", {"response": response})
        self._emit("response.in_progress", {"response": response})

    # The upstream's side.

    def _chunk(self, chunk: dict[str, Any]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice)

    def _choice(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict) and delta:
            reasoning = reasoning_text(delta)
            if reasoning:
                self._reasoning_delta(reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._part_delta("output_text", content, choice.get("logprobs"))
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._part_delta("refusal", refusal, None)
            for call in call_deltas(delta):
                self._call_delta(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish_reason = finish
            self._close_all("incomplete" if finish in _CUT_SHORT else "completed")

    # Reasoning and message items.

    def _open(self, item: dict[str, Any]) -> int:
        index = len(self._items)
        self._items.append(None)
        self._emit("response.output_item.added", {"output_index": index, "item": item})
        return index

    def _done(self, index: int, item: dict[str, Any]) -> None:
        self._items[index] = item
        self._emit("response.output_item.done", {"output_index": index, "item": item})

    def _reasoning_delta(self, text: str) -> None:
        parts, texts, index_key, part_type = _REASONING_EVENTS[self._summary]
        if self._reasoning is None:
            self._close_message("completed")
            self._reasoning, item_id = _Text(), self._new_id("rs")
            item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": []}
            if not self._summary:
                item["content"] = []
            self._reasoning_at = {"item_id": item_id, "output_index": self._open(item),
                                  index_key: 0}
            self._emit(f"{parts}.added", {**self._reasoning_at,
                                          "part": {"type": part_type, "text": ""}})
            self._reasoning.deltas = self._deltas(f"{texts}.delta", self._reasoning_at)
        self._reasoning.pieces.append(text)
        self._emit_delta(self._reasoning.deltas, text)

    def _close_reasoning(self) -> None:
        if self._reasoning is None:
            return
        parts, texts, _, part_type = _REASONING_EVENTS[self._summary]
        text, at, self._reasoning = self._reasoning.text(), self._reasoning_at, None
        self._emit(f"{texts}.done", {**at, "text": text})
        self._emit(f"{parts}.done", {**at, "part": {"type": part_type, "text": text}})
        self._done(at["output_index"], reasoning_item(at["item_id"], text, self._summary))

    def _part_delta(self, kind: str, text: str, logprobs: Any) -> None:
        if not self._message_at:
            self._close_reasoning()
            item_id = self._new_id("msg")
            index = self._open(message_item(item_id, "in_progress", []))
            self._message_at = {"item_id": item_id, "output_index": index}
        if self._part is not None and self._part_kind != kind:
            self._close_part()
        part = self._part
        if part is None:
            at = {**self._message_at, "content_index": len(self._parts)}
            part = self._part = _Text()
            self._part_kind = kind
            self._emit("response.content_part.added", {**at, "part": _part(kind, "", [])})
            part.deltas = (self._deltas("response.refusal.delta", at) if kind == "refusal"
                           else self._deltas("response.output_text.delta", at, logprobs=[]))
        part.pieces.append(text)
        found = logprobs_of(logprobs) if logprobs and kind != "refusal" else []
        if not found:
            self._emit_delta(part.deltas, text)
            return
        part.logprobs.extend(found)
        at = {**self._message_at, "content_index": len(self._parts)}
        self._emit("response.output_text.delta", {**at, "delta": text, "logprobs": found})

    def _close_part(self) -> None:
        if self._part is None:
            return
        at = {**self._message_at, "content_index": len(self._parts)}
        text, logprobs = self._part.text(), self._part.logprobs
        if self._part_kind == "refusal":
            self._emit("response.refusal.done", {**at, "refusal": text})
        else:
            self._emit("response.output_text.done", {**at, "text": text, "logprobs": logprobs})
        part = _part(self._part_kind, text, logprobs)
        self._emit("response.content_part.done", {**at, "part": part})
        self._parts.append(part)
        self._part = None

    def _close_message(self, status: str) -> None:
        self._close_reasoning()
        if not self._message_at:
            return
        self._close_part()
        at, self._message_at = self._message_at, {}
        self._done(at["output_index"], message_item(at["item_id"], status, self._parts))
        self._parts = []

    # Tool calls.

    def _call_delta(self, delta: dict[str, Any]) -> None:
        key = self._last_call = call_key(delta, self._last_call)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _Call()
        if not call.call_id and isinstance(delta.get("id"), str):
            call.call_id = delta["id"]
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        if not call.name and isinstance(name, str) and name:
            call.name = name
        arguments = arguments_text(function.get("arguments"))
        if call.index < 0:
            call.pieces.append(arguments)
            if call.name:
                self._open_call(call)
        elif arguments:
            self._arguments(call, arguments)

    def _open_call(self, call: _Call) -> None:
        self._close_message("completed")
        tool = self._tools.declared(call.name)
        call.call_id = call.call_id or self._new_id("call")
        call.item_id = self._new_id("ctc" if tool.kind == "custom" else "fc")
        if tool.kind == "custom":
            call.decoder = CustomInputDecoder()
        call.index = self._open(call_item(call.item_id, call.call_id, tool, "", "in_progress", ""))
        call.deltas = self._deltas(
            "response.function_call_arguments.delta" if call.decoder is None
            else "response.custom_tool_call_input.delta",
            {"item_id": call.item_id, "output_index": call.index})
        waiting, call.pieces = "".join(call.pieces), []
        if waiting:
            self._arguments(call, waiting)

    def _arguments(self, call: _Call, arguments: str) -> None:
        call.pieces.append(arguments)
        if call.decoder is None:
            self._emit_delta(call.deltas, arguments)
            return
        text = call.decoder.feed(arguments)
        if text:
            call.input.append(text)
            self._emit_delta(call.deltas, text)

    def _close_call(self, call: _Call, status: str) -> None:
        if call.index < 0:
            self._open_call(call)  # never named: closed all the same
        tool = self._tools.declared(call.name)
        where = {"item_id": call.item_id, "output_index": call.index}
        if call.decoder is None:
            if not call.pieces:  # a call without parameters
                self._arguments(call, "{}")
            arguments = "".join(call.pieces)
            self._emit("response.function_call_arguments.done", {**where, "arguments": arguments})
            self._done(call.index, call_item(call.item_id, call.call_id, tool, arguments, status))
            return
        rest = call.decoder.close()
        if rest:
            call.input.append(rest)
            self._emit_delta(call.deltas, rest)
        text = "".join(call.input)
        self._emit("response.custom_tool_call_input.done", {**where, "input": text})
        self._done(call.index, call_item(call.item_id, call.call_id, tool, "", status, text))

    # Ends.

    def _close_all(self, status: str) -> None:
        self._close_message(status)
        calls = sorted(self._calls.values(), key=lambda call: (call.index < 0, call.index))
        self._calls.clear()
        for call in calls:
            self._close_call(call, status)

    def _end(self) -> None:
        status, details = finish_status(self._finish_reason)
        self._close_all(status)
        self.status = status
        self._emit(f"response.{status}", {"response": self._response(
            status, usage=responses_usage(self.usage), incomplete_details=details)})

    def _failed(self, message: str, code: str) -> None:
        """C{response.failed}, listing the open items as they stand."""
        if self._reasoning is not None:
            at = self._reasoning_at
            self._items[at["output_index"]] = reasoning_item(
                at["item_id"], self._reasoning.text(), self._summary)
        if self._message_at:
            part = [] if self._part is None else [
                _part(self._part_kind, self._part.text(), self._part.logprobs)]
            self._items[self._message_at["output_index"]] = message_item(
                self._message_at["item_id"], "incomplete", self._parts + part)
        for call in self._calls.values():
            if call.index >= 0:
                self._items[call.index] = call_item(
                    call.item_id, call.call_id, self._tools.declared(call.name),
                    "".join(call.pieces), "incomplete", "".join(call.input))
        self.status = "failed"
        self.error = {"code": code, "message": message}
        self._emit("response.failed", {"response": self._response(
            "failed", usage=responses_usage(self.usage), error=self.error)})

