"""A Responses API request made a chat completions request, for an upstream
that only speaks chat completions: Codex's request, the tools, tool_choice
and the other fields (units: L{genaiproxy.api.responses.request},
L{genaiproxy.api.responses.tools}; the input items are in
test_responses_input.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.responses_items import call, chat_of, function, output, refused, user

from genaiproxy.api.responses.request import BridgeRequestError, chat_request_of
from genaiproxy.api.responses.tools import DeclaredTool, chat_tools_of

CHAT_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


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

# Tools.

def test_function_tool() -> None:
    """A function tool keeps its name, description, parameters and strict."""
    schema = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"],
              "additionalProperties": False}
    chat = chat_of(tools=[{"type": "function", "name": "get", "description": "Get x.",
                           "parameters": schema, "strict": True}])
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get", "description": "Get x.", "parameters": schema, "strict": True}}]
    bare = chat_of(tools=[{"type": "function", "name": "now", "parameters": None,
                           "strict": None}])
    assert bare["tools"] == [{"type": "function", "function": {"name": "now"}}]


def test_custom_tool() -> None:
    """A custom tool is a function of one string parameter, its grammar in
    the description; a call to it comes back as a custom tool."""
    tool = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: line+"}}
    chat_tools = chat_tools_of([tool])
    function_ = chat_tools.tools[0]["function"]
    assert function_["name"] == "apply_patch"
    assert function_["description"] == (
        "Edit files.\n\nThe input must follow this lark grammar:\nstart: line+")
    assert function_["parameters"]["properties"] == {
        "input": {"type": "string", "description": "The tool's free-form input."}}
    assert function_["parameters"]["required"] == ["input"]
    assert chat_tools.names.declared("apply_patch") == DeclaredTool("custom", "apply_patch")
    text = chat_tools_of([{"type": "custom", "name": "note", "format": {"type": "text"}}])
    assert "description" not in text.tools[0]["function"]


def test_namespace_flattened() -> None:
    """A namespace's tools are chat functions named namespace__name (as
    Codex itself shows them), unique beside a top-level tool of that name,
    and the way back names the namespace."""
    tools = [function("ns__run"),
             {"type": "namespace", "name": "ns", "description": "Group.",
              "tools": [function("run"), {"type": "custom", "name": "edit"}]}]
    chat_tools = chat_tools_of(tools)
    names = [t["function"]["name"] for t in chat_tools.tools]
    assert names == ["ns__run", "ns__run_2", "ns__edit"]
    assert chat_tools.names.declared("ns__run") == DeclaredTool("function", "ns__run")
    assert chat_tools.names.declared("ns__run_2") == DeclaredTool("function", "run", "ns")
    assert chat_tools.names.declared("ns__edit") == DeclaredTool("custom", "edit", "ns")
    assert chat_tools.names.chat_name("run", "ns") == "ns__run_2"
    assert chat_tools.tools[1]["function"]["description"] == "Group.\n\nRun run."
    assert chat_tools.names.declared("invented") == DeclaredTool("function", "invented")


@given(st.lists(st.tuples(st.one_of(st.none(), st.text(min_size=1, max_size=80)),
                          st.text(min_size=1, max_size=80)), unique=True, max_size=8))
def test_chat_names_valid_and_unique(declared: list[tuple[str | None, str]]) -> None:
    """Whatever the declared names, each tool gets a chat name chat accepts,
    no two the same, and the name leads back to the tool."""
    tools: list[dict[str, Any]] = []
    for namespace, name in declared:
        tool = function(name)
        tools.append(tool if namespace is None else
                     {"type": "namespace", "name": namespace, "description": "", "tools": [tool]})
    chat_tools = chat_tools_of(tools)
    names = [t["function"]["name"] for t in chat_tools.tools]
    assert len(set(names)) == len(names) == len(declared)
    assert all(CHAT_NAME.fullmatch(name) for name in names)
    for namespace, name in declared:
        chat_name = chat_tools.names.chat_name(name, namespace)
        assert chat_tools.names.declared(chat_name) == DeclaredTool("function", name, namespace)


def test_hosted_tools_left_out() -> None:
    """Hosted tools are left out and named; with no other tool, no tools,
    tool_choice or parallel_tool_calls go (chat refuses them without tools)."""
    hosted = [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": []},
              {"type": "mcp", "server_label": "docs", "server_url": "https://x"},
              {"type": "computer_use_preview"}, {"type": "image_generation"},
              {"type": "code_interpreter", "container": {"type": "auto"}},
              {"type": "local_shell"}, {"type": "web_search"}]
    bridged = chat_request_of({"model": "m", "input": "Hi", "tools": hosted,
                               "tool_choice": "auto", "parallel_tool_calls": False})
    assert bridged.left_out == ("web_search", "file_search", "mcp:docs", "computer_use_preview",
                                "image_generation", "code_interpreter", "local_shell")
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(bridged.chat)


@pytest.mark.parametrize(("tools", "param"), [
    ({"type": "function"}, "tools"),
    ([function("a"), function("a")], "tools[1].name"),
    ([{"type": "function", "name": ""}], "tools[0].name"),
    (["web_search"], "tools[0]"),
    ([{"name": "x"}], "tools[0].type"),
    ([{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}],
     "tools[0].tools[0].type"),
    ([{"type": "namespace", "name": "n"}], "tools[0].tools"),
    ([function("a", parameters="{}")], "tools[0].parameters"),
    ([{"type": "custom", "name": "c", "format": {"type": "regex-ish"}}], "tools[0].format.type"),
])
def test_tools_refused(tools: Any, param: str) -> None:
    """Tool declarations that cannot be read get a 400 naming the field."""
    assert refused({"tools": tools}).param == param


# tool_choice.

TOOLS = [function("get"), {"type": "custom", "name": "patch"}, {"type": "web_search"}]


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_tool_choice_modes(choice: str) -> None:
    """auto, none and required go as they are, with parallel_tool_calls."""
    chat = chat_of(tools=TOOLS, tool_choice=choice, parallel_tool_calls=False)
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == (choice, False)


def test_tool_choice_named() -> None:
    """A function or a custom tool forced by name is the chat function forced."""
    assert chat_of(tools=TOOLS, tool_choice={"type": "function", "name": "get"})[
        "tool_choice"] == {"type": "function", "function": {"name": "get"}}
    assert chat_of(tools=TOOLS, tool_choice={"type": "custom", "name": "patch"})[
        "tool_choice"] == {"type": "function", "function": {"name": "patch"}}


def test_tool_choice_namespaced() -> None:
    """A function in a namespace can be forced by its name alone, or with
    its namespace when two namespaces hold one of that name."""
    tools = [{"type": "namespace", "name": name, "description": "", "tools": [function("run")]}
             for name in ("one", "two")]
    forced = {"type": "function", "name": "run", "namespace": "two"}
    assert chat_of(tools=tools, tool_choice=forced)["tool_choice"] == {
        "type": "function", "function": {"name": "two__run"}}
    assert chat_of(tools=tools[:1], tool_choice={"type": "function", "name": "run"})[
        "tool_choice"] == {"type": "function", "function": {"name": "one__run"}}
    ambiguous = refused({"tools": tools, "tool_choice": {"type": "function", "name": "run"}})
    assert ambiguous.param == "tool_choice.name"
    allowed = chat_of(tools=[*tools, function("get")], tool_choice={
        "type": "allowed_tools", "mode": "auto", "tools": [{"type": "namespace", "name": "two"},
                                                           {"type": "function", "name": "get"}]})
    assert (allowed["tool_choice"], [t["function"]["name"] for t in allowed["tools"]]) == (
        "auto", ["two__run", "get"])


def test_tool_choice_allowed_tools() -> None:
    """allowed_tools sends the allowed functions alone, with its mode."""
    chat = chat_of(tools=TOOLS, tool_choice={
        "type": "allowed_tools", "mode": "required",
        "tools": [{"type": "custom", "name": "patch"}, {"type": "web_search"}]})
    assert chat["tool_choice"] == "required"
    assert [t["function"]["name"] for t in chat["tools"]] == ["patch"]


@pytest.mark.parametrize(("choice", "param"), [
    ({"type": "web_search_preview"}, "tool_choice.type"),
    ({"type": "mcp", "server_label": "docs"}, "tool_choice.type"),
    ({"type": "image_generation"}, "tool_choice.type"),
    ({"type": "function", "name": "patch"}, "tool_choice.name"),
    ({"type": "function", "name": "nope"}, "tool_choice.name"),
    ("sometimes", "tool_choice"),
    ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "web_search"}]},
     "tool_choice.tools"),
    ({"type": "allowed_tools", "mode": "any", "tools": []}, "tool_choice.mode"),
])
def test_tool_choice_refused(choice: Any, param: str) -> None:
    """A tool_choice a chat upstream cannot honour gets a 400 naming it."""
    assert refused({"tools": TOOLS, "tool_choice": choice}).param == param


def test_hosted_tool_choice_says_why() -> None:
    """Forcing a hosted tool is refused as a tool that cannot run on chat."""
    error = refused({"tools": TOOLS, "tool_choice": {"type": "file_search"}})
    assert "cannot run on a chat completions upstream" in error.message
    only_hosted = refused({"tools": [{"type": "web_search"}], "tool_choice": "required"})
    assert only_hosted.param == "tool_choice"


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
