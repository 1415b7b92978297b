"""Chat chunks in, Messages API events out, for the unit tests of the
Messages bridge's stream writer (L{genaiproxy.api.messages.stream}:
tests/unit/test_messages_stream.py and test_messages_stream_sdk.py): the
chunks an upstream sends, a writer, the events it writes, each checked
against the anthropic SDK's types, and the rules every stream keeps."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from anthropic.types import RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from genaiproxy.api.messages.stream import MessagesEventWriter
from support.chat_stream import chunk, named_events, usage_chunk_of

SDK_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
USAGE = {"prompt_tokens": 110, "completion_tokens": 7, "total_tokens": 117,
         "prompt_tokens_details": {"cached_tokens": 100}}
DONE = b"data: [DONE]\n\n"


def counting_ids() -> Callable[[], str]:
    """Tool ids that say the order they were made in (C{toolu_0}, ...)."""
    counter = itertools.count()
    return lambda: f"toolu_{next(counter)}"


def writer(**options: Any) -> MessagesEventWriter:
    return MessagesEventWriter("company-model", "msg_test", new_id=counting_ids(), **options)


def usage_chunk(choices: list[Any] | None = None) -> bytes:
    return usage_chunk_of(USAGE, choices)


ROLE = chunk({"role": "assistant", "content": ""})


def events_of(stream: bytes) -> list[dict[str, Any]]:
    """The events of a Messages stream, each checked: its C{event:} line
    names its type, its JSON is compact and ASCII, and the anthropic SDK's
    types accept it."""
    events = named_events(stream)
    for event in events:
        if event["type"] == "error":
            ErrorResponse.model_validate(event)
        elif event["type"] != "ping":
            SDK_EVENT.validate_python(event)
    return events


def check_whole(events: list[dict[str, Any]]) -> None:
    """The rules every stream keeps: message_start and ping first; blocks
    indexed 0, 1, 2... that never interleave (each started block's deltas
    and stop come before the next one starts); then, unless it failed,
    every started block stopped and message_delta, message_stop last."""
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    kinds = [e["type"] for e in events]
    failed = kinds[-1] == "error"
    assert kinds.count("message_stop") == (0 if failed else 1)
    assert kinds.count("error") == (1 if failed else 0)
    open_index = None
    started = 0
    for event in events[2:]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None and event["index"] == started
            open_index, started = event["index"], started + 1
        elif kind == "content_block_delta":
            assert event["index"] == open_index
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
        elif kind in ("message_delta", "message_stop"):
            assert open_index is None
    if not failed:
        assert kinds[-2:] == ["message_delta", "message_stop"]


def run(stream: bytes, end: bool = True, **options: Any) -> list[dict[str, Any]]:
    """The events a writer makes of C{stream}, fed whole."""
    bridge = writer(**options)
    out = bridge.feed(stream) + (bridge.finish() if end else b"")
    events = events_of(out)
    check_whole(events)
    return events


def brief(event: dict[str, Any]) -> tuple[Any, ...]:
    """What an event says, in short."""
    kind = event["type"]
    if kind == "content_block_start":
        block = event["content_block"]
        return ("start", event["index"], block["type"], *(
            (block["id"], block["name"]) if block["type"] == "tool_use" else ()))
    if kind == "content_block_delta":
        delta = event["delta"]
        value = next(delta[key] for key in ("text", "thinking", "partial_json", "signature")
                     if key in delta)
        return (delta["type"], event["index"], value)
    if kind == "content_block_stop":
        return ("stop", event["index"])
    if kind == "message_delta":
        return ("message_delta", event["delta"]["stop_reason"], event["delta"]["stop_sequence"])
    if kind == "error":
        return ("error", event["error"]["type"], event["error"]["message"])
    return (kind,)


def briefs(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [brief(event) for event in events]


START = [("message_start",), ("ping",)]
END = [("message_delta", "end_turn", None), ("message_stop",)]
