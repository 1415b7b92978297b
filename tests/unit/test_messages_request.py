"""An Anthropic Messages API request made a chat completions request, for
an upstream that only speaks chat completions: Claude Code's request, each
rule, and every 400 (units: L{genaiproxy.api.messages.request} with
C{transcript}, C{blocks} and C{tools})."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.messages_items import (
    PNG,
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

from genaiproxy.api.messages.request import chat_request_of, reasons, user_digest

# What Claude Code 2.1.328 sends (captured on loopback, `claude -p "List the
# files here" --allowedTools Bash`; texts shortened), with the turn after its
# first Bash call.
USER_ID = json.dumps({"device_id": "65f9ab2c8ebc2927b7e444df4d4371844cecd380276dc67256fd9306819a0e0d",
                      "account_uuid": "", "session_id": "7b75b227-368a-494f-953b-3929dfebcf28"},
                     separators=(",", ":"))
CACHED = {"cache_control": {"type": "ephemeral"}}
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
CHAT_TOKEN = "max_completion_tokens"
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


# Content blocks.

def test_text_blocks_joined() -> None:
    """A turn of text blocks is one string (what every chat upstream takes)."""
    assert messages_of(user("One", text("Two", **CACHED)), assistant("Three", "Four")) == [
        {"role": "user", "content": "One\n\nTwo"},
        {"role": "assistant", "content": "Three\n\nFour"},
    ]


def test_images() -> None:
    """An image is an image_url part: base64 as a data URL (without the
    line breaks of wrapped base64), a URL as it is; the turn keeps its
    parts in order."""
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
    chat = messages_of(user("Look:", image(), url, image("R0lG\r\nOD", "image/gif")))
    assert chat == [{"role": "user", "content": [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGOD"}},
    ]}]


@pytest.mark.parametrize(("block", "path"), [
    (image(media_type="image/tiff"), "source.media_type:"),
    (image(media_type=None), "source.media_type:"),
    (image(data=""), "source.data:"),
    ({"type": "image", "source": {"type": "url", "url": ""}}, "source.url:"),
    ({"type": "image", "source": {"type": "file", "file_id": "file_011"}}, "source:"),
    ({"type": "image", "source": {"type": "bytes"}}, "source.type:"),
    ({"type": "image"}, "source:"),
])
def test_images_refused(block: dict[str, Any], path: str) -> None:
    """An image that would not make a well-formed URL, or that names a file
    stored at Anthropic, gets a 400."""
    assert refused(request(messages=[user(block)])).startswith(f"messages.0.content.0.{path}")


def test_image_in_assistant_refused() -> None:
    """A chat assistant message holds no image: a 400."""
    assert refused(request(messages=[user("Hi"), assistant(image())])).startswith(
        "messages.1.content.0.type:")


def test_documents() -> None:
    """A plain-text document is text (its title first); a PDF, a file or a
    URL document gets a 400: a chat upstream cannot read it."""
    doc = {"type": "document", "title": "Notes",
           "source": {"type": "text", "media_type": "text/plain", "data": "Line 1"}}
    assert messages_of(user(doc, "Summarize.")) == [
        {"role": "user", "content": "Notes\n\nLine 1\n\nSummarize."}]
    pdf = {"type": "document",
           "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}
    message = refused(request(messages=[user(pdf)]))
    assert message.startswith("messages.0.content.0:")
    assert "chat completions" in message
    in_result = [user("Hi"), assistant(tool_use("t1", "Read")), user(tool_result("t1", [pdf]))]
    assert refused(request(messages=in_result)).startswith("messages.2.content.0.content.0:")


def test_search_result() -> None:
    """A search_result block is text: its title and source, then its text."""
    block = {"type": "search_result", "title": "Docs", "source": "https://x/docs",
             "content": [text("Para 1"), text("Para 2")]}
    assert messages_of(user(block)) == [
        {"role": "user", "content": "Docs (https://x/docs)\n\nPara 1\n\nPara 2"}]


def test_thinking_not_sent() -> None:
    """thinking and redacted_thinking are not sent, and named; an assistant
    turn of thinking alone sends nothing."""
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgB..."}
    bridged = chat_request_of(request(messages=[
        user("Hi"), assistant(thinking(), redacted), assistant(thinking(), "Hello."),
        user("Bye")]))
    assert bridged.chat["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    assert bridged.dropped == ("thinking", "redacted_thinking")


def test_server_tool_blocks_not_sent() -> None:
    """The record of a server tool's run at Anthropic is not sent, and named."""
    bridged = chat_request_of(request(messages=[
        user("Search"),
        assistant({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                   "input": {"query": "x"}},
                  {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                   "content": []},
                  "Found it."),
    ]))
    assert bridged.chat["messages"][1] == {"role": "assistant", "content": "Found it."}
    assert bridged.dropped == ("server_tool_use", "web_search_tool_result")


