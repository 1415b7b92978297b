"""Chat chunks in, Responses API events out, for the unit tests of the
Responses bridge's stream writer (L{genaiproxy.api.responses.stream}:
tests/unit/test_responses_stream.py and test_responses_stream_whole.py):
the client's request and tools, the chunks an upstream sends, a writer, the
events it writes, each checked against the openai SDK's types, and the rules
every stream keeps."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from genaiproxy.api.responses.stream import ResponsesEventWriter
from genaiproxy.api.responses.tools import DeclaredTool, ToolNames
from support.chat_stream import chunk, named_events, usage_chunk_of

SDK_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 3},
         "completion_tokens_details": {"reasoning_tokens": 2}}
ECHO = {"model": "gpt-5-codex", "instructions": "Be brief.", "stream": True,
        "tools": [{"type": "function", "name": "exec_command", "parameters": {}},
                  {"type": "custom", "name": "apply_patch"}],
        "parallel_tool_calls": True}
SUMMARY_ECHO = {**ECHO, "reasoning": {"effort": "medium", "summary": "auto"}}
TOOLS = ToolNames({
    "exec_command": DeclaredTool("function", "exec_command"),
    "apply_patch": DeclaredTool("custom", "apply_patch"),
    "multi_agent_v1__spawn_agent": DeclaredTool("function", "spawn_agent", "multi_agent_v1"),
})


def counting_ids() -> Callable[[str], str]:
    """Ids that say the order they were made in (C{msg_1}, C{fc_2}...)."""
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def writer(echo: dict[str, Any] = ECHO) -> ResponsesEventWriter:
    return ResponsesEventWriter(echo, TOOLS, "resp_test", 1_700_000_000, new_id=counting_ids())


def usage_chunk(choices: list[Any] | None = None) -> bytes:
    return usage_chunk_of(USAGE, choices)


DONE = b"data: [DONE]\n\n"
ROLE = chunk({"role": "assistant", "content": ""})


def events_of(stream: bytes) -> list[dict[str, Any]]:
    """The events of a Responses stream, each checked: its C{event:} line
    names its type, its JSON is compact and ASCII, and the openai SDK's
    event types accept it."""
    events = named_events(stream)
    for event in events:
        SDK_EVENT.validate_python(event)
    return events


def check_whole(events: list[dict[str, Any]]) -> None:
    """The rules every stream keeps: sequence numbers 0, 1, 2...; one end
    event, last; each item added is done once, at its own output_index."""
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    ends = [e["type"] for e in events if e["type"] in (
        "response.completed", "response.incomplete", "response.failed")]
    assert len(ends) == 1 and events[-1]["type"] == ends[0]
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["output_index"] for e in events if e["type"] == "response.output_item.done"]
    assert added == list(range(len(added)))
    if ends[0] != "response.failed":
        assert sorted(done) == added
        assert [e["item"] for e in events if e["type"] == "response.output_item.done"] == [
            events[-1]["response"]["output"][index] for index in done]


def run(stream: bytes, echo: dict[str, Any] = ECHO, end: bool = True) -> list[dict[str, Any]]:
    """The events a writer makes of C{stream}, fed whole."""
    bridge = writer(echo)
    out = bridge.feed(stream) + (bridge.finish() if end else b"")
    events = events_of(out)
    check_whole(events)
    return events


def brief(event: dict[str, Any]) -> tuple[Any, ...]:
    """What an event says, in short: its type and what it carries."""
    kind = event["type"].removeprefix("response.")
    if "item" in event:
        item = event["item"]
        return (kind, event["output_index"], item["type"], item.get("status"))
    for key in ("delta", "text", "arguments", "input", "refusal"):
        if key in event:
            return (kind, event["output_index"], event[key])
    if "part" in event:
        return (kind, event["output_index"], event["part"]["type"])
    if "response" in event:
        return (kind, event["response"]["status"])
    return (kind,)


def briefs(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [brief(event) for event in events]


START = [("created", "in_progress"), ("in_progress", "in_progress")]
