"""A chat completions answer as the Anthropic Messages API's C{message}.

The Messages bridge sends a Messages request to an upstream that speaks only
chat completions; L{message_of} turns the upstream's whole answer back into
the C{message} object the client asked for.  The parts here are shared with
the streamed answer (L{genaiproxy.api.messages.stream}), so that both say the
same thing.

The C{content} blocks, in order:

  - a C{thinking} block, when the upstream sent the model's reasoning
    (C{reasoning_content}: DeepSeek, older vLLM; C{reasoning}: Ollama, newer
    vLLM), with the signature L{THINKING_SIGNATURE};
  - a C{text} block: the content, and a refusal's text (OpenAI's
    C{message.refusal}) after it;
  - one C{tool_use} block per tool call: C{id} the chat call's id (a
    C{toolu_...} one when the upstream gave none), C{name}, and C{input} the
    object the arguments hold (L{tool_input}).

C{stop_reason} is what the chat C{finish_reason} means (L{stop_reason_of}),
and C{usage} the chat counts in Anthropic's terms (L{messages_usage}).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from genaiproxy.api.chat_message import (
    arguments_text,
    first_choice,
    reasoning_text,
    string_of,
    text_of,
    tool_calls_of,
)

__all__ = [
    "RAW_ARGUMENTS",
    "THINKING_SIGNATURE",
    "IdMaker",
    "ObjectEnd",
    "matched_stop_sequence",
    "message_of",
    "messages_usage",
    "new_message_id",
    "new_tool_id",
    "stop_reason_of",
    "tool_input",
]

IdMaker = Callable[[], str]
"""Makes a tool_use id (C{toolu_...}); injected in tests."""

THINKING_SIGNATURE = ""
"""The C{signature} of a thinking block made of a chat upstream's reasoning.

Anthropic signs its thinking so that it can check the blocks a client sends
back; a chat upstream's reasoning has no signature, and none is made up: the
empty string is what the anthropic SDKs' types accept for one (the field is a
string), and what Claude Code itself writes for thinking it keeps without a
signature (it counts such a block as unsigned, and, unlike a signed one, does
not strip it when the model changes).  The bridge's request side drops
thinking blocks, so the value never reaches the upstream.  A stream sends it
in a C{signature_delta} before the block stops, as Anthropic's streams do."""

RAW_ARGUMENTS = "_raw_arguments"
"""The one key of a tool_use C{input} whose arguments were no JSON object
(see L{tool_input})."""

# finish_reason -> stop_reason; any other (or none) is end_turn, or tool_use
# when the answer holds tool calls.
_STOP_REASONS = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_DECODER = json.JSONDecoder()
# What matters to where a JSON text's top-level value ends.
_JSON_SPECIAL = re.compile(r'[\\"{}\[\]]')


def new_message_id() -> str:
    """A message id as Anthropic shapes them: C{msg_} and 24 characters."""
    return f"msg_{secrets.token_hex(12)}"


def new_tool_id() -> str:
    """A tool_use id for a call the upstream gave no id: C{toolu_} and 24
    characters."""
    return f"toolu_{secrets.token_hex(12)}"


def tool_input(arguments: str) -> dict[str, Any]:
    """The C{input} object of a tool call whose arguments are C{arguments}.

      - empty (a call without parameters): C{{}};
      - a JSON object: that object; anything after its closing brace is
        left out (a few servers repeat the whole arguments in their last
        piece), as the stream leaves it out (L{genaiproxy.api.messages.stream});
      - a JSON string that holds an object (arguments encoded twice, as some
        models write them): the object;
      - anything else (invalid JSON, a list, a number...): C{{"_raw_arguments":
        <the arguments as they came>}}.  The Messages API's C{input} is always
        an object; dropping the arguments would run the tool with none, and
        guessing would run it with what the model did not say.  This object
        fails the tool's schema instead, so the client (Claude Code) answers
        the call with an error and the model tries again.
    """
    text = arguments.lstrip()
    if not text:
        return {}
    try:
        value, _ = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        return {RAW_ARGUMENTS: arguments}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {RAW_ARGUMENTS: arguments}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS: arguments}


