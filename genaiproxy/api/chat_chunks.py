"""The chunks of a streamed chat completion, read from its bytes as they come.

A bridge that answers another protocol over a chat completions upstream
(the Responses API's, L{genaiproxy.api.responses.stream}) reads the
upstream's server-sent events cut anywhere by the network.
L{ChatChunkReader} turns them into what they say, in order: a chunk (its
JSON object), the end (C{data: [DONE]}), an upstream error event (OpenAI's
C{{"error": {...}}}, vLLM's C{{"object": "error", ...}}, or an C{event:
error}), or a comment (a keep-alive).  It keeps one unfinished event, at
most L{EVENT_MAX} bytes: a longer one is reported as an error.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["EVENT_MAX", "ChatChunkReader", "ChatEvent", "call_deltas", "call_key"]

EVENT_MAX = 4 * 1024 * 1024
_DECODER = json.JSONDecoder()  # (json.loads, less its wrapping: one per chunk)

ChatEvent = tuple[str, Any]
"""C{("chunk", dict)}, C{("done", None)}, C{("error", (message, code))} or
C{("comment", bytes)} (the comment line, without its line end)."""


class ChatChunkReader:
    """Reads a chat completions stream's events from its bytes."""

    def __init__(self) -> None:
        self._partial: list[bytes] = []  # the unfinished line
        self._data: list[bytes] = []  # the event's data lines
        self._held = 0  # the bytes of both
        self._name = b""
        self._found: list[ChatEvent] = []

    def feed(self, data: bytes) -> list[ChatEvent]:
        """What C{data}, the stream's next bytes, completes."""
        self._found = []
        if (data[:6] == b"data: " and data.find(b"\n") == len(data) - 2 < EVENT_MAX
                and data[-1:] == b"\n"
                and not (self._partial or self._data or self._name)):
            self._event([data[6:-2]], b"")  # the usual chunk: one whole event, alone
            return self._found
        if b"\n" not in data:
            self._keep(data)
            return self._found
        if self._partial:
            data = b"".join([*self._partial, data])
            self._partial.clear()
            self._held = sum(map(len, self._data))
        lines = data.split(b"\n")
        rest = lines.pop()
        for line in lines:
            self._line(line)
        if rest:
            self._keep(rest)
        return self._found

    def finish(self) -> list[ChatEvent]:
        """What is left at the end of the stream: a last event that lacked
        its blank line is taken all the same."""
        self._found = []
        if self._partial:
            line = b"".join(self._partial)
            self._partial.clear()
            self._line(line)
        self._line(b"")
        return self._found

    def _keep(self, data: bytes) -> None:
        self._partial.append(data)
        self._count(len(data))

    def _count(self, size: int) -> None:
        self._held += size
        if self._held > EVENT_MAX:
            self._partial.clear()
            self._data.clear()
            self._held = 0
            self._found.append(
                ("error", (f"the upstream sent an event over {EVENT_MAX} bytes", "server_error")))

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data:
                data, self._data, self._held = self._data, [], 0
                self._event(data, self._name)
            self._name = b""
        elif line[:1] == b":":
            self._found.append(("comment", line))
        else:
            field, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                self._data.append(value)
                self._count(len(value))
            elif field == b"event":
                self._name = value

    def _event(self, lines: list[bytes], name: bytes) -> None:
        data = lines[0] if len(lines) == 1 else b"\n".join(lines)
        if data == b"[DONE]":
            self._found.append(("done", None))
            return
        try:
            chunk = _DECODER.decode(data.decode())
        except (ValueError, RecursionError):
            if len(lines) > 1:  # a server that ends its events with one newline
                for line in lines:
                    self._event([line], name)
            return
        if not isinstance(chunk, dict):
            return
        if name == b"error" or chunk.get("error") is not None or chunk.get("object") == "error":
            self._found.append(("error", _error_of(chunk)))
        else:
            self._found.append(("chunk", chunk))


def call_deltas(delta: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool call pieces of a chat chunk's C{delta}: its C{tool_calls},
    then a legacy C{function_call} as one call more."""
    calls = delta.get("tool_calls")
    found = [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []
    legacy = delta.get("function_call")
    if isinstance(legacy, dict):
        found.append({"index": "function_call", "function": legacy})
    return found


def call_key(delta: dict[str, Any], last: Any) -> Any:
    """Which tool call a call piece of a stream continues: its C{index};
    without one, its C{id} (C{("id", id)}); without either, the C{last}
    piece's call."""
    key = delta.get("index")
    if isinstance(key, (int, str)) and not isinstance(key, bool):
        return key
    call_id = delta.get("id")
    return ("id", call_id) if isinstance(call_id, str) and call_id else last


def _error_of(chunk: dict[str, Any]) -> tuple[str, str]:
    """The message and code of an upstream's error event (C{server_error}
    when it gives no code the SDKs would know as one)."""
    error = chunk.get("error")
    if error is None:  # vLLM: {"object": "error", "message": ..., "code": 400}
        error = chunk
    if isinstance(error, str):
        return error, "server_error"
    if not isinstance(error, dict):
        return json.dumps(error), "server_error"
    message = error.get("message")
    code = error.get("code")
    return (message if isinstance(message, str) else json.dumps(error),
            code if isinstance(code, str) and code else "server_error")
