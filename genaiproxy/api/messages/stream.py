"""A streamed chat completions answer as a Messages API event stream.

L{MessagesEventWriter} reads the upstream's chat chunks (server-sent events,
cut anywhere) as they arrive and writes the Messages events they mean at
once, each as C{event: <type>} and C{data: <json>}.  The sequence, as
Anthropic's own streams have it and as the anthropic SDKs' C{MessageStream}
and Claude Code read it:

  ===============================================  ================================
  event                                            when
  ===============================================  ================================
  C{message_start} (empty C{content}), C{ping}     at once (L{start}, or the first
                                                   bytes fed)
  C{content_block_start} (C{index} 0, 1, ...)      a block's first delta
  thinking (C{reasoning_content} / C{reasoning})
  - C{thinking_delta}...                           each reasoning delta
  - C{signature_delta} (L{THINKING_SIGNATURE})     before the block stops
  text (C{content}, and C{refusal})
  - C{text_delta}...                               each content delta
  tool_use (one a C{tool_calls} C{index})
  - C{input_json_delta}...                         the arguments as they arrive
  C{content_block_stop}                            the block's end (see below)
  C{message_delta} (C{stop_reason},                the usage chunk after the
  C{stop_sequence}, C{usage})                      C{finish_reason}, C{[DONE]} or
                                                   L{finish}
  C{message_stop}                                  right after it
  C{error} (never C{message_stop})                 L{fail}, an upstream error
                                                   event, an event too large
  ===============================================  ================================

Blocks never interleave: one is open at a time, and it is stopped before the
next starts.  A thinking or text block ends when a block of another kind
begins.  A tool_use block ends when its arguments' JSON object closes (so
that parallel calls sent one after another, as OpenAI sends them, each
stream as they come), or at the C{finish_reason}.  Whatever arrives for
another block meanwhile (calls interleaved by C{index}, as some servers send
them, or text after an unfinished call) is held, and sent as that block's
one delta once the blocks before it have stopped: what is held is bounded by
the answer's own size.  At the end every block started is stopped, in order,
even when the upstream sent no C{finish_reason}.  Claude Code acts on a
block as soon as it stops, so a call is never stopped while its arguments
may still grow, and on a failure the open block is not stopped at all.

A call's arguments are sent as they come when they begin as a JSON object,
and the stream trusts the upstream's text from there on; pieces after the
object closed are left out.  Arguments that begin otherwise are held and
sent whole at the block's end as the object L{tool_input} makes of them, as
the unstreamed answer has it; a call whose arguments never came gets C{{}}.

C{message_start} carries C{input_tokens} as the caller estimated them (0
unless told: see L{MessagesEventWriter}), and C{message_delta} the
upstream's counts when its usage chunk came (C{input_tokens},
C{cache_read_input_tokens}, C{cache_creation_input_tokens}, which the SDKs
and Claude Code take over the first ones, and C{output_tokens}; only
C{output_tokens: 0} when no usage came).  The usage chunk comes after the
C{finish_reason} (OpenAI: C{choices: []}; the LiteLLM proxy:
C{choices: [{"index": 0, "delta": {}}]}), so C{message_delta} waits for it,
until C{[DONE]} or the stream's end.  C{:} comment lines (keep-alives) pass
as comments.  Only the upstream's choice 0 is read.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from typing import Any

from genaiproxy.api.chat_chunks import EVENT_MAX, call_deltas, call_key
from genaiproxy.api.chat_message import arguments_text, reasoning_text
from genaiproxy.api.messages.answer import (
    THINKING_SIGNATURE,
    IdMaker,
    ObjectEnd,
    matched_stop_sequence,
    messages_usage,
    new_tool_id,
    stop_reason_of,
    tool_input,
)
from genaiproxy.api.stream_writer import TEXT, ChatStreamWriter, EventTemplate

__all__ = ["EVENT_MAX", "MessagesEventWriter", "error_type_of"]

# Upstream error codes that say "busy, try again": the Messages API calls
# that overloaded_error, and Claude Code asks again on it (unstreamed).
_TRANSIENT = frozenset({
    "rate_limit_exceeded", "rate_limit_error", "too_many_requests", "overloaded",
    "overloaded_error", "server_overloaded", "service_unavailable", "timeout",
})
_DELTAS = {"thinking": ("thinking_delta", "thinking"), "text": ("text_delta", "text"),
           "tool_use": ("input_json_delta", "partial_json")}


def error_type_of(code: str) -> str:
    """The Messages error type for an upstream error event's C{code}:
    C{overloaded_error} for a transient one, C{api_error} for any other."""
    return "overloaded_error" if code in _TRANSIENT else "api_error"


class _Block:
    """One content block, from its first delta: waiting, open, or stopped."""

    __slots__ = ("call_id", "deltas", "held", "index", "kind", "mode", "name", "object_end",
                 "sent")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # thinking, text or tool_use
        self.index = -1  # once started
        self.held: list[str] = []  # what waits to be sent
        self.call_id = ""
        self.name = ""
        self.mode = ""  # a call's arguments: "" (undecided), "object" or "held"
        self.object_end: ObjectEnd | None = None
        self.sent = False  # a call's arguments went out
        self.deltas: EventTemplate = (b"", b"")  # its content_block_delta's, once started

    @property
    def complete(self) -> bool:
        """A call whose arguments' object has closed: no more will come."""
        return self.object_end is not None and self.object_end.closed