class ObjectEnd:
    """Finds where a JSON text that begins with C{{} closes its object,
    reading it piece by piece as a stream's arguments arrive: only brackets,
    quotes and backslashes are looked at, so a piece costs one regular
    expression scan and nothing of it is kept."""

    __slots__ = ("closed", "_depth", "_escaped", "_in_string")

    def __init__(self) -> None:
        self.closed = False
        self._depth = 0
        self._in_string = False
        self._escaped = False  # the last piece ended inside a string's escape

    def feed(self, text: str) -> int:
        """How much of C{text} belongs to the object (all of it, until the
        piece that closes it)."""
        skip = 0 if self._escaped else -1
        self._escaped = False
        for match in _JSON_SPECIAL.finditer(text):
            at = match.start()
            if at == skip:
                continue
            char = text[at]
            if self._in_string:
                if char == "\\":
                    skip = at + 1
                    self._escaped = skip == len(text)
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth <= 0:
                    self.closed = True
                    return at + 1
        return len(text)


def matched_stop_sequence(choice: Mapping[str, Any], stop_sequences: Iterable[str]) -> str | None:
    """The request's stop sequence the upstream stopped on, when it says so.

    A chat answer does not say whether C{finish_reason: stop} was the end of
    the model's turn or one of the C{stop} strings, nor which (the text
    leaves it out); vLLM alone says, in the choice's C{stop_reason}.  So a
    choice whose C{stop_reason} is one of the request's C{stop_sequences}
    is a stop on it, and any other stop is C{end_turn}: a guess from the
    text would call an answer cut when it was whole.
    """
    matched = choice.get("stop_reason")
    if isinstance(matched, str) and matched in stop_sequences:
        return matched
    return None


def stop_reason_of(finish_reason: Any, has_tool_use: bool, refused: bool = False,
                   stop_sequence: str | None = None) -> str:
    """The Messages C{stop_reason} for a chat C{finish_reason}.

    C{stop} is C{end_turn}, or C{stop_sequence} when the upstream named the
    sequence (L{matched_stop_sequence}); C{length} is C{max_tokens};
    C{tool_calls} is C{tool_use}; C{content_filter} is C{refusal}.  An
    answer with tool calls whose upstream said C{stop} (Ollama and some vLLM
    parsers do) or nothing is C{tool_use}, as a client decides by it whether
    to run them; one that refused (C{refusal} text) is C{refusal}.
    """
    reason = _STOP_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    if reason is not None:
        return reason
    if has_tool_use:
        return "tool_use"
    if refused:
        return "refusal"
    return "stop_sequence" if stop_sequence is not None else "end_turn"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def messages_usage(usage: Any) -> dict[str, int] | None:
    """Chat C{usage} in the Messages API's terms, or None when there is none.

    Anthropic counts the input in three parts that add up to the whole:
    C{input_tokens} (neither read from nor written to the cache),
    C{cache_read_input_tokens} and C{cache_creation_input_tokens}.  The
    chat C{prompt_tokens} is the whole, C{prompt_tokens_details.cached_tokens}
    the part read from the cache, and C{cache_write_tokens} (the LiteLLM
    proxy's and OpenRouter's) the part written, 0 when the upstream does not
    say (OpenAI caches without being asked, and does not count writes).
    """
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    prompt = _count(usage.get("prompt_tokens"))
    cached = min(_count(details.get("cached_tokens")), prompt)
    written = min(_count(details.get("cache_write_tokens")), prompt - cached)
    return {
        "input_tokens": prompt - cached - written,
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def message_of(completion: Mapping[str, Any], model: str, message_id: str,
               stop_sequences: Iterable[str] = (),
               new_id: IdMaker = new_tool_id) -> dict[str, Any]:
    """The Messages C{message} for a whole chat completion.

    @param model: the model the client asked for (the name an alias was sent
        upstream under stays the proxy's business).
    @param message_id: the message's id (L{new_message_id}).
    @param stop_sequences: the request's C{stop_sequences}, to tell a stop on
        one of them (L{matched_stop_sequence}).
    @param new_id: makes the id of a tool call the upstream gave none.
    """
    choice, message = first_choice(completion)
    content: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning,
                        "signature": THINKING_SIGNATURE})
    refusal = string_of(message.get("refusal"))
    text = text_of(message.get("content")) + refusal
    if text:
        content.append({"type": "text", "text": text})
    for function in tool_calls_of(message):
        call_id = function.get("id")
        content.append({
            "type": "tool_use",
            "id": call_id if isinstance(call_id, str) and call_id else new_id(),
            "name": string_of(function.get("name")),
            "input": tool_input(arguments_text(function.get("arguments"))),
        })
    stop_sequence = matched_stop_sequence(choice, stop_sequences)
    stop_reason = stop_reason_of(choice.get("finish_reason"),
                                 any(block["type"] == "tool_use" for block in content),
                                 bool(refusal), stop_sequence)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence if stop_reason == "stop_sequence" else None,
        "usage": messages_usage(completion.get("usage")) or {
            "input_tokens": 0, "output_tokens": 0,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }
