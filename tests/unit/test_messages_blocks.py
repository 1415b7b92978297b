"""The messages of an Anthropic Messages API request made chat messages,
for an upstream that only speaks chat completions: each content block, the
tool calls and their results paired, any well-formed conversation, and
every 400 (units: L{genaiproxy.api.messages.request} with C{transcript} and
C{blocks})."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.messages_items import (
    CACHED,
    PNG,
    USER_ID,
    assistant,
    call,
    image,
    messages_of,
    refused,
    request,
    system,
    text,
    thinking,
    tool_result,
    tool_use,
    user,
)

from genaiproxy.api.messages.request import chat_request_of, user_digest

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
    URL document the user sends gets a 400: a chat upstream cannot read it."""
    doc = {"type": "document", "title": "Notes",
           "source": {"type": "text", "media_type": "text/plain", "data": "Line 1"}}
    assert messages_of(user(doc, "Summarize.")) == [
        {"role": "user", "content": "Notes\n\nLine 1\n\nSummarize."}]
    pdf = {"type": "document",
           "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}
    message = refused(request(messages=[user(pdf)]))
    assert message.startswith("messages.0.content.0:")
    assert "chat completions" in message


def test_a_pdf_a_tool_returned_is_a_line_saying_so() -> None:
    """A PDF in a tool_result (Claude Code's Read tool returns one) is a
    line in the tool message saying it was left out, and named in the
    request's dropped types: a 400 would fail every later turn of the
    session, which keeps the result in its history."""
    pdf = {"type": "document", "title": "spec.pdf",
           "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}
    notes = {"type": "document",
             "source": {"type": "text", "media_type": "text/plain", "data": "Line 1"}}
    bridged = chat_request_of(request(messages=[
        user("Read it."), assistant(tool_use("t1", "Read")),
        user(tool_result("t1", [text("Pages:"), pdf, notes]))]))
    tool = bridged.chat["messages"][-1]
    assert tool["role"] == "tool" and tool["tool_call_id"] == "t1"
    assert tool["content"] == ("Pages:\n\n[The tool returned the document 'spec.pdf' "
                               "(application/pdf), left out: this model reads text and images "
                               "only.]\n\nLine 1")
    assert bridged.dropped == ("document",)


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
