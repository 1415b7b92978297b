"""An Anthropic Messages API request made a chat completions request, for
an upstream that only speaks chat completions: Claude Code's request, the
required fields, the system text, the tools and tool_choice, and their 400s
(units: L{genaiproxy.api.messages.request} with C{transcript} and C{tools}).
The content blocks and the tool turns are in test_messages_blocks.py, the
other fields in test_messages_fields.py."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from support.messages_items import (
    CACHED,
    CHAT_TOKEN,
    USER_ID,
    assistant,
    call,
    chat_of,
    function,
    image,
    messages_of,
    refused,
    request,
    system,
    text,
    thinking,
    tool,
    tool_result,
    tool_use,
    user,
)

from genaiproxy.api.messages.request import chat_request_of

# What Claude Code 2.1.328 sends (captured on loopback, `claude -p "List the
# files here" --allowedTools Bash`; texts shortened), with the turn after its
# first Bash call.
CC_TOOLS = [
    tool("Agent", prompt={"type": "string"}),
    tool("Bash", command={"type": "string"}, description={"type": "string"},
         timeout={"type": "number"}),
    tool("Edit", file_path={"type": "string"}, old_string={"type": "string"}),
    tool("ListAgents"),
    tool("Read", file_path={"type": "string"}),
    tool("ReportFindings", findings={"type": "array"}),
    tool("ScheduleWakeup", seconds={"type": "number"}),
    tool("Skill", skill={"type": "string"}),
    tool("ToolSearch", query={"type": "string"}, max_results={"type": "number"}),
    tool("Workflow", name={"type": "string"}),
    {**tool("DeferredToolPlaceholder", "Reserved placeholder; never call this tool."),
     "defer_loading": True},
    tool("Write", file_path={"type": "string"}, content={"type": "string"}),
]
REMINDER = "<system-reminder>\nAttribution for git commits...\n</system-reminder>\n"
ENVIRONMENT = "# Environment\nYou have been invoked in the following environment: ..."
CLAUDE_CODE_REQUEST: dict[str, Any] = {
    "model": "gpt-5",
    "messages": [
        user(text(REMINDER), text("List the files here")),
        system(text(ENVIRONMENT, **CACHED)),
        assistant(thinking(), text("I'll list them."),
                  tool_use("toolu_01", "Bash", command="ls", description="List files")),
        user(tool_result("toolu_01", [text("README.md\nsetup.py")]),
             text("<system-reminder>Keep it short.</system-reminder>")),
    ],
    "system": [
        text("x-anthropic-billing-header: cc_version=2.1.328.ccf; cc_entrypoint=sdk-cli;"),
        text("You are a Claude agent, built on Anthropic's Claude Agent SDK.", **CACHED),
        text("\nYou are an agent working with the user toward their goals...", **CACHED),
    ],
    "tools": CC_TOOLS,
    "metadata": {"user_id": USER_ID},
    "max_tokens": 32000,
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "stream": True,
}


def test_claude_code_request() -> None:
    """Claude Code's turn becomes the chat request a chat upstream serves:
    the system text without the billing header, the system message where it
    was, the call in the assistant message with its result right after it
    and the turn's text after that, every tool a function, the effort for a
    reasoning model, a digest for the user, usage asked for, and nothing
    Anthropic-only sent on."""
    bridged = chat_request_of(CLAUDE_CODE_REQUEST)
    assert bridged.chat == {
        "model": "gpt-5",
        "messages": [
            {"role": "system", "content":
                "You are a Claude agent, built on Anthropic's Claude Agent SDK.\n\n"
                "\nYou are an agent working with the user toward their goals..."},
            {"role": "user", "content": REMINDER + "\n\nList the files here"},
            {"role": "system", "content": ENVIRONMENT},
            {"role": "assistant", "content": "I'll list them.", "tool_calls": [
                call("toolu_01", "Bash", '{"command":"ls","description":"List files"}')]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "README.md\nsetup.py"},
            {"role": "user", "content": "<system-reminder>Keep it short.</system-reminder>"},
        ],
        "tools": [function(declared) for declared in CC_TOOLS],
        "max_completion_tokens": 32000,
        "reasoning_effort": "high",
        "user": hashlib.sha256(USER_ID.encode()).hexdigest()[:32],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert bridged.stream is True
    assert bridged.model == "gpt-5"
    assert bridged.max_tokens == 32000
    assert bridged.thinking is True
    assert bridged.dropped == ("thinking",)
    assert (bridged.left_out, bridged.ignored) == ((), ())
    dumped = json.dumps(bridged.chat, ensure_ascii=False)
    assert "device_id" not in dumped and "65f9ab2c" not in dumped
    assert "billing" not in dumped and "cache_control" not in dumped


def test_chat_for_upstream_name() -> None:
    """chat_for names another model upstream (an alias's) with that model's
    rules, and caps the tokens asked for at a model's limit."""
    bridged = chat_request_of({**CLAUDE_CODE_REQUEST, "model": "claude-sonnet-4-5",
                               "temperature": 0.5, "top_p": 0.9})
    assert "reasoning_effort" not in bridged.chat
    assert (bridged.chat["max_tokens"], bridged.chat["temperature"]) == (32000, 0.5)
    upstream = bridged.chat_for("gpt-5-mini", max_output_tokens=16000)
    assert upstream["model"] == "gpt-5-mini"
    assert (upstream["max_completion_tokens"], upstream["reasoning_effort"]) == (16000, "high")
    assert upstream["temperature"] == 1
    assert not {"max_tokens", "top_p"} & set(upstream)
    assert upstream["messages"] == bridged.chat["messages"]
    plain = bridged.chat_for("llama3.3", max_output_tokens=64000)
    assert (plain["max_tokens"], plain["temperature"], plain["top_p"]) == (32000, 0.5, 0.9)
    assert "reasoning_effort" not in plain and CHAT_TOKEN not in plain


# The required fields, and the body.

@pytest.mark.parametrize("body", [
    request(max_tokens=None), {"model": "m", "messages": [user("Hi")]},
    request(max_tokens=0), request(max_tokens=-5), request(max_tokens="1024"),
    request(max_tokens=True), request(max_tokens=10.5),
])
def test_max_tokens_required(body: dict[str, Any]) -> None:
    """max_tokens is required, a positive integer."""
    assert refused(body).startswith("max_tokens:")


@pytest.mark.parametrize(("body", "start"), [
    ([], "The request body must be a JSON object."),
    (request(model=None), "model:"),
    (request(model=""), "model:"),
    (request(messages={"role": "user", "content": "Hi"}), "messages:"),
    (request(messages="Hi"), "messages:"),
    (request(messages=[]), "messages: at least one"),
    (request(messages=None), "messages:"),
    (request(messages=["Hi"]), "messages.0:"),
    (request(messages=[{"role": "tool", "content": "x"}]), "messages.0.role:"),
    (request(messages=[{"role": "user", "content": 3}]), "messages.0.content:"),
    (request(stream="yes"), "stream:"),
    (request(temperature="hot"), "temperature:"),
    (request(top_p=True), "top_p:"),
    (request(stop_sequences="END"), "stop_sequences:"),
    (request(stop_sequences=["END", 3]), "stop_sequences:"),
    (request(metadata="me"), "metadata:"),
    (request(metadata={"user_id": 42}), "metadata.user_id:"),
    (request(system=42), "system:"),
    (request(system=[image()]), "system.0.type:"),
])
def test_fields_refused(body: object, start: str) -> None:
    """A body or field that cannot be read gets a 400 whose message starts
    with the path to it."""
    assert refused(body).startswith(start)


# System.

def test_system() -> None:
    """system, a string or text blocks (cache_control dropped, joined by a
    blank line), is the first message; none, or an empty one, sends none."""
    assert messages_of(user("Hi"), system="Be brief.")[0] == {
        "role": "system", "content": "Be brief."}
    blocks = [text("One.", **CACHED), text("Two.")]
    assert messages_of(user("Hi"), system=blocks)[0] == {
        "role": "system", "content": "One.\n\nTwo."}
    assert messages_of(user("Hi"), system="") == [{"role": "user", "content": "Hi"}]
    assert messages_of(user("Hi")) == [{"role": "user", "content": "Hi"}]


def test_billing_header_left_out() -> None:
    """Claude Code's billing header block (which changes with every
    conversation, and would spoil the upstream's prompt cache) is not sent."""
    header = text("x-anthropic-billing-header: cc_version=2.1.328.ccf; cc_entrypoint=cli; "
                  "cch=71fea;")
    assert messages_of(user("Hi"), system=[header, text("Be brief.")])[0] == {
        "role": "system", "content": "Be brief."}
    assert messages_of(user("Hi"), system=[header])[0] == {"role": "user", "content": "Hi"}


def test_system_message_stays_in_place() -> None:
    """A system message inside messages stays where it is, text joined."""
    chat = messages_of(user("Hi"), system(text("A", **CACHED), text("B")), assistant("Yes?"),
                       system("Later."), user("Go"), system="First.")
    assert chat == [
        {"role": "system", "content": "First."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "A\n\nB"},
        {"role": "assistant", "content": "Yes?"},
        {"role": "system", "content": "Later."},
        {"role": "user", "content": "Go"},
    ]
    assert refused(request(messages=[system(image())])).startswith("messages.0.content.0.type:")


# Tools and tool_choice.

def test_tools() -> None:
    """A client tool (no type, or custom) is a chat function of the same
    name: input_schema as parameters, description and strict kept, the
    rest of Anthropic's fields not sent."""
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    chat = chat_of(tools=[
        {"type": "custom", "name": "find", "description": "Find.", "input_schema": schema,
         "strict": True, **CACHED, "input_examples": [{"q": "x"}], "defer_loading": True},
        {"name": "mcp__github__get_issue", "input_schema": schema},
    ])
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "find", "description": "Find.",
                                          "parameters": schema, "strict": True}},
        {"type": "function", "function": {"name": "mcp__github__get_issue",
                                          "parameters": schema}},
    ]