@pytest.mark.parametrize(("messages", "path"), [
    ([user({"type": "video", "source": {}})], "messages.0.content.0.type:"),
    ([user("Hi"), assistant({"type": "audio"})], "messages.1.content.0.type:"),
    ([user({"text": "no type"})], "messages.0.content.0.type:"),
    ([user(text(42))], "messages.0.content.0.text:"),
])
def test_unknown_blocks_refused(messages: list[Any], path: str) -> None:
    """A block type the bridge does not know gets a 400 naming it."""
    assert refused(request(messages=messages)).startswith(path)


def test_block_not_an_object_refused() -> None:
    """A content block that is not an object gets a 400."""
    body = request(messages=[{"role": "user", "content": [text("x"), "y"]}])
    assert refused(body).startswith("messages.0.content.1:")


# Tool calls and results.

def test_tool_round_trip() -> None:
    """tool_use blocks are the assistant message's tool_calls (ids kept,
    input as JSON); each tool_result is a tool message right after it, in
    the order the results come, and the turn's other blocks follow in a
    user message."""
    chat = messages_of(
        user("Do it"),
        assistant("Running both.", tool_use("t1", "Bash", command="ls"),
                  tool_use("t2", "Read", file_path="/tmp/ä")),
        user(tool_result("t2", "file text"), tool_result("t1", [text("a"), text("b")]),
             "Thanks", image()),
    )
    assert chat == [
        {"role": "user", "content": "Do it"},
        {"role": "assistant", "content": "Running both.", "tool_calls": [
            call("t1", "Bash", '{"command":"ls"}'),
            call("t2", "Read", '{"file_path":"/tmp/ä"}')]},
        {"role": "tool", "tool_call_id": "t2", "content": "file text"},
        {"role": "tool", "tool_call_id": "t1", "content": "a\n\nb"},
        {"role": "user", "content": [
            {"type": "text", "text": "Thanks"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
    ]


def test_calls_without_text() -> None:
    """An assistant turn of calls alone has no content (null)."""
    chat = messages_of(user("Go"), assistant(tool_use("t1")), user(tool_result("t1")))
    assert chat[1] == {"role": "assistant", "content": None, "tool_calls": [call("t1")]}
    assert chat[2:] == [{"role": "tool", "tool_call_id": "t1", "content": "done"}]


def test_tool_error_said_in_content() -> None:
    """A result with is_error is a tool message whose content starts
    "Error: " (chat has no error flag); an empty one is "Error."."""
    chat = messages_of(
        user("Go"), assistant(tool_use("t1"), tool_use("t2"), tool_use("t3")),
        user(tool_result("t1", "<tool_use_error>No such file</tool_use_error>", is_error=True),
             tool_result("t2", None, is_error=True), tool_result("t3", "ok", is_error=False)))
    assert [m["content"] for m in chat[2:]] == [
        "Error: <tool_use_error>No such file</tool_use_error>", "Error.", "ok"]
    body = request(messages=[user("Go"), assistant(tool_use("t1")),
                             user(tool_result("t1", is_error="yes"))])
    assert refused(body).startswith("messages.2.content.0.is_error:")


def test_result_images_follow_the_tool_messages() -> None:
    """A result's images (Claude Code's Read of a picture) go in the user
    message after the tool messages, labelled, before the turn's own text;
    a result of images alone says where its output is."""
    chat = messages_of(
        user("Look"), assistant(tool_use("t1", "Read"), tool_use("t2", "Read")),
        user(tool_result("t1", [image()]), tool_result("t2", [text("Size: 1x1"), image()]),
             "What is it?"))
    assert chat[2] == {"role": "tool", "tool_call_id": "t1",
                       "content": "(The output is images, in the user message after the "
                                  "tool results.)"}
    assert chat[3] == {"role": "tool", "tool_call_id": "t2", "content": "Size: 1x1"}
    png = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert chat[4] == {"role": "user", "content": [
        {"type": "text", "text": "The images of the tool result t1:"}, png,
        {"type": "text", "text": "The images of the tool result t2:"}, png,
        {"type": "text", "text": "What is it?"}]}


def test_results_filed_under_their_call() -> None:
    """Tool messages come right after the assistant message holding the
    call, even with a system message between the turns."""
    chat = messages_of(user("Go"), assistant(tool_use("t1")), system("Note."),
                       user(tool_result("t1", "out"), "Next"))
    assert [m["role"] for m in chat] == ["user", "assistant", "tool", "system", "user"]


def test_tool_reference_and_search_result_in_results() -> None:
    """A tool_reference (Claude Code's tool search) and a search_result in a
    result are text; browser_state is dropped and named."""
    bridged = chat_request_of(request(messages=[
        user("Find"), assistant(tool_use("t1", "ToolSearch", query="select:Cron")),
        user(tool_result("t1", [{"type": "tool_reference", "tool_name": "CronCreate"},
                                {"type": "search_result", "title": "T", "source": "s",
                                 "content": [text("x")]},
                                {"type": "browser_state", "tabs": []}]))]))
    assert bridged.chat["messages"][2]["content"] == (
        "Tool CronCreate loaded: it can be called now.\n\nT (s)\n\nx")
    assert bridged.dropped == ("browser_state",)


@pytest.mark.parametrize(("messages", "path"), [
    ([user(tool_result("nope"))], "messages.0.content.0.tool_use_id:"),
    ([user("Go"), assistant(tool_use("t1")), user(tool_result("t1"), tool_result("t1"))],
     "messages.2.content.1.tool_use_id:"),
    ([user("Go"), assistant(tool_use("t1")), user("Forgot the result")], "messages.1.content.0:"),
    ([user("Go"), assistant(tool_use("t1"))], "messages.1.content.0:"),
    ([user("Go"), assistant(tool_use("t1"), tool_use("t1"))], "messages.1.content.1.id:"),
    ([user("Go"), assistant(tool_use("t1")), user(tool_result("t1")), assistant(tool_use("t1"))],
     "messages.3.content.0.id:"),
    ([user(tool_use("t1"))], "messages.0.content.0.type:"),
    ([user("Go"), assistant(tool_result("t1"))], "messages.1.content.0.type:"),
    ([user("Go"), assistant({"type": "tool_use", "id": "", "name": "B", "input": {}})],
     "messages.1.content.0.id:"),
    ([user("Go"), assistant({"type": "tool_use", "id": "t", "name": "", "input": {}})],
     "messages.1.content.0.name:"),
    ([user("Go"), assistant({"type": "tool_use", "id": "t", "name": "B", "input": "ls"})],
     "messages.1.content.0.input:"),
    ([user("Go"), assistant(tool_use("t1")), user(tool_result("t1", 42))],
     "messages.2.content.0.content:"),
    ([user("Go"), assistant(tool_use("t1")), user(tool_result("t1", [{"type": "video"}]))],
     "messages.2.content.0.content.0.type:"),
    ([user({"type": "tool_result", "content": "x"})], "messages.0.content.0.tool_use_id:"),
])
def test_tool_turns_refused(messages: list[Any], path: str) -> None:
    """Calls and results chat cannot pair get a 400 naming the block: a
    result without its call, two results, a call without a result, an id
    used twice, a block in the wrong turn."""
    assert refused(request(messages=messages)).startswith(path)


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


# The other fields.

def test_sampling_and_stop() -> None:
    """stop_sequences is stop; temperature and top_p go as they are; top_k
    is dropped."""
    chat = chat_of(stop_sequences=["\n\nHuman:", "END"], temperature=0.2, top_p=0.9, top_k=40)
    assert chat["stop"] == ["\n\nHuman:", "END"]
    assert (chat["temperature"], chat["top_p"]) == (0.2, 0.9)
    assert "top_k" not in chat
    assert "stop" not in chat_of(stop_sequences=[])
    assert chat_request_of(request(stop_sequences=["END"])).stop_sequences == ("END",)


@pytest.mark.parametrize("model", ["gpt-5", "GPT-5.1-codex", "o3", "o4-mini", "o1"])
def test_reasoning_models_token_field(model: str) -> None:
    """The gpt-5 family and the o-series get max_completion_tokens,
    temperature 1 and no top_p, the only values they take."""
    chat = chat_of(model=model, max_tokens=500, temperature=0.3, top_p=0.5)
    assert (chat[CHAT_TOKEN], chat["temperature"]) == (500, 1)
    assert not {"max_tokens", "top_p"} & set(chat)


@pytest.mark.parametrize("model", ["gpt-4.1", "gpt-4o", "llama3.3", "omni", "gpt-oss-120b"])
def test_other_models_token_field(model: str) -> None:
    """Other models get max_tokens."""
    chat = chat_of(model=model, max_tokens=500)
    assert chat["max_tokens"] == 500 and CHAT_TOKEN not in chat


@pytest.mark.parametrize(("effort", "sent"), [
    ("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high"), ("max", "high"),
])
def test_effort(effort: str, sent: str) -> None:
    """output_config.effort is reasoning_effort, in chat's three levels."""
    assert chat_of(model="gpt-5", output_config={"effort": effort})["reasoning_effort"] == sent


@pytest.mark.parametrize(("budget", "sent"), [
    (1024, "low"), (4000, "low"), (4096, "medium"), (10000, "medium"), (16384, "high"),
    (31999, "high"),
])
def test_thinking_budget(budget: int, sent: str) -> None:
    """A thinking budget is an effort: under 4,096 tokens low, under 16,384
    medium, more high."""
    bridged = chat_request_of(request(model="o3", max_tokens=64000,
                                      thinking={"type": "enabled", "budget_tokens": budget}))
    assert (bridged.chat["reasoning_effort"], bridged.thinking) == (sent, True)


def test_effort_wins_over_budget() -> None:
    """An explicit effort wins over a budget; adaptive or disabled thinking
    alone asks nothing (the upstream's default)."""
    assert chat_of(model="gpt-5", thinking={"type": "enabled", "budget_tokens": 2000},
                   output_config={"effort": "high"})["reasoning_effort"] == "high"
    for kind in ("adaptive", "disabled", "between_tools"):
        assert "reasoning_effort" not in chat_of(model="gpt-5", thinking={"type": kind})
    assert chat_request_of(request(thinking={"type": "disabled"})).thinking is False
    assert chat_request_of(request(thinking={"type": "adaptive"})).thinking is True


@pytest.mark.parametrize("model", ["gpt-5-mini", "o4-mini", "gpt-oss-20b", "GPT-OSS:120b"])
def test_reasoning_models(model: str) -> None:
    """The gpt-5 family, the o-series and gpt-oss take reasoning_effort."""
    assert reasons(model)
    assert chat_of(model=model, output_config={"effort": "low"})["reasoning_effort"] == "low"


@pytest.mark.parametrize("model", ["gpt-4.1", "gpt-4o-mini", "claude-sonnet-4-5", "llama3.3",
                                   "qwen3-coder", "omni-moderation"])
def test_effort_dropped_for_other_models(model: str) -> None:
    """A model that does not reason gets no reasoning_effort."""
    assert not reasons(model)
    bridged = chat_request_of(request(model=model, output_config={"effort": "high"},
                                      thinking={"type": "enabled", "budget_tokens": 2048}))
    assert "reasoning_effort" not in bridged.chat
    assert bridged.reasoning_effort == "high"


@pytest.mark.parametrize(("fields", "start"), [
    ({"thinking": "on"}, "thinking:"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens:"),
    ({"thinking": {"type": "enabled", "budget_tokens": "2048"}}, "thinking.budget_tokens:"),
    ({"output_config": "high"}, "output_config:"),
    ({"output_config": {"effort": 3}}, "output_config.effort:"),
    ({"output_config": {"format": {"type": "regex"}}}, "output_config.format.type:"),
    ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema:"),
    ({"output_format": {"type": "json_schema", "schema": []}}, "output_format.schema:"),
])
def test_reasoning_and_output_refused(fields: dict[str, Any], start: str) -> None:
    assert refused(request(**fields)).startswith(start)


def test_unknown_effort_and_thinking_ignored() -> None:
    """An effort or a thinking type the bridge does not know yet is ignored
    and named, not refused."""
    bridged = chat_request_of(request(model="gpt-5", thinking={"type": "deliberate"},
                                      output_config={"effort": "extreme"}))
    assert "reasoning_effort" not in bridged.chat
    assert bridged.ignored == ("output_config.effort", "thinking.type")


def test_output_format() -> None:
    """output_config.format (or the beta's output_format), a JSON schema,
    is response_format."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    expected = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert chat_of(output_config={"format": {"type": "json_schema", "schema": schema}})[
        "response_format"] == expected
    assert chat_of(output_format={"type": "json_schema", "schema": schema})[
        "response_format"] == expected


def test_user_id_digest() -> None:
    """metadata.user_id is sent as a short stable digest, never as it is;
    other metadata keys are ignored and named."""
    bridged = chat_request_of(request(metadata={"user_id": USER_ID, "team": "x"}))
    assert bridged.chat["user"] == user_digest(USER_ID)
    assert len(bridged.chat["user"]) == 32
    assert chat_of(metadata={"user_id": USER_ID})["user"] == bridged.chat["user"]
    assert chat_of(metadata={"user_id": "other"})["user"] != bridged.chat["user"]
    assert USER_ID not in json.dumps(bridged.chat)
    assert bridged.ignored == ("metadata.team",)
    assert "user" not in chat_of(metadata={"user_id": ""})
    assert "user" not in chat_of(metadata={"user_id": None})
    assert user_digest("\ud800lone") != user_digest("lone")


def test_stream_asks_for_usage() -> None:
    """A streamed request asks the upstream for its usage; a plain one
    sends no stream fields."""
    streamed = chat_request_of(request(stream=True))
    assert streamed.stream is True
    assert (streamed.chat["stream"], streamed.chat["stream_options"]) == (
        True, {"include_usage": True})
    plain = chat_request_of(request(stream=False))
    assert plain.stream is False
    assert not {"stream", "stream_options"} & set(plain.chat)


def test_accepted_fields() -> None:
    """Anthropic's own fields are accepted and send nothing."""
    fields = {"top_k": 5, "context_management": {"edits": []}, "cache_control": CACHED,
              "service_tier": "standard_only", "container": "container_1",
              "diagnostics": {"previous_message_id": "msg_1"}, "inference_geo": "us",
              "speed": "fast", "user_profile_id": "up_1", "workspace_id": "wrkspc_1"}
    bridged = chat_request_of(request(**fields))
    assert set(bridged.chat) == {"model", "messages", "max_tokens"}
    assert bridged.ignored == ()


def test_unknown_fields_ignored() -> None:
    """Unknown top-level fields are ignored and named for the log."""
    bridged = chat_request_of(request(zeta=1, alpha={}))
    assert bridged.ignored == ("alpha", "zeta")
    assert set(bridged.chat) == {"model", "messages", "max_tokens"}


# Any well-formed conversation.

_WORDS = st.text(alphabet="abc xyz", max_size=12)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Turns of user and assistant (and system) messages in which every
    call is answered in the next user turn, results in any order, with text
    and images beside them."""
    ids = (f"toolu_{n}" for n in itertools.count())
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        results = [tool_result(call_id, draw(st.one_of(
            _WORDS, st.lists(st.builds(text, _WORDS), max_size=2),
            st.just([image()]))), is_error=draw(st.booleans()))
            for call_id in draw(st.permutations(pending))]
        extra = draw(st.lists(st.one_of(st.builds(text, _WORDS), st.just(image())),
                              max_size=2))
        blocks = results + extra or [text("go")]
        messages.append(user(*draw(st.permutations(blocks))))
        if draw(st.booleans()):
            messages.append(system(draw(_WORDS)))
        pending = [next(ids) for _ in range(draw(st.integers(0, 3)))]
        parts: list[Any] = [tool_use(call_id, "Bash", command=draw(_WORDS))
                            for call_id in pending]
        parts += draw(st.lists(st.one_of(st.builds(text, _WORDS), st.just(thinking())),
                               max_size=2))
        messages.append(assistant(*draw(st.permutations(parts))) if parts
                        else assistant(draw(_WORDS)))
        if draw(st.booleans()):  # between the calls and their results
            messages.append(system(draw(_WORDS)))
    if pending:
        messages.append(user(*[tool_result(call_id) for call_id in pending]))
    return messages


@given(conversations(), st.booleans())
def test_any_conversation(messages: list[dict[str, Any]], stream: bool) -> None:
    """Any well-formed conversation gives chat messages in which each tool
    message follows the assistant message holding its call (only tool
    messages between them), every call answered once, and no
    metadata.user_id anywhere in the body."""
    bridged = chat_request_of(request(messages=messages, stream=stream,
                                      metadata={"user_id": USER_ID}))
    chat_messages = bridged.chat["messages"]
    answered = []
    for index, message in enumerate(chat_messages):
        if message["role"] != "tool":
            continue
        holder = index - 1
        while chat_messages[holder]["role"] == "tool":
            holder -= 1
        calls = [c["id"] for c in chat_messages[holder].get("tool_calls", ())]
        assert chat_messages[holder]["role"] == "assistant"
        assert message["tool_call_id"] in calls
        answered.append(message["tool_call_id"])
    made = [c["id"] for m in chat_messages for c in m.get("tool_calls", ())]
    assert sorted(answered) == sorted(made)
    assert len(set(made)) == len(made)
    dumped = json.dumps(bridged.chat, ensure_ascii=False)
    assert USER_ID not in dumped and json.dumps(USER_ID) not in dumped
    assert "65f9ab2c8ebc" not in dumped and "7b75b227" not in dumped
    assert bridged.chat["user"] == user_digest(USER_ID)
