"""The request bodies the request/response phase sends: the small chat
request, and the sizes real clients send.

A Codex turn is a Responses request of 50-100 KB (the instructions, the
tools, the whole history of the session: messages, tool calls and their
outputs); a Claude Code or opencode turn through chat completions is as
large.  These are built here, deterministically, to about 64 KB each, with
the shapes those clients send, so that the benchmark pays what a proxy pays
on a real turn: reading, parsing, rewriting, logging and forwarding a large
body.  Every body is plain ASCII JSON without the sequence C{]==]}, which
the wrk script quotes it with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bench.common import CHAT_BODY, PATH, RESPONSES_PATH

__all__ = ["WORKLOADS", "Workload"]

TARGET_SIZE = 64 * 1024
_WORDS = ("the proxy forwards each request to the gateway and streams the answer back "
          "while the client reads it; tools run locally and their output returns in the "
          "next turn of the conversation").split()


@dataclass(frozen=True)
class Workload:
    """One request the phase sends: its name, path, body and description."""

    name: str
    path: str
    body: bytes
    about: str


def _text(seed: int, words: int) -> str:
    return " ".join(_WORDS[(seed * 7 + i) % len(_WORDS)] for i in range(words))


def _schema(seed: int) -> dict[str, Any]:
    return {"type": "object", "properties": {
        f"arg_{i}": {"type": "string", "description": _text(seed + i, 12)} for i in range(4)},
        "required": ["arg_0"], "additionalProperties": False}


def _grow(build: Any) -> bytes:
    """The body C{build(turns)} makes with as many turns as fit in
    L{TARGET_SIZE}."""
    turns = 1
    while len(json.dumps(build(turns + 1), separators=(",", ":"))) <= TARGET_SIZE:
        turns += 1
    body = json.dumps(build(turns), separators=(",", ":")).encode()
    assert body.isascii() and b"]==]" not in body
    return body


def _chat(turns: int) -> dict[str, Any]:
    """A chat completions turn as an agent sends it: a system prompt, tools,
    and the history of user messages, tool calls and tool outputs."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": _text(1, 400)}]
    for turn in range(turns):
        call_id = f"call_{turn:04d}"
        messages += [
            {"role": "user", "content": _text(turn, 60)},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": call_id, "type": "function", "function": {
                    "name": f"tool_{turn % 12}",
                    "arguments": json.dumps({"arg_0": _text(turn, 10)})}}]},
            {"role": "tool", "tool_call_id": call_id, "content": _text(turn + 3, 120)},
        ]
    return {"model": "gpt-4.1", "messages": messages, "tools": [
        {"type": "function", "function": {"name": f"tool_{i}", "description": _text(i, 30),
                                          "parameters": _schema(i)}} for i in range(12)]}


def _responses(turns: int) -> dict[str, Any]:
    """A Responses turn as Codex sends it: instructions, tools, the whole
    input (messages, function calls and their outputs), store false."""
    items: list[dict[str, Any]] = []
    for turn in range(turns):
        call_id = f"call_{turn:04d}"
        items += [
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": _text(turn, 60)}]},
            {"type": "function_call", "call_id": call_id, "name": f"tool_{turn % 12}",
             "arguments": json.dumps({"arg_0": _text(turn, 10)})},
            {"type": "function_call_output", "call_id": call_id, "output": _text(turn + 3, 120)},
        ]
    return {"model": "gpt-4.1", "instructions": _text(2, 400), "input": items,
            "tools": [{"type": "function", "name": f"tool_{i}", "description": _text(i, 30),
                       "parameters": _schema(i), "strict": False} for i in range(12)],
            "tool_choice": "auto", "parallel_tool_calls": False, "store": False,
            "stream": False, "include": [], "prompt_cache_key": "bench-session"}


WORKLOADS: dict[str, Workload] = {
    "small": Workload("small", PATH, CHAT_BODY, f"POST {PATH} `{CHAT_BODY.decode()}`"),
    "chat-64k": Workload("chat-64k", PATH, _grow(_chat),
                         f"POST {PATH}, a chat turn of an agent: a system prompt, 12 tools, "
                         "and a history of user messages, tool calls and tool outputs"),
    "responses-64k": Workload("responses-64k", RESPONSES_PATH, _grow(_responses),
                              f"POST {RESPONSES_PATH}, a Codex turn: instructions, 12 tools, "
                              "the whole input (messages, function calls and outputs)"),
}
