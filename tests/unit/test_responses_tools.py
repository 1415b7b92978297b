"""A Responses API request's tools and tool_choice made chat completions
ones, for an upstream that only speaks chat completions (units:
L{genaiproxy.api.responses.request}, L{genaiproxy.api.responses.tools})."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.responses_items import chat_of, function, refused

from genaiproxy.api.responses.request import chat_request_of
from genaiproxy.api.responses.tools import DeclaredTool, chat_tools_of

CHAT_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


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
