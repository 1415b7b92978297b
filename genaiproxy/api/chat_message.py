"""What a chat completion's message (or a streamed delta) says, read the
same way by both bridges (L{genaiproxy.api.responses},
L{genaiproxy.api.messages}): its reasoning, its text, its tool calls and
their arguments, whatever variant of the shape the upstream sends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["arguments_text", "first_choice", "reasoning_text", "string_of", "text_of",
           "tool_calls_of"]


def first_choice(completion: Mapping[str, Any]
                 ) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """A whole chat completion's choice 0 and its message (empty mappings
    when it has none: the bridges' APIs have no C{n})."""
    choices = completion.get("choices")
    choice: Mapping[str, Any] = {}
    if isinstance(choices, list):
        choice = next((c for c in choices if isinstance(c, Mapping) and c.get("index", 0) == 0),
                      {})
    message = choice.get("message")
    return choice, message if isinstance(message, Mapping) else {}


def reasoning_text(message: Mapping[str, Any]) -> str:
    """The reasoning in a chat message or delta (C{""}: none)."""
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def string_of(value: Any) -> str:
    return value if isinstance(value, str) else ""


def text_of(content: Any) -> str:
    """A chat message's content as text (some servers send a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content
                       if isinstance(part, Mapping) and isinstance(part.get("text"), str))
    return ""


def arguments_text(arguments: Any) -> str:
    """A tool call's C{arguments} as text (a few servers send an object).
    A call whose arguments stay empty is given C{{}}: a call without
    parameters, which a client parses as JSON all the same."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments) if arguments is not None else ""


def tool_calls_of(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The message's tool calls' C{function} objects with their ids."""
    calls = message.get("tool_calls")
    found: list[Mapping[str, Any]] = []
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, Mapping) and isinstance(call.get("function"), Mapping):
            found.append({**call["function"], "id": call.get("id")})
    legacy = message.get("function_call")
    if not found and isinstance(legacy, Mapping):
        found.append(legacy)
    return found