def test_server_tools_left_out() -> None:
    """Server tools (and Anthropic-defined ones) are left out and named by
    type, with the MCP servers; with no tool left, no tools, tool_choice or
    parallel_tool_calls go."""
    server = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
              {"type": "code_execution_20250825", "name": "code_execution"},
              {"type": "bash_20250124", "name": "bash"},
              {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
              {"type": "computer_20250124", "name": "computer"},
              {"type": "web_search_20250305", "name": "web_search"}]
    bridged = chat_request_of(request(
        tools=server, tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        mcp_servers=[{"type": "url", "url": "https://mcp.example", "name": "docs"}]))
    assert bridged.left_out == ("web_search_20250305", "code_execution_20250825",
                                "bash_20250124", "text_editor_20250728", "computer_20250124",
                                "mcp:docs")
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(bridged.chat)
    mixed = chat_request_of(request(tools=[tool("Bash"), *server]))
    assert [t["function"]["name"] for t in mixed.chat["tools"]] == ["Bash"]


@pytest.mark.parametrize(("tools", "path"), [
    ({"name": "Bash"}, "tools:"),
    (["Bash"], "tools.0:"),
    ([{"name": "has space", "input_schema": {}}], "tools.0.name:"),
    ([{"name": "x" * 65, "input_schema": {}}], "tools.0.name:"),
    ([{"input_schema": {}}], "tools.0.name:"),
    ([{"name": "Bash"}], "tools.0.input_schema:"),
    ([{"name": "Bash", "input_schema": "{}"}], "tools.0.input_schema:"),
    ([{"name": "Bash", "input_schema": {}, "description": 3}], "tools.0.description:"),
    ([tool("Bash"), tool("Bash")], "tools.1.name:"),
    ([{"type": 7, "name": "Bash"}], "tools.0.type:"),
])
def test_tools_refused(tools: Any, path: str) -> None:
    """Tool declarations that cannot be read get a 400 naming the field."""
    assert refused(request(tools=tools)).startswith(path)


