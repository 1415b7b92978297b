"""The mock upstream as a tool-using model: which function tools a chat
request has it call, the calls' message and stream deltas, the answer that
quotes a tool's output, and ``reasoning_content``.  Pure functions over a
request's JSON; L{genaiproxy.mock.chat} writes them out.

The stream deltas follow what real servers send.  OpenAI opens each call
with one chunk carrying C{index}, C{id}, C{type} and C{function.name} with
empty C{arguments}, then sends C{index} and an C{arguments} piece per chunk,
one call after the other.  vLLM's tool parsers open a call with its name and
no C{arguments} key at all and may interleave several calls' pieces by
index; the interleaved order here is that one.  Reasoning arrives before
the content, as DeepSeek (C{reasoning_content}) and vLLM or Ollama
(C{reasoning}, their newer name) send it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

REASONING_FIELDS = ("reasoning_content", "reasoning")
TOOL_REPLY_PREFIX = "The tool said: "


@dataclass(frozen=True)
class ToolCall:
    """A call the mock makes when the request offers a function of this name.

    @ivar name: the function's name.
    @ivar arguments: the JSON object text sent as the call's C{arguments},
        exactly as given.
    """

    name: str
    arguments: str = "{}"


def parse_tool_call(text: str) -> ToolCall:
    """C{NAME} or C{NAME=JSON-object} as a L{ToolCall}; raises ValueError
    with a message fit for a 400 or a command-line error."""
    name, equals, arguments = text.partition("=")
    name = name.strip()
    if not name or any(character.isspace() for character in name):
        raise ValueError(f"expected NAME or NAME={{json object}}, got {text!r}")
    if not equals:
        return ToolCall(name)
    arguments = arguments.strip()
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        raise ValueError(f"the arguments of {name!r} are not JSON: {arguments!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the arguments of {name!r} must be a JSON object, got {arguments!r}")
    return ToolCall(name, arguments)


def offered_functions(payload: dict[str, Any]) -> list[str]:
    """The names of the function tools a chat request offers, in order."""
    tools = payload.get("tools")
    names = []
    for tool in tools if isinstance(tools, list) else []:
        if not (isinstance(tool, dict) and tool.get("type") == "function"):
            continue
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            names.append(name)
    return names


def calls_to_make(payload: dict[str, Any], wanted: tuple[ToolCall, ...]) -> list[ToolCall]:
    """The calls of C{wanted} this turn makes: none when the last message is
    a tool's output (the model answers it instead), when C{tool_choice} is
    C{"none"}, or for a function the request does not offer; only the
    function C{tool_choice} names when it names one; only the first when
    C{parallel_tool_calls} is false."""
    if not wanted or tool_outputs(payload.get("messages")) is not None:
        return []
    offered = set(offered_functions(payload))
    choice = payload.get("tool_choice")
    if choice == "none":
        return []
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        offered &= {choice["function"].get("name")}
    calls = [call for call in wanted if call.name in offered]
    if payload.get("parallel_tool_calls") is False:
        return calls[:1]
    return calls


def message_text(content: Any) -> str:
    """A chat message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def tool_outputs(messages: Any) -> list[str] | None:
    """The texts of the C{tool} messages that end the conversation (the
    outputs of the last turn's calls, in order), or None when the last
    message is not a tool's."""
    if not isinstance(messages, list):
        return None
    outputs: list[str] = []
    for message in reversed(messages):
        if not (isinstance(message, dict) and message.get("role") == "tool"):
            break
        outputs.insert(0, message_text(message.get("content")))
    return outputs or None


def quote_tool_outputs(outputs: list[str]) -> str:
    """The answer to a turn that ends in tool outputs: one line
    C{The tool said: OUTPUT} per output, so that a test sees each went
    back to the model."""
    return "\n".join(TOOL_REPLY_PREFIX + output for output in outputs)


def call_ids(number: int, calls: list[ToolCall]) -> list[str]:
    """Ids for the calls of completion C{number}: C{call_...}, unique in one
    mock process."""
    return [f"call_mock_{number}_{index}" for index in range(len(calls))]


def call_words(calls: list[ToolCall]) -> int:
    """A rough output "token" count of the calls (their names and arguments)."""
    return sum(len(call.name.split()) + len(call.arguments.split()) for call in calls)


def tool_calls_message(calls: list[ToolCall], ids: list[str]) -> list[dict[str, Any]]:
    """The C{tool_calls} of a non-streamed assistant message."""
    return [
        {"id": call_id, "type": "function",
         "function": {"name": call.name, "arguments": call.arguments}}
        for call, call_id in zip(calls, ids, strict=True)
    ]


def split_text(text: str, pieces: int) -> list[str]:
    """C{text} cut into C{pieces} (at least one, at most one per character)
    parts of near-equal length that join back to it."""
    count = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), count)
    parts, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        parts.append(text[start:end])
        start = end
    return parts


def tool_call_deltas(
    calls: list[ToolCall], ids: list[str], pieces: int, interleave: bool
) -> list[dict[str, Any]]:
    """One C{tool_calls} delta entry per stream chunk, for C{calls}.

    Each call's arguments go out in C{pieces} parts (see L{split_text}).
    In order (OpenAI's way), a call opens with C{id}, C{type} and its name
    with C{"arguments": ""}, its pieces follow, then the next call.
    Interleaved (as vLLM may send them), every call opens first, with its
    name and no C{arguments}, then the calls' pieces take turns by index.
    """
    parts = [split_text(call.arguments, pieces) for call in calls]
    if not interleave:
        entries: list[dict[str, Any]] = []
        for index, (call, call_id) in enumerate(zip(calls, ids, strict=True)):
            entries.append({"index": index, "id": call_id, "type": "function",
                            "function": {"name": call.name, "arguments": ""}})
            entries.extend({"index": index, "function": {"arguments": piece}}
                           for piece in parts[index])
        return entries
    entries = [
        {"index": index, "id": call_id, "type": "function", "function": {"name": call.name}}
        for index, (call, call_id) in enumerate(zip(calls, ids, strict=True))
    ]
    for turn in range(max((len(pieces_of) for pieces_of in parts), default=0)):
        entries.extend({"index": index, "function": {"arguments": pieces_of[turn]}}
                       for index, pieces_of in enumerate(parts) if turn < len(pieces_of))
    return entries


def chat_usage(prompt_words: int, output_words: int, reasoning_words: int) -> dict[str, Any]:
    """Chat usage; reasoning counts among the completion tokens and, when
    there is any, in C{completion_tokens_details.reasoning_tokens}, as
    OpenAI reports it."""
    completion = output_words + reasoning_words
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_words,
        "completion_tokens": completion,
        "total_tokens": prompt_words + completion,
    }
    if reasoning_words:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_words}
    return usage
