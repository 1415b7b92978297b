"""An Anthropic Messages API request made a chat completions request, for
an upstream that only speaks chat completions (the request half of the
Messages bridge; L{genaiproxy.api.messages.tools} makes the tools chat
functions, L{genaiproxy.api.messages.transcript} the messages chat messages,
L{genaiproxy.api.messages.blocks} the content blocks chat content).

L{chat_request_of} takes the parsed body of C{POST /v1/messages} and gives
a L{BridgedMessages}: the chat body, and what the answer side and the log
need.  Whatever cannot be said to a chat upstream raises
L{MessagesRequestError}, which the client gets as a 400
C{invalid_request_error}, before any upstream call.

What becomes what:
  - C{model} (required) is the chat model; C{max_tokens} (required, a
    positive integer) is C{max_tokens}, or C{max_completion_tokens} for the
    gpt-5 family and the o-series, which refuse C{max_tokens}
    (L{BridgedMessages.chat_for} decides by the name sent upstream).
  - C{system} (a string, or text blocks) is the first message, C{system};
    Claude Code's C{x-anthropic-billing-header:} block is left out.  A
    C{system} message inside C{messages} stays where it is.
  - Blocks: C{text}; C{image} (base64 as a C{data:} URL, or a URL) an
    C{image_url} part; C{search_result} and plain-text C{document}s as text;
    C{tool_use} the assistant message's C{tool_calls} (the id kept, the
    input as JSON arguments); C{tool_result} a C{tool} message with the same
    C{tool_call_id} right after the assistant message holding the call,
    its text as content (C{is_error}: the content starts C{Error: }), its
    images and the turn's other blocks in a user message after the tool
    messages.  A user turn of text only is one string; text blocks are
    joined by a blank line.  Not sent, named in L{BridgedMessages.dropped}:
    C{thinking} and C{redacted_thinking} (signed for Anthropic's models) and
    the record of server tools' runs (C{server_tool_use},
    C{web_search_tool_result}...).  A 400: a PDF, file or URL C{document},
    an image from the Files API, an unknown block type.
  - C{tools}: client tools are chat functions of the same name (no renaming
    is needed); server tools and C{mcp_servers} are left out and named in
    L{BridgedMessages.left_out}.  C{tool_choice}: C{auto}, C{any} ->
    C{required}, C{tool} -> the named function, C{none};
    C{disable_parallel_tool_use} -> C{parallel_tool_calls: false}.
  - C{stop_sequences} -> C{stop}; C{temperature} and C{top_p} as they are
    (for the gpt-5 family and the o-series, C{temperature} 1 and no
    C{top_p}, the only values they take).
  - C{thinking} and C{output_config.effort} -> C{reasoning_effort}, sent
    only to a model that reasons (L{reasons}): the effort C{low},
    C{medium}, C{high} as it is, C{xhigh} and C{max} as C{high}; without an
    effort, a thinking budget (C{enabled}, C{budget_tokens}) below 4,096
    tokens is C{low}, below 16,384 C{medium}, more C{high} (Claude Code's
    "think" asks 4,000, "megathink" 10,000, "ultrathink" 31,999).
    C{adaptive} (Claude Code's) and C{disabled} ask nothing: the upstream's
    default.  C{output_config.format} (a JSON schema) -> C{response_format}.
  - C{metadata.user_id} -> C{user}, as the first 32 hex digits of its
    SHA-256: Claude Code's is a JSON string of its device, account and
    session ids, which must not leave as it is; the digest is stable, so an
    upstream can still tell one user's requests apart.
  - A stream asks for its usage (C{stream_options.include_usage}).
  - Accepted with nothing to send: C{top_k} (chat has none),
    C{context_management} (Anthropic's own context editing),
    C{cache_control} (prompt caching is automatic on chat upstreams),
    C{service_tier} (Anthropic's tiers are not chat's), C{container},
    C{diagnostics}, C{inference_geo}, C{speed}, C{user_profile_id},
    C{workspace_id}.
  - Any other top-level field is ignored and named in
    L{BridgedMessages.ignored} for the log, as are unknown C{metadata} keys
    and an unknown C{thinking.type} or C{output_config.effort}: Claude Code
    adds fields often, and a 400 would stop every session at its next
    upgrade for a hint a chat upstream could not act on anyway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genaiproxy.api.messages.request_error import MessagesRequestError
from genaiproxy.api.messages.tools import chat_tool_choice_of, chat_tools_of, left_out_servers
from genaiproxy.api.messages.transcript import messages_of, system_text
from genaiproxy.api.normalize import CHAT_TOKEN_FIELD, is_gpt5, normalize_gpt5

__all__ = ["BridgedMessages", "MessagesRequestError", "chat_request_of", "reasons",
           "user_digest"]

# Read by chat_request_of.
_READ = frozenset({"model", "messages", "max_tokens", "system", "tools", "tool_choice",
                   "stop_sequences", "temperature", "top_p", "stream", "thinking",
                   "output_config", "output_format", "metadata", "mcp_servers"})
# Accepted; nothing to send (see the module's docstring).
_ACCEPTED = frozenset({"top_k", "context_management", "cache_control", "service_tier",
                       "container", "diagnostics", "inference_geo", "speed",
                       "user_profile_id", "workspace_id"})
# The chat fields that depend on the model they are sent to.
_MODEL_FIELDS = frozenset({"model", "max_tokens", CHAT_TOKEN_FIELD, "temperature", "top_p",
                           "reasoning_effort"})
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_THINKING_TYPES = frozenset({"enabled", "adaptive", "disabled", "between_tools"})
# Budgets (in tokens) below which thinking is a low, then a medium effort.
_LOW_BUDGET, _MEDIUM_BUDGET = 4096, 16384
_O_SERIES = re.compile(r"o[0-9]+(-|$)")
_USER_DIGITS = 32


@dataclass(frozen=True)
class BridgedMessages:
    """A Messages request made a chat completions request.

    @ivar chat: the chat completions body for the model the client asked
        for, ready for C{json.dumps}; L{chat_for} makes it for another name.
    @ivar stream: the client asked for a stream of events.
    @ivar model: the model the client asked for, which the answer names.
    @ivar max_tokens: the client's C{max_tokens}.
    @ivar thinking: the client asked for thinking (C{enabled}, C{adaptive}):
        the answer may hold thinking blocks.
    @ivar stop_sequences: the client's C{stop_sequences}, for the answer's
        C{stop_sequence}.
    @ivar reasoning_effort: the effort asked for, as chat says it, sent
        only to a model that reasons; None when none was asked.
    @ivar temperature: the client's C{temperature}, or None.
    @ivar top_p: the client's C{top_p}, or None.
    @ivar left_out: the server tools (by type) and MCP servers
        (C{mcp:<name>}) left out, for the request's log event.
    @ivar dropped: the content block types not sent (thinking...), once each.
    @ivar ignored: the unknown fields ignored, sorted (nested ones dotted).
    """

    chat: dict[str, Any]
    stream: bool
    model: str
    max_tokens: int
    thinking: bool = False
    stop_sequences: tuple[str, ...] = ()
    reasoning_effort: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    left_out: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    def chat_for(self, model: str, max_output_tokens: int | None = None) -> dict[str, Any]:
        """The chat body naming C{model} upstream (a models.yaml alias's
        upstream name), with that model's rules: its token field, its
        sampling fields, C{reasoning_effort} only if it reasons.

        @param max_output_tokens: a cap on the tokens asked for (the model
            entry's C{max_output_tokens}); a request asking for more is sent
            with the cap.
        """
        chat = {"model": model,
                **{name: value for name, value in self.chat.items()
                   if name not in _MODEL_FIELDS}}
        limit = self.max_tokens
        if max_output_tokens is not None:
            limit = min(limit, max_output_tokens)
        _apply_model_rules(chat, limit, self.temperature, self.top_p, self.reasoning_effort)
        return chat


def chat_request_of(body: object) -> BridgedMessages:
    """The chat completions request for the parsed Messages request C{body}.

    @raise MessagesRequestError: for a request a chat upstream cannot serve.
    """
    if not isinstance(body, Mapping):
        raise MessagesRequestError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise MessagesRequestError("model: required, a non-empty string.")
    max_tokens = body.get("max_tokens")
    if not _positive_int(max_tokens):
        raise MessagesRequestError(
            "max_tokens: required, a positive integer (the most tokens the answer may hold).")
    stream = body.get("stream")
    if stream not in (None, True, False):
        raise MessagesRequestError("stream: must be a boolean.")
    ignored = sorted(name for name in body if name not in _READ | _ACCEPTED)
    messages = []
    system = _system(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    transcript = messages_of(body.get("messages"))
    messages.extend(transcript.messages)
    chat: dict[str, Any] = {"model": model, "messages": messages}
    tools = chat_tools_of(body.get("tools"))
    choice, parallel = chat_tool_choice_of(body.get("tool_choice"), tools)
    if tools.tools:
        chat["tools"] = list(tools.tools)
        if choice is not None:
            chat["tool_choice"] = choice
        if parallel is not None:
            chat["parallel_tool_calls"] = parallel
    stop = _stop_sequences(body.get("stop_sequences"))
    if stop:
        chat["stop"] = list(stop)
    response_format = _response_format(body)
    if response_format is not None:
        chat["response_format"] = response_format
    user = _user(body.get("metadata"), ignored)
    if user is not None:
        chat["user"] = user
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    thinking, effort = _reasoning(body, ignored)
    temperature, top_p = _number(body, "temperature"), _number(body, "top_p")
    assert isinstance(max_tokens, int)  # _positive_int said so; for the type checker
    _apply_model_rules(chat, max_tokens, temperature, top_p, effort)
    return BridgedMessages(
        chat=chat, stream=stream is True, model=model, max_tokens=max_tokens,
        thinking=thinking, stop_sequences=stop, reasoning_effort=effort,
        temperature=temperature, top_p=top_p,
        left_out=tools.left_out + left_out_servers(body.get("mcp_servers")),
        dropped=transcript.dropped, ignored=tuple(sorted(ignored)))


def reasons(model: str) -> bool:
    """True for the models that take C{reasoning_effort}, by their name:
    the gpt-5 family, the o-series (o1, o3-mini, o4-mini...) and gpt-oss.
    Another model (gpt-4.1, Llama, Qwen...) refuses the field or ignores it."""
    lowered = model.lower()
    return (is_gpt5(lowered) or _O_SERIES.match(lowered) is not None
            or lowered.startswith("gpt-oss"))


def user_digest(user_id: str) -> str:
    """The C{user} sent for a C{metadata.user_id}: a short stable digest, never
    the value (Claude Code's holds its device, account and session ids)."""
    raw = user_id.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:_USER_DIGITS]


def _apply_model_rules(chat: dict[str, Any], limit: int, temperature: float | None,
                       top_p: float | None, effort: str | None) -> None:
    """Set the fields that depend on C{chat["model"]}: the gpt-5 family and
    the o-series take C{max_completion_tokens}, C{temperature} 1 and no
    C{top_p} (L{normalize_gpt5}); C{reasoning_effort} goes to a model that
    reasons."""
    model = chat["model"]
    lowered = model.lower()
    token_rules = is_gpt5(lowered) or _O_SERIES.match(lowered) is not None
    chat["max_tokens"] = limit
    if temperature is not None:
        chat["temperature"] = temperature
    if top_p is not None and not token_rules:
        chat["top_p"] = top_p
    if token_rules:
        normalize_gpt5(chat, CHAT_TOKEN_FIELD)
    if effort is not None and reasons(model):
        chat["reasoning_effort"] = effort


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise MessagesRequestError(f"{name}: must be a number.")
    return value


def _system(system: object) -> str:
    """The top-level C{system}'s text ("" for none)."""
    if system is None or isinstance(system, str):
        return system or ""
    return system_text(system, "system", skip_billing=True)


def _stop_sequences(stop: object) -> tuple[str, ...]:
    if stop is None:
        return ()
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise MessagesRequestError("stop_sequences: must be an array of strings.")
    return tuple(stop)


def _user(metadata: object, ignored: list[str]) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise MessagesRequestError("metadata: must be an object.")
    ignored.extend(f"metadata.{key}" for key in metadata if key != "user_id")
    user_id = metadata.get("user_id")
    if user_id is None:
        return None
    if not isinstance(user_id, str):
        raise MessagesRequestError("metadata.user_id: must be a string.")
    return user_digest(user_id) if user_id else None


def _reasoning(body: Mapping[str, Any], ignored: list[str]) -> tuple[bool, str | None]:
    """Whether thinking was asked for, and the chat C{reasoning_effort}."""
    thinking = body.get("thinking")
    asked, budget_effort = False, None
    if thinking is not None:
        if not isinstance(thinking, Mapping):
            raise MessagesRequestError("thinking: must be an object.")
        kind = thinking.get("type")
        if kind not in _THINKING_TYPES:
            ignored.append("thinking.type")
        asked = kind in ("enabled", "adaptive", "between_tools")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not _positive_int(budget):
                raise MessagesRequestError(
                    "thinking.budget_tokens: required with enabled thinking, a positive integer.")
            assert isinstance(budget, int)
            budget_effort = ("low" if budget < _LOW_BUDGET else
                             "medium" if budget < _MEDIUM_BUDGET else "high")
    config = _output_config(body)
    effort = config.get("effort")
    if effort is None:
        return asked, budget_effort
    if not isinstance(effort, str):
        raise MessagesRequestError("output_config.effort: must be a string.")
    if effort not in _EFFORTS:
        ignored.append("output_config.effort")
        return asked, budget_effort
    return asked, _EFFORTS[effort]


def _output_config(body: Mapping[str, Any]) -> Mapping[str, Any]:
    config = body.get("output_config")
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise MessagesRequestError("output_config: must be an object.")
    return config


def _response_format(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """C{output_config.format} (or the beta's top-level C{output_format}),
    a JSON schema for the answer, as chat's C{response_format}."""
    where = "output_config.format"
    form = _output_config(body).get("format")
    if form is None:
        where, form = "output_format", body.get("output_format")
    if form is None:
        return None
    if not isinstance(form, Mapping) or form.get("type") != "json_schema":
        raise MessagesRequestError(f"{where}.type: must be 'json_schema'.")
    schema = form.get("schema")
    if not isinstance(schema, Mapping):
        raise MessagesRequestError(f"{where}.schema: must be a JSON schema (an object).")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(schema)}}