TOOLS = [tool("Bash"), tool("Read"), {"type": "web_search_20250305", "name": "web_search"}]


@pytest.mark.parametrize(("choice", "chat_choice", "parallel"), [
    ({"type": "auto"}, "auto", None),
    ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
    ({"type": "any"}, "required", None),
    ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ({"type": "tool", "name": "Read"}, {"type": "function", "function": {"name": "Read"}}, None),
    ({"type": "tool", "name": "Read", "disable_parallel_tool_use": True},
     {"type": "function", "function": {"name": "Read"}}, False),
    ({"type": "none"}, "none", None),
    ({"type": "auto", "disable_parallel_tool_use": False}, "auto", None),
])
def test_tool_choice(choice: dict[str, Any], chat_choice: Any, parallel: bool | None) -> None:
    """auto, any (required), tool (the named function) and none; parallel
    use disabled is parallel_tool_calls false."""
    chat = chat_of(tools=TOOLS, tool_choice=choice)
    assert chat["tool_choice"] == chat_choice
    assert chat.get("parallel_tool_calls") is parallel


@pytest.mark.parametrize(("tools", "choice", "says"), [
    (TOOLS, {"type": "tool", "name": "web_search"}, "is a server tool"),
    (TOOLS, {"type": "tool", "name": "Write"}, "is not a tool of the request"),
    (TOOLS, {"type": "tool"}, "tool_choice.name:"),
    (TOOLS, {"type": "sometimes"}, "tool_choice.type:"),
    (TOOLS, "auto", "tool_choice:"),
    (TOOLS, {"type": "auto", "disable_parallel_tool_use": "yes"}, "disable_parallel_tool_use"),
    (TOOLS[2:], {"type": "any"}, "tool_choice:"),
    (None, {"type": "any"}, "tool_choice:"),
])
def test_tool_choice_refused(tools: Any, choice: Any, says: str) -> None:
    """A tool_choice a chat upstream cannot honour gets a 400 saying why."""
    assert says in refused(request(tools=tools, tool_choice=choice))


def test_tool_choice_without_tools() -> None:
    """auto and none without a tool to send send nothing."""
    assert "tool_choice" not in chat_of(tool_choice={"type": "auto"})
    assert "tool_choice" not in chat_of(tools=TOOLS[2:], tool_choice={"type": "none"})
