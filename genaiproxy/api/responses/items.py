"""The pieces of a Responses answer that the whole answer
(L{genaiproxy.api.responses.answer}) and the streamed one
(L{genaiproxy.api.responses.stream}) share, so that both say the same thing:
the C{response} envelope that repeats the request's fields, the output items
(reasoning, message, function and custom tool calls), the status a
C{finish_reason} means, the usage, and a custom tool's input read out of its
arguments.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from genaiproxy.api.chat_message import (
    string_of,
)
from genaiproxy.api.responses.tools import DeclaredTool

__all__ = [
    "CustomInputDecoder",
    "IdMaker",
    "call_item",
    "custom_input",
    "finish_status",
    "logprobs_of",
    "message_item",
    "new_item_id",
    "output_text_part",
    "reasoning_as_summary",
    "reasoning_item",
    "response_object",
    "responses_usage",
]

IdMaker = Callable[[str], str]
"""Makes an id from its prefix (C{msg}, C{fc}, ...); injected in tests."""

# Request fields a Responses object repeats, with what it says when the
# request did not set them.
_ECHOED: tuple[tuple[str, Any], ...] = (
    ("instructions", None),
    ("max_output_tokens", None),
    ("metadata", {}),
    ("parallel_tool_calls", True),
    ("previous_response_id", None),
    ("prompt_cache_key", None),
    ("reasoning", {"effort": None, "summary": None}),
    ("safety_identifier", None),
    ("temperature", None),
    ("text", {"format": {"type": "text"}}),
    ("tool_choice", "auto"),
    ("tools", []),
    ("top_logprobs", None),
    ("top_p", None),
    ("truncation", "disabled"),
    ("user", None),
)
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
# finish_reason -> the Responses status and its incomplete_details.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_item_id(prefix: str) -> str:
    """An id as OpenAI shapes them: the prefix, C{_}, 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


def reasoning_as_summary(echo: Mapping[str, Any]) -> bool:
    """Whether the upstream's reasoning goes out as a reasoning I{summary}.

    A chat upstream gives the model's raw reasoning; the Responses API has two
    places for it: C{content} (C{reasoning_text}, streamed as
    C{response.reasoning_text.*}, what OpenAI's open-weight models give) and
    C{summary} (C{summary_text}, streamed as C{response.reasoning_summary_*}).
    Codex shows summaries (its "thinking" lines) and hides raw reasoning
    unless C{show_raw_agent_reasoning} is set, and it asks for summaries
    (C{reasoning.summary: auto}).  So a request that asked for a summary gets
    the reasoning as one (as Ollama's own C{/v1/responses} does); any other
    gets it as C{reasoning_text}, which is what it is.
    """
    reasoning = echo.get("reasoning")
    if not isinstance(reasoning, Mapping):
        return False
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    return summary in _SUMMARIES