class MessagesEventWriter(ChatStreamWriter):
    """Writes the Messages events of one streamed chat answer.

    @param model: the model the client asked for, which the message names.
    @param message_id: the message's id (L{genaiproxy.api.messages.answer.new_message_id}).
    @param input_tokens: the input's size as known before the upstream
        answers, for C{message_start}: 0, or an estimate
        (L{genaiproxy.api.messages.count.count_tokens} of the request, about
        30 ms for a long session's 500 KB body).  Claude Code sizes its
        context from the last answer's usage, taking C{message_delta}'s
        counts over these when they are above 0: the estimate matters only
        with an upstream that sends no usage.
    @param stop_sequences: the request's C{stop_sequences}
        (L{genaiproxy.api.messages.answer.matched_stop_sequence}).
    @param new_id: makes the id of a tool call the upstream gave none.
    @ivar status: None while the answer goes on, then C{completed} or C{failed}.
    @ivar stop_reason: the C{stop_reason} the message ended with, or None.
    @ivar error: the C{error} object the stream failed with, or None.
    @ivar usage: the upstream's last C{usage} object (chat counts), or None.
    """

    # A break or a timeout is transient: Claude Code 2.1 asks again on it
    # (unstreamed).
    default_failure = "overloaded_error"

    def __init__(self, model: str, message_id: str, input_tokens: int = 0,
                 stop_sequences: Iterable[str] = (), new_id: IdMaker = new_tool_id) -> None:
        self._model, self._message_id, self._input_tokens = model, message_id, input_tokens
        self._stop_sequences = tuple(stop_sequences)
        self._new_id = new_id
        super().__init__()
        self.stop_reason: str | None = None
        self.error: dict[str, str] | None = None
        self.usage: dict[str, Any] | None = None
        self._finished = False  # the finish_reason came
        self._finish_reason: str | None = None
        self._stop_sequence: str | None = None
        self._refused = False
        self._tool_use = False
        self._current: _Block | None = None
        self._pending: deque[_Block] = deque()
        self._calls: dict[Any, _Block] = {}  # by the upstream's index (or id)
        self._last_call: Any = None
        self._next_index = 0

    def _emit(self, kind: str, event: dict[str, Any]) -> None:
        self._write(kind, event)

    def _opening(self) -> None:
        self._emit("message_start", {"type": "message_start", "message": {
            "id": self._message_id, "type": "message", "role": "assistant",
            "model": self._model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})
        self._emit("ping", {"type": "ping"})

    # The upstream's side.

    def _upstream_error(self, message: str, code: str) -> None:
        self._failed(message, error_type_of(code))

    def _chunk(self, chunk: dict[str, Any]) -> None:
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            if self._finished:  # the usage chunk: the answer is whole
                self._end()

    def _choice(self, choice: dict[str, Any]) -> None:
        if self._finished:
            return  # every block has stopped
        delta = choice.get("delta")
        if isinstance(delta, dict) and delta:
            reasoning = reasoning_text(delta)
            if reasoning:
                self._text_delta("thinking", reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text_delta("text", content)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._refused = True
                self._text_delta("text", refusal)
            for call in call_deltas(delta):
                self._call_delta(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish_reason = finish
            self._stop_sequence = matched_stop_sequence(choice, self._stop_sequences)
            self._stop_all()
            self._finished = True

    # Blocks.

    def _text_delta(self, kind: str, text: str) -> None:
        current = self._current
        if current is not None and current.kind == kind and not self._pending:
            self._send(current, text)
            return
        if self._pending and self._pending[-1].kind == kind:
            self._pending[-1].held.append(text)
        else:
            block = _Block(kind)
            block.held.append(text)
            self._pending.append(block)
        self._advance()

    def _call_delta(self, delta: dict[str, Any]) -> None:
        key = self._last_call = call_key(delta, self._last_call)
        block = self._calls.get(key)
        if block is None:
            block = self._calls[key] = _Block("tool_use")
            self._pending.append(block)
        call_id = delta.get("id")
        if not block.call_id and isinstance(call_id, str):
            block.call_id = call_id
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        if not block.name and isinstance(name, str):
            block.name = name
        arguments = arguments_text(function.get("arguments"))
        if block is self._current:
            self._arguments(block, arguments)
        elif block.index < 0 and arguments:
            block.held.append(arguments)
        # else the call has stopped: its object had closed, and this is past it
        self._advance()

    def _advance(self) -> None:
        """Start the waiting blocks whose turn has come."""
        while self._pending:
            waiting = self._pending[0]
            if waiting.kind == "tool_use" and not waiting.name:
                return  # its content_block_start needs the name
            current = self._current
            if current is not None and current.kind == "tool_use" and not current.complete:
                return  # its arguments may go on
            self._pending.popleft()
            self._stop_current()
            self._open(waiting)

    def _open(self, block: _Block) -> None:
        block.index, self._next_index = self._next_index, self._next_index + 1
        self._current = block
        content: dict[str, Any]
        if block.kind == "thinking":
            content = {"type": "thinking", "thinking": "", "signature": ""}
        elif block.kind == "text":
            content = {"type": "text", "text": ""}
        else:
            self._tool_use = True
            block.call_id = block.call_id or self._new_id()
            content = {"type": "tool_use", "id": block.call_id, "name": block.name, "input": {}}
        self._emit("content_block_start", {"type": "content_block_start", "index": block.index,
                                           "content_block": content})
        kind, key = _DELTAS[block.kind]
        block.deltas = self._template("content_block_delta", {
            "type": "content_block_delta", "index": block.index, "delta": {"type": kind, key: TEXT}})
        held, block.held = "".join(block.held), []
        if block.kind == "tool_use":
            self._arguments(block, held)
        elif held:
            self._send(block, held)

    def _send(self, block: _Block, text: str) -> None:
        self._write_text(block.deltas, text)

    def _send_json(self, block: _Block, text: str) -> None:
        block.sent = True
        self._write_text(block.deltas, text)

    def _arguments(self, block: _Block, text: str) -> None:
        if not text or block.complete:
            return
        if not block.mode:
            begun = text.lstrip()
            if not begun:  # blanks before the arguments
                block.held.append(text)
                return
            block.mode = "object" if begun[0] == "{" else "held"
            block.object_end = ObjectEnd() if block.mode == "object" else None
            text, block.held = "".join(block.held) + text, []
        if block.object_end is None:
            block.held.append(text)
            return
        piece = text[:block.object_end.feed(text)]
        if piece:
            self._send_json(block, piece)

    def _stop_current(self) -> None:
        block, self._current = self._current, None
        if block is None:
            return
        if block.kind == "tool_use":
            if block.mode == "held":
                self._send_json(block, json.dumps(tool_input("".join(block.held))))
            if not block.sent:  # a call without parameters
                self._send_json(block, "{}")
            block.held = []
        elif block.kind == "thinking":
            self._emit("content_block_delta", {
                "type": "content_block_delta", "index": block.index,
                "delta": {"type": "signature_delta", "signature": THINKING_SIGNATURE}})
        self._emit("content_block_stop", {"type": "content_block_stop", "index": block.index})

    def _stop_all(self) -> None:
        """Stop the open block, then start and stop each waiting one, in order."""
        self._stop_current()
        while self._pending:
            self._open(self._pending.popleft())
            self._stop_current()

    # Ends.

    def _end(self) -> None:
        if not self._finished:
            self._stop_all()
            self._finished = True
        reason = stop_reason_of(self._finish_reason, self._tool_use, self._refused,
                                self._stop_sequence)
        usage: dict[str, int] = {"output_tokens": 0}
        counted = messages_usage(self.usage)
        if counted is not None:
            usage = {"input_tokens": counted["input_tokens"],
                     "cache_creation_input_tokens": counted["cache_creation_input_tokens"],
                     "cache_read_input_tokens": counted["cache_read_input_tokens"],
                     "output_tokens": counted["output_tokens"]}
        self.status, self.stop_reason = "completed", reason
        self._emit("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": reason,
            "stop_sequence": self._stop_sequence if reason == "stop_sequence" else None},
            "usage": usage})
        self._emit("message_stop", {"type": "message_stop"})

    def _failed(self, message: str, kind: str) -> None:
        """The C{error} event; the open block stays open (its arguments or
        text may be cut, and a client acts on a stopped block)."""
        self.status = "failed"
        self.error = {"type": kind, "message": message}
        self._emit("error", {"type": "error", "error": self.error})
