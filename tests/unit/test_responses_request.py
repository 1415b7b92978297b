"""A Responses API request made a chat completions request, for an upstream
that only speaks chat completions: Codex's request, the echo, and the other
fields (unit: L{genaiproxy.api.responses.request}; the input items are in
test_responses_input.py, the tools and tool_choice in
test_responses_tools.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.responses_items import call, chat_of, function, output, refused, user

from genaiproxy.api.responses.request import BridgeRequestError, chat_request_of
from genaiproxy.api.responses.tools import DeclaredTool

# What Codex (0.169, and codex-rs's ResponsesApiRequest) sends for a turn
# whose history holds two calls made together, one of them in a namespace.
CODEX_TOOLS = [
    function("exec_command", parameters={
        "type": "object", "properties": {"cmd": {"type": "string"},
                                         "workdir": {"type": "string"}},
        "required": ["cmd"], "additionalProperties": False}),
    function("write_stdin"),
    function("view_image"),
    {"type": "namespace", "name": "multi_agent_v1", "description": "Tools to run sub-agents.",
     "tools": [function("spawn_agent"), function("wait_agent")]},
    {"type": "web_search", "external_web_access": False},
]
CODEX_REQUEST: dict[str, Any] = {
    "model": "gpt-5.1-codex",
    "instructions": "You are Codex.",
    "input": [
        {"type": "message", "role": "developer",
         "content": [{"type": "input_text", "text": "<permissions instructions>"}]},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "# AGENTS.md"},
                     {"type": "input_text", "text": "<environment_context/>"}]},
        user("List the files, and ask a sub-agent to check them."),
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Listing"}],
         "encrypted_content": "gAAAAB..."},
        {"type": "message", "role": "assistant", "phase": "commentary",
         "content": [{"type": "output_text", "text": "Listing them."}]},
        call("call_1", arguments='{"cmd":"ls"}'),
        call("call_2", "spawn_agent", '{"message":"check"}', namespace="multi_agent_v1"),
        output("call_1", "README.md\n"),
        output("call_2", '{"agent_id":"a1"}'),
    ],
    "tools": CODEX_TOOLS,
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "019a-thread",
    "text": {"verbosity": "low"},
    "client_metadata": {"x-codex-turn-metadata": "{}"},
}


def chat_function(name: str, description: str, parameters: Any = None) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": parameters or {"type": "object", "properties": {}}, "strict": False}}


def test_codex_request() -> None:
    """A Codex turn becomes the chat request a chat upstream serves: gpt-5
    roles, the two calls in one assistant message with their outputs after
    it, the namespace flattened, web_search and the reasoning item left out
    (and named), usage asked for, and nothing Codex-only sent on."""
    bridged = chat_request_of(CODEX_REQUEST)
    assert bridged.chat == {
        "model": "gpt-5.1-codex",
        "messages": [
            {"role": "developer", "content": "You are Codex."},
            {"role": "developer", "content": "<permissions instructions>"},
            {"role": "user", "content": "# AGENTS.md\n<environment_context/>"},
            {"role": "user", "content": "List the files, and ask a sub-agent to check them."},
            {"role": "assistant", "content": "Listing them.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "multi_agent_v1__spawn_agent",
                              "arguments": '{"message":"check"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "README.md\n"},
            {"role": "tool", "tool_call_id": "call_2", "content": '{"agent_id":"a1"}'},
        ],
        "tools": [
            chat_function("exec_command", "Run exec_command.", CODEX_TOOLS[0]["parameters"]),
            chat_function("write_stdin", "Run write_stdin."),
            chat_function("view_image", "Run view_image."),
            chat_function("multi_agent_v1__spawn_agent",
                          "Tools to run sub-agents.\n\nRun spawn_agent."),
            chat_function("multi_agent_v1__wait_agent",
                          "Tools to run sub-agents.\n\nRun wait_agent."),
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "prompt_cache_key": "019a-thread",
        "reasoning_effort": "medium",
        "verbosity": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert bridged.stream is True
    assert bridged.model == "gpt-5.1-codex"
    assert bridged.left_out == ("web_search",)
    assert bridged.dropped == ("reasoning",)
    assert bridged.ignored == ()
    assert bridged.tools.declared("multi_agent_v1__spawn_agent") == DeclaredTool(
        "function", "spawn_agent", "multi_agent_v1")
    assert bridged.tools.declared("exec_command") == DeclaredTool("function", "exec_command")
    json.dumps(bridged.chat)


def test_echo() -> None:
    """The answer side gets the fields a response object repeats: the
    request's own, with the API's defaults where it had none."""
    echo = chat_request_of(CODEX_REQUEST).echo
    assert echo["model"] == "gpt-5.1-codex"
    assert echo["instructions"] == "You are Codex."
    assert echo["tools"] == CODEX_TOOLS
    assert echo["tool_choice"] == "auto"
    assert echo["reasoning"] == {"effort": "medium", "summary": "auto"}
    assert echo["text"] == {"verbosity": "low", "format": {"type": "text"}}
    assert echo["store"] is False
    assert echo["prompt_cache_key"] == "019a-thread"
    plain = chat_request_of({"model": "m", "input": "Hi"}).echo
    assert (plain["temperature"], plain["top_p"], plain["parallel_tool_calls"]) == (1.0, 1.0, True)
    assert (plain["metadata"], plain["tools"], plain["truncation"]) == ({}, [], "disabled")
    assert plain["instructions"] is None and plain["max_output_tokens"] is None


# The other fields.

def test_sampling_and_identity_fields() -> None:
    """Fields chat takes under the same name go as they are."""
    fields = {"temperature": 0.2, "top_p": 0.9, "user": "u", "safety_identifier": "s",
              "prompt_cache_key": "k", "prompt_cache_retention": "24h",
              "service_tier": "flex", "metadata": {"a": "b"}}
    chat = chat_of(**fields)
    assert {name: chat[name] for name in fields} == fields


def test_token_limit() -> None:
    """max_output_tokens is max_tokens, or max_completion_tokens for gpt-5,
    whose other rules (temperature 1) apply too."""
    assert chat_of(max_output_tokens=50)["max_tokens"] == 50
    gpt5 = chat_request_of({"model": "gpt-5", "input": "Hi", "max_output_tokens": 50,
                            "temperature": 0.3}).chat
    assert gpt5["max_completion_tokens"] == 50
    assert "max_tokens" not in gpt5 and gpt5["temperature"] == 1
    assert refused({"max_output_tokens": "50"}).param == "max_output_tokens"
    assert refused({"max_output_tokens": 0}).param == "max_output_tokens"


def test_reasoning() -> None:
    """reasoning.effort is reasoning_effort; a summary alone asks nothing."""
    assert chat_of(reasoning={"effort": "high", "summary": "auto"})["reasoning_effort"] == "high"
    assert "reasoning_effort" not in chat_of(reasoning={"summary": "detailed"})
    assert refused({"reasoning": "high"}).param == "reasoning"


def test_text_format() -> None:
    """text.format is response_format (text: none), verbosity is verbosity."""
    schema = {"type": "object", "properties": {}}
    chat = chat_of(text={"format": {"type": "json_schema", "name": "out", "schema": schema,
                                    "strict": True, "description": "The answer."},
                         "verbosity": "high"})
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": schema, "strict": True, "description": "The answer."}}
    assert chat["verbosity"] == "high"
    assert chat_of(text={"format": {"type": "json_object"}})["response_format"] == {
        "type": "json_object"}
    assert "response_format" not in chat_of(text={"format": {"type": "text"}})


@pytest.mark.parametrize(("text", "param"), [
    ("json", "text"),
    ({"format": {"type": "xml"}}, "text.format.type"),
    ({"format": {"type": "json_schema", "schema": {}}}, "text.format.name"),
    ({"format": {"type": "json_schema", "name": "n"}}, "text.format.schema"),
])
def test_text_refused(text: Any, param: str) -> None:
    assert refused({"text": text}).param == param


def test_stream_asks_for_usage() -> None:
    """A streamed request asks the upstream for its usage; a plain one
    sends no stream fields."""
    streamed = chat_request_of({"model": "m", "input": "Hi", "stream": True,
                                "stream_options": {"include_obfuscation": False}})
    assert streamed.stream is True
    assert streamed.chat["stream"] is True
    assert streamed.chat["stream_options"] == {"include_usage": True}
    plain = chat_request_of({"model": "m", "input": "Hi", "stream": False})
    assert plain.stream is False
    assert not {"stream", "stream_options"} & set(plain.chat)


def test_accepted_fields() -> None:
    """store, include, stream_options, client_metadata and their kind are
    accepted and send nothing; background false is accepted."""
    fields = {"store": True, "include": ["reasoning.encrypted_content"],
              "client_metadata": {"k": "v"}, "truncation": "auto", "top_logprobs": 0,
              "max_tool_calls": 3, "context_management": [{"type": "compaction"}],
              "background": False, "previous_response_id": None}
    bridged = chat_request_of({"model": "m", "input": "Hi", **fields})
    assert set(bridged.chat) == {"model", "messages"}
    assert bridged.ignored == ()


def test_unknown_fields_ignored() -> None:
    """Unknown top-level fields are ignored and named for the log."""
    bridged = chat_request_of({"model": "m", "input": "Hi", "zeta": 1, "alpha": {}})
    assert bridged.ignored == ("alpha", "zeta")
    assert set(bridged.chat) == {"model", "messages"}


@pytest.mark.parametrize(("field", "value"), [
    ("previous_response_id", "resp_1"),
    ("conversation", "conv_1"),
    ("background", True),
    ("prompt", {"id": "pmpt_1"}),
])
def test_state_refused(field: str, value: Any) -> None:
    """What needs state kept at OpenAI gets a 400 saying the bridge keeps
    none and what to send instead."""
    error = refused({field: value})
    assert error.param == field
    assert "keeps no state" in error.message
    assert "send the whole conversation in input" in error.message


@pytest.mark.parametrize(("body", "param"), [
    ([], None),
    ({"input": "Hi"}, "model"),
    ({"model": 5, "input": "Hi"}, "model"),
    ({"model": "m", "input": "Hi", "stream": "yes"}, "stream"),
    ({"model": "m", "input": "Hi", "instructions": ["x"]}, "instructions"),
    ({"model": "m", "input": "Hi", "tools": [function("a")], "parallel_tool_calls": "y"},
     "parallel_tool_calls"),
])
def test_body_refused(body: Any, param: str | None) -> None:
    with pytest.raises(BridgeRequestError) as caught:
        chat_request_of(body)
    assert caught.value.param == param
