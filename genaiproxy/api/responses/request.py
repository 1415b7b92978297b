"""A Responses API request made a chat completions request, for an upstream
that only speaks chat completions (the request half of the Responses
bridge; L{genaiproxy.api.responses.tools} makes the tools chat functions,
L{genaiproxy.api.responses.input_items} makes the input items chat messages).

L{chat_request_of} takes the parsed body of C{POST /v1/responses} and gives
a L{BridgedRequest}: the chat body, and what the answer side needs to build
the Responses answer.  Whatever cannot be said to a chat upstream raises
L{BridgeRequestError}, which the client gets as a 400 naming the field.

What becomes what:
  - C{instructions}: the first message, C{system} (C{developer} for the
    gpt-5 family, L{is_gpt5}).  C{input}: a string is one user message;
    items become messages in order.  A C{developer} message is sent as
    C{system} outside the gpt-5 family (Ollama, vLLM and DeepSeek chat
    templates know no developer role).
  - A message's text parts (C{input_text}, C{output_text}, C{refusal}) are
    joined by newlines into one string, which every chat upstream takes;
    with an image or a file, a user message keeps its parts.  Images go as
    their URL or data URL, untouched; C{detail} is kept when chat knows it
    (C{auto}, C{low}, C{high}).  C{file_id} and C{file_url} name files
    stored at OpenAI: a 400.
  - C{function_call} and C{custom_tool_call} items that follow one another
    (or follow an assistant message) are ONE assistant message with all
    their C{tool_calls}, and each output is a C{tool} message right after
    the assistant message holding its call.  An output without its call, a
    call without its output, or a call id used twice: a 400, as the
    Responses API answers.  Images and files in an output go in a user
    message after the tool messages (a chat tool message holds text only).
  - Dropped, and named in L{BridgedRequest.dropped}: C{reasoning} and
    C{compaction} items (encrypted for OpenAI's models, meaningless
    elsewhere) and the call items of hosted tools (C{web_search_call}...),
    whose tools a chat upstream does not have.  C{item_reference} needs
    stored items: a 400.
  - C{max_output_tokens} is C{max_completion_tokens} for the gpt-5 family
    and C{max_tokens} otherwise, and the gpt-5 rules of
    L{genaiproxy.api.normalize} are applied here with the chat token field;
    applied again (L{genaiproxy.api.normalize.apply_route}) to the name an
    alias sends upstream, they change nothing, or fit that model.
  - C{reasoning.effort} is C{reasoning_effort}; C{text.format} is
    C{response_format} (C{text}: none sent); C{text.verbosity} is
    C{verbosity}; C{temperature}, C{top_p}, C{parallel_tool_calls},
    C{user}, C{safety_identifier}, C{prompt_cache_key},
    C{prompt_cache_retention}, C{service_tier} and C{metadata} go as they are.
  - A stream asks for its usage (C{stream_options.include_usage}).
  - Accepted with nothing to send: C{store} (chat's C{store} means something
    else; the proxy stores nothing), C{include}, C{stream_options},
    C{client_metadata}, C{reasoning.summary}, C{truncation} (no truncation
    is done: a context too long gets the upstream's error),
    C{top_logprobs} (shown only through C{include}), C{max_tool_calls}
    (counts hosted tool calls) and C{context_management} (OpenAI's own
    compaction).
  - Refused: C{previous_response_id}, C{conversation}, C{background: true}
    and C{prompt} need state kept at OpenAI, which the bridge does not keep.
  - Any other top-level field is ignored and named in
    L{BridgedRequest.ignored} for the log.  Not a 400: Codex adds request
    fields often, and every one is a field the real API knows (it rejects
    the others), so a 400 here would stop every Codex session at the first
    upgrade, while the field is most likely a hint that a chat upstream
    could not act on anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from genaiproxy.api.normalize import CHAT_TOKEN_FIELD, is_gpt5, normalize_gpt5
from genaiproxy.api.responses.input_items import messages_of
from genaiproxy.api.responses.tools import (
    NO_TOOLS,
    BridgeRequestError,
    ToolNames,
    chat_tool_choice_of,
    chat_tools_of,
)

__all__ = ["BridgeRequestError", "BridgedRequest", "chat_request_of"]

# Sent to chat under the same name, as they are.
_PASSED = ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key",
           "prompt_cache_retention", "service_tier", "metadata")
# Accepted; nothing to send (see the module's docstring).
_ACCEPTED = frozenset({"store", "include", "stream_options", "client_metadata", "truncation",
                       "top_logprobs", "max_tool_calls", "context_management"})
# Read by chat_request_of itself.
_READ = frozenset({"model", "input", "instructions", "stream", "tools", "tool_choice",
                   "parallel_tool_calls", "max_output_tokens", "reasoning", "text",
                   "previous_response_id", "conversation", "background", "prompt"})
_KNOWN = _READ | _ACCEPTED | frozenset(_PASSED)
_STATEFUL = {
    "previous_response_id": "previous_response_id refers to a response stored at OpenAI",
    "conversation": "conversation refers to a conversation stored at OpenAI",
    "prompt": "prompt refers to a prompt template stored at OpenAI",
}
_SEND_WHOLE = ("; this upstream only speaks chat completions, and the proxy's Responses "
               "bridge keeps no state: send the whole conversation in input (as Codex does "
               "with store: false).")


@dataclass(frozen=True)
class BridgedRequest:
    """A Responses request made a chat completions request.

    @ivar chat: the chat completions body, ready for C{json.dumps}.
    @ivar stream: the client asked for a stream of events.
    @ivar model: the model the client asked for, which the answer names.
    @ivar tools: the declared tool behind each chat function name.
    @ivar left_out: the hosted tools left out (for the request's log event).
    @ivar dropped: the input item types not sent (reasoning, ...), once each.
    @ivar ignored: the unknown top-level fields ignored, sorted.
    @ivar echo: the request's fields a Responses C{response} object repeats,
        with the API's defaults where the request had none: C{model},
        C{instructions}, C{tools} (as declared), C{tool_choice},
        C{parallel_tool_calls}, C{temperature}, C{top_p},
        C{max_output_tokens}, C{text}, C{reasoning}, C{metadata}, C{store},
        C{truncation}, C{user}, C{safety_identifier}, C{prompt_cache_key},
        C{service_tier}, C{background}, C{previous_response_id},
        C{top_logprobs}, C{max_tool_calls}.
    """

    chat: dict[str, Any]
    stream: bool
    model: str
    tools: ToolNames = NO_TOOLS
    left_out: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    echo: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def chat_request_of(body: object) -> BridgedRequest:
    """The chat completions request for the parsed Responses request C{body}.

    @raise BridgeRequestError: for a request a chat upstream cannot serve.
    """
    if not isinstance(body, Mapping):
        raise BridgeRequestError("The request body must be a JSON object.", None)
    _refuse_state(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BridgeRequestError("model must be a non-empty string.", "model")
    stream = body.get("stream")
    if stream not in (None, True, False):
        raise BridgeRequestError("stream must be a boolean.", "stream")
    gpt5 = is_gpt5(model)
    tools = chat_tools_of(body.get("tools"))
    choice, chat_tools = chat_tool_choice_of(body.get("tool_choice"), tools)
    messages = []
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BridgeRequestError("instructions must be a string.", "instructions")
    if instructions:
        messages.append({"role": "developer" if gpt5 else "system", "content": instructions})
    if "input" not in body:
        raise BridgeRequestError("input is required.", "input")
    transcript = messages_of(body["input"], tools.names, gpt5)
    messages.extend(transcript.messages)
    chat: dict[str, Any] = {"model": model, "messages": messages}
    if chat_tools:
        chat["tools"] = list(chat_tools)
        if choice is not None:
            chat["tool_choice"] = choice
        parallel = body.get("parallel_tool_calls")
        if parallel is not None:
            if not isinstance(parallel, bool):
                raise BridgeRequestError("parallel_tool_calls must be a boolean.",
                                         "parallel_tool_calls")
            chat["parallel_tool_calls"] = parallel
    for name in _PASSED:
        if body.get(name) is not None:
            chat[name] = body[name]
    _limit(body, chat, gpt5)
    _reasoning(body, chat)
    _text(body, chat)
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    if gpt5:
        normalize_gpt5(chat, CHAT_TOKEN_FIELD)
    return BridgedRequest(
        chat=chat, stream=stream is True, model=model, tools=tools.names,
        left_out=tools.left_out, dropped=transcript.dropped,
        ignored=tuple(sorted(name for name in body if name not in _KNOWN)),
        echo=MappingProxyType(_echo(body, model)))


def _refuse_state(body: Mapping[str, Any]) -> None:
    """A 400 for the fields that need state kept at OpenAI."""
    for name, why in _STATEFUL.items():
        if body.get(name) is not None:
            raise BridgeRequestError(why + _SEND_WHOLE, name)
    if body.get("background") not in (None, False):
        raise BridgeRequestError(
            "background: true needs the response kept to be fetched later" + _SEND_WHOLE,
            "background")


def _limit(body: Mapping[str, Any], chat: dict[str, Any], gpt5: bool) -> None:
    limit = body.get("max_output_tokens")
    if limit is None:
        return
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise BridgeRequestError("max_output_tokens must be a positive integer.",
                                 "max_output_tokens")
    chat[CHAT_TOKEN_FIELD if gpt5 else "max_tokens"] = limit


def _reasoning(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return
    if not isinstance(reasoning, Mapping):
        raise BridgeRequestError("reasoning must be an object.", "reasoning")
    effort = reasoning.get("effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise BridgeRequestError("reasoning.effort must be a string.", "reasoning.effort")
        chat["reasoning_effort"] = effort


def _text(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    """C{text.format} as C{response_format}, C{text.verbosity} as C{verbosity}."""
    text = body.get("text")
    if text is None:
        return
    if not isinstance(text, Mapping):
        raise BridgeRequestError("text must be an object.", "text")
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    form = text.get("format")
    if form is None:
        return
    kind = form.get("type") if isinstance(form, Mapping) else None
    if kind == "text":
        return
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        name, schema = form.get("name"), form.get("schema")
        if not isinstance(name, str) or not name:
            raise BridgeRequestError("text.format.name must be a non-empty string.",
                                     "text.format.name")
        if not isinstance(schema, Mapping):
            raise BridgeRequestError("text.format.schema must be a JSON schema object.",
                                     "text.format.schema")
        described = {"name": name, "schema": schema}
        for key in ("description", "strict"):
            if form.get(key) is not None:
                described[key] = form[key]
        chat["response_format"] = {"type": "json_schema", "json_schema": described}
    else:
        raise BridgeRequestError(
            "text.format.type must be 'text', 'json_object' or 'json_schema'.",
            "text.format.type")


def _echo(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The request's fields as a C{response} object repeats them."""
    def given(name: str, default: Any) -> Any:
        value = body.get(name)
        return default if value is None else value

    reasoning = given("reasoning", {})
    text = dict(given("text", {}))
    text.setdefault("format", {"type": "text"})
    return {
        "model": model,
        "instructions": body.get("instructions"),
        "tools": list(given("tools", [])),
        "tool_choice": given("tool_choice", "auto"),
        "parallel_tool_calls": given("parallel_tool_calls", True),
        "temperature": given("temperature", 1.0),
        "top_p": given("top_p", 1.0),
        "max_output_tokens": body.get("max_output_tokens"),
        "text": text,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "metadata": given("metadata", {}),
        "store": given("store", True),
        "truncation": given("truncation", "disabled"),
        "user": body.get("user"),
        "safety_identifier": body.get("safety_identifier"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "service_tier": given("service_tier", "auto"),
        "background": False,
        "previous_response_id": None,
        "top_logprobs": given("top_logprobs", 0),
        "max_tool_calls": body.get("max_tool_calls"),
    }