def finish_status(finish_reason: Any) -> tuple[str, dict[str, str] | None]:
    """The Responses C{status} and C{incomplete_details} for a chat
    C{finish_reason} (None, when the upstream gave none, is a completion)."""
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """Chat C{usage} as Responses usage, or None when the upstream sent none
    (no made-up zeros: they would be counted as real ones)."""
    if not isinstance(usage, Mapping):
        return None
    prompt = _count(usage.get("prompt_tokens")) or 0
    completion = _count(usage.get("completion_tokens")) or 0
    total = _count(usage.get("total_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, Mapping) else {}
    completion_details = completion_details if isinstance(completion_details, Mapping) else {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _count(prompt_details.get("cached_tokens")) or 0,
            "cache_write_tokens": _count(prompt_details.get("cache_write_tokens")) or 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": _count(completion_details.get("reasoning_tokens")) or 0,
        },
        "total_tokens": prompt + completion if total is None else total,
    }


def response_object(echo: Mapping[str, Any], response_id: str, created_at: int, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None = None,
                    incomplete_details: dict[str, str] | None = None,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The C{response} object, with the request's fields it repeats.

    C{model} is the one the client asked for (the name an alias was sent
    upstream under stays the proxy's business), and C{store} is false
    whatever was asked: the bridge keeps nothing.
    """
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "model": echo.get("model") if isinstance(echo.get("model"), str) else "",
        "output": output,
        "store": False,
    }
    for name, default in _ECHOED:
        value = echo.get(name)
        response[name] = default if value is None else value
    response["usage"] = usage
    return response


def reasoning_item(item_id: str, text: str, as_summary: bool) -> dict[str, Any]:
    """A C{reasoning} item holding C{text} (see L{reasoning_as_summary})."""
    if as_summary:
        return {"id": item_id, "type": "reasoning",
                "summary": [{"type": "summary_text", "text": text}]}
    return {"id": item_id, "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}


def output_text_part(text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    """An C{output_text} content part."""
    return {"type": "output_text", "annotations": [], "logprobs": logprobs, "text": text}


def message_item(item_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant C{message} item."""
    return {"id": item_id, "type": "message", "status": status, "content": content,
            "role": "assistant"}


def call_item(item_id: str, call_id: str, tool: DeclaredTool, arguments: str,
              status: str, input_text: str | None = None) -> dict[str, Any]:
    """A C{function_call} item, or a C{custom_tool_call} item (whose
    C{input} is C{input_text}, or else read from C{arguments})."""
    if tool.kind == "custom":
        item: dict[str, Any] = {
            "id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id,
            "input": custom_input(arguments) if input_text is None else input_text,
            "name": tool.name}
    else:
        item = {"id": item_id, "type": "function_call", "status": status,
                "arguments": arguments, "call_id": call_id, "name": tool.name}
    if tool.namespace is not None:
        item["namespace"] = tool.namespace
    return item


def custom_input(arguments: str) -> str:
    """A custom tool's input from the chat function's arguments (the request
    bridge gives the function one string parameter): read as
    L{CustomInputDecoder} reads them as they stream, so that a whole answer
    and a streamed one say the same."""
    decoder = CustomInputDecoder()
    return decoder.feed(arguments) + decoder.close()


# An object's first member up to the opening quote of its (string) value.
_FIRST_MEMBER = re.compile(r'\s*\{\s*"(?:[^"\\]|\\.)*"\s*:\s*"', re.DOTALL)
# What cannot become that: not an object, an empty one, a value not a string.
_NO_STRING_MEMBER = re.compile(
    r'\s*(?:[^\s{]|\{\s*[^\s"}]|\{\s*"(?:[^"\\]|\\.)*"\s*(?:[^\s:]|:\s*[^\s"]))', re.DOTALL)
# The longest run of a JSON string's body: no unescaped quote, no lone backslash.
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
# The end of a body that must wait for more: an unfinished \u escape, or a
# high surrogate whose low half has not come (JSON parsers refuse a lone one).
_OPEN_ESCAPE = re.compile(r'\\u[0-9a-fA-F]{0,3}$|\\u[dD][89abAB][0-9a-fA-F]{2}$')
_LENIENT = json.JSONDecoder(strict=False)
_PREFIX_MAX = 4096


class CustomInputDecoder:
    """Reads a custom tool's input out of chat arguments as they stream.

    The input is the value of the arguments' first member when it is a
    string (C{{"input": "*** Begin Patch..."}}), decoded piece by piece so
    that it reaches the client as it comes; an escape split between two
    pieces waits for its end.  Arguments that do not start that way (the
    model wrote something else) are the input as they came; empty ones (or
    C{{}}) are an empty input.  Whatever follows the value is not input.
    """

    def __init__(self) -> None:
        self._state = "prefix"  # then "value", and "after" or "raw"
        self._held = ""

    def feed(self, piece: str) -> str:
        """The input text that C{piece} completes."""
        if self._state == "prefix":
            prefix = self._held + piece
            found = _FIRST_MEMBER.match(prefix)
            if found is None:
                if _NO_STRING_MEMBER.match(prefix) or len(prefix) > _PREFIX_MAX:
                    self._state, self._held = "raw", ""
                    return prefix
                self._held = prefix
                return ""
            self._state, self._held = "value", ""
            piece = prefix[found.end():]
        if self._state == "value":
            return self._value(self._held + piece)
        return piece if self._state == "raw" else ""

    def close(self) -> str:
        """The rest, at the end of the arguments."""
        held, self._held = self._held, ""
        if self._state == "prefix":
            self._state = "after"
            return "" if "".join(held.split()) in ("", "{", "{}") else held
        # In a value: only an unfinished escape is left, and it is dropped.
        return ""

    def _value(self, raw: str) -> str:
        end = _STRING_BODY.match(raw).end()  # type: ignore[union-attr]
        if end < len(raw) and raw[end] == '"':
            self._state, self._held = "after", ""
            return self._decode(raw[:end])
        cut = end
        # An unfinished escape may follow a high surrogate: both wait.
        for _ in range(2):
            found = _OPEN_ESCAPE.search(raw, 0, cut)
            if found is None:
                break
            before = raw[:found.start()]
            if (len(before) - len(before.rstrip("\\"))) % 2:  # the \ is itself escaped
                break
            cut = found.start()
        self._held = raw[cut:]
        return self._decode(raw[:cut])

    def _decode(self, body: str) -> str:
        if not body:
            return ""
        try:
            text: str = _LENIENT.decode('"' + body + '"')
        except ValueError:  # a bad escape: the rest goes as it came
            self._state, self._held = "raw", ""
            return body
        return text


def logprobs_of(logprobs: Any) -> list[dict[str, Any]]:
    """A chat choice's C{logprobs.content} as Responses logprobs."""
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list):
        return []
    return [_logprob(entry) for entry in content if isinstance(entry, Mapping)]


def _logprob(entry: Mapping[str, Any], top: bool = True) -> dict[str, Any]:
    token = string_of(entry.get("token"))
    logprob = entry.get("logprob")
    found: dict[str, Any] = {
        "token": token,
        "bytes": entry.get("bytes") if isinstance(entry.get("bytes"), list)
        else list(token.encode("utf-8", "replace")),
        "logprob": logprob if isinstance(logprob, (int, float)) else 0.0,
    }
    if top:
        tops = entry.get("top_logprobs")
        found["top_logprobs"] = [_logprob(other, top=False) for other in tops
                                 if isinstance(other, Mapping)] if isinstance(tops, list) else []
    return found
