"""The chat completion chunks an upstream streams, written as OpenAI writes
them, and the named events a bridge writes back, read as they are written,
for the tests of both bridges' stream writers
(tests/support/responses_stream.py, tests/support/messages_stream.py)."""

from __future__ import annotations

import json
from typing import Any


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          **extra: Any) -> bytes:
    """One chat completion chunk as OpenAI writes it."""
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "upstream-model",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **extra}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def call(index: int, arguments: str, name: str | None = None,
         call_id: str | None = None) -> dict[str, Any]:
    """A delta with one tool call piece (the first one names the call)."""
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name is not None:
        piece.update(id=call_id or f"call_{index}", type="function")
        piece["function"]["name"] = name
    return {"tool_calls": [piece]}


def usage_chunk_of(usage: dict[str, Any], choices: list[Any] | None = None) -> bytes:
    """The chunk that carries C{usage}, after the last choice."""
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices or [],
            "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def named_events(stream: bytes) -> list[dict[str, Any]]:
    """The events of a bridge's stream (comments left out), each checked:
    its C{event:} line names its type, and its JSON is one compact,
    ASCII-only json.dumps (templated deltas too)."""
    found = []
    for block in stream.split(b"\n\n"):
        if not block or block.startswith(b":"):
            continue
        name, data = block.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        event = json.loads(data[6:])
        assert event["type"] == name[7:].decode()
        assert data[6:] == json.dumps(event, separators=(",", ":")).encode()
        found.append(event)
    return found
