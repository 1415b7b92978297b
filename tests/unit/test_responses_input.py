"""The input items of a Responses request made chat completions messages:
messages and their content, calls and their outputs (unit:
L{genaiproxy.api.responses.input_items}, through L{chat_request_of})."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.responses_items import call, chat_of, function, messages_of, output, refused, user

from genaiproxy.api.responses.request import BridgeRequestError, chat_request_of


def test_input_string() -> None:
    """A string input is one user message."""
    assert chat_of(input="Hello")["messages"] == [{"role": "user", "content": "Hello"}]


def test_instructions_first() -> None:
    """instructions come first: as system, or developer for the gpt-5 family."""
    assert chat_of(instructions="Be brief.")["messages"][0] == {
        "role": "system", "content": "Be brief."}
    gpt5 = chat_request_of({"model": "GPT-5-mini", "instructions": "Be brief.", "input": "Hi"})
    assert gpt5.chat["messages"][0] == {"role": "developer", "content": "Be brief."}
    assert len(chat_of(instructions="")["messages"]) == 1


def test_roles() -> None:
    """user, assistant and system keep their role; developer is system
    outside the gpt-5 family (chat templates elsewhere know no developer);
    the short form without type is a message too."""
    items = [{"role": "system", "content": "S"}, {"role": "developer", "content": "D"},
             {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]
    assert [m["role"] for m in messages_of(items)] == ["system", "system", "user", "assistant"]
    assert [m["role"] for m in messages_of(items, "gpt-5")] == [
        "system", "developer", "user", "assistant"]
    assert [m["content"] for m in messages_of(items)] == ["S", "D", "U", "A"]


def test_text_parts() -> None:
    """Text parts (input_text, output_text, refusal) are joined into one
    string, which every chat upstream takes for every role."""
    assistant = {"type": "message", "role": "assistant", "content": [
        {"type": "output_text", "text": "One.", "annotations": []},
        {"type": "refusal", "refusal": "Not that."}]}
    assert messages_of([assistant]) == [{"role": "assistant", "content": "One.\nNot that."}]
    empty = {"role": "user", "content": []}
    assert messages_of([empty]) == [{"role": "user", "content": ""}]


def test_images() -> None:
    """An image goes as its URL or data URL, untouched, with the detail chat
    knows; the user message keeps its parts."""
    data_url = "data:image/png;base64,iVBORw0KGgo="
    item = {"role": "user", "content": [
        {"type": "input_text", "text": "Look"},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
        {"type": "input_image", "image_url": data_url, "detail": "original"}]}
    assert messages_of([item]) == [{"role": "user", "content": [
        {"type": "text", "text": "Look"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": data_url}}]}]


def test_files() -> None:
    """A file's data goes as a chat file part."""
    item = {"role": "user", "content": [
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE",
         "filename": "a.pdf"}]}
    assert messages_of([item])[0]["content"] == [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                  "filename": "a.pdf"}}]


@pytest.mark.parametrize(("part", "param"), [
    ({"type": "input_image", "file_id": "file-1"}, "input[0].content[1].file_id"),
    ({"type": "input_image"}, "input[0].content[1].image_url"),
    ({"type": "input_file", "file_id": "file-1"}, "input[0].content[1].file_id"),
    ({"type": "input_file", "file_url": "https://x/a.pdf"}, "input[0].content[1].file_url"),
    ({"type": "input_audio", "input_audio": {}}, "input[0].content[1].type"),
    ("text", "input[0].content[1]"),
])
def test_parts_refused(part: Any, param: str) -> None:
    """Content a chat upstream cannot read gets a 400 naming the field."""
    item = {"role": "user", "content": [{"type": "input_text", "text": "x"}, part]}
    assert refused({"input": [item]}).param == param


def test_file_id_says_why() -> None:
    """The 400 for an image file_id tells what to send instead."""
    item = {"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}
    assert "image_url" in refused({"input": [item]}).message


def test_media_outside_user_messages_refused() -> None:
    """Only a user message can carry an image on chat."""
    item = {"role": "system", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"}]}
    assert refused({"input": [item]}).param == "input[0].content[0]"


@pytest.mark.parametrize(("items", "param"), [
    ([{"role": "tool", "content": "x"}], "input[0].role"),
    ([{"type": "message", "role": "user", "content": 3}], "input[0].content"),
    (["hello"], "input[0]"),
    ([{"type": "item_reference", "id": "msg_1"}], "input[0]"),
    ([{"id": "msg_1"}], "input[0]"),
    ([{"type": "program", "id": "p"}], "input[0].type"),
])
def test_items_refused(items: list[Any], param: str) -> None:
    """Items that cannot become chat messages get a 400 naming the field."""
    assert refused({"input": items}).param == param


def test_input_required() -> None:
    """input is required, and is a string or an array."""
    with pytest.raises(BridgeRequestError) as caught:
        chat_request_of({"model": "m"})
    assert caught.value.param == "input"
    assert refused({"input": {"role": "user"}}).param == "input"


# Input: calls and their outputs.

def test_parallel_calls_one_assistant_message() -> None:
    """Calls made together are one assistant message holding every call,
    followed by one tool message per output, matched by call_id."""
    items = [user("Go"), call("a"), call("b"), call("c"),
             output("b", "B"), output("a", "A"), output("c", "C")]
    messages = messages_of(items)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "tool"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["a", "b", "c"]
    assert messages[1]["content"] is None
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:]] == [
        ("b", "B"), ("a", "A"), ("c", "C")]


def test_reasoning_between_calls() -> None:
    """Reasoning items are not sent, and do not split the calls around them
    or part them from the assistant text before them."""
    items = [{"role": "assistant", "content": "Running."},
             {"type": "reasoning", "summary": []}, call("a"),
             {"type": "reasoning", "summary": [], "encrypted_content": "x"}, call("b"),
             output("a"), output("b")]
    messages = messages_of(items)
    assert [m["role"] for m in messages] == ["assistant", "tool", "tool"]
    assert messages[0]["content"] == "Running."
    assert [c["id"] for c in messages[0]["tool_calls"]] == ["a", "b"]


def test_calls_in_turns() -> None:
    """A call after an output starts the next assistant message."""
    messages = messages_of([call("a"), output("a"), call("b"), output("b")])
    assert [(m["role"], m.get("tool_call_id")) for m in messages] == [
        ("assistant", None), ("tool", "a"), ("assistant", None), ("tool", "b")]


def test_output_filed_under_its_call() -> None:
    """An output recorded after other items still follows the assistant
    message holding its call, as chat requires."""
    messages = messages_of([call("a"), user("Meanwhile"), output("a", "A")])
    assert [m["role"] for m in messages] == ["assistant", "tool", "user"]


def test_custom_tool_calls() -> None:
    """A custom tool call is a chat call of its function, its input the one
    string parameter; its output is a tool message."""
    items = [{"type": "custom_tool_call", "call_id": "p", "name": "apply_patch",
              "input": "*** Begin Patch\n*** End Patch"},
             {"type": "custom_tool_call_output", "call_id": "p", "output": "Applied."}]
    tools = [{"type": "custom", "name": "apply_patch"}]
    messages = chat_request_of({"model": "m", "input": items, "tools": tools}).chat["messages"]
    arguments = messages[0]["tool_calls"][0]["function"]["arguments"]
    assert messages[0]["tool_calls"][0]["function"]["name"] == "apply_patch"
    assert json.loads(arguments) == {"input": "*** Begin Patch\n*** End Patch"}
    assert messages[1] == {"role": "tool", "tool_call_id": "p", "content": "Applied."}


def test_namespaced_call_in_history() -> None:
    """A call of a namespaced tool in the history goes under the chat name
    its tool was given, and so does one whose tool is no longer declared."""
    tools = [{"type": "namespace", "name": "ns", "description": "", "tools": [function("run")]}]
    items = [call("a", "run", namespace="ns"), call("b", "gone", namespace="old"),
             output("a"), output("b")]
    chat = chat_request_of({"model": "m", "input": items, "tools": tools}).chat
    names = [c["function"]["name"] for c in chat["messages"][0]["tool_calls"]]
    assert names == ["ns__run", "old__gone"]


def test_output_with_image() -> None:
    """An output's image (view_image) goes in a user message after the tool
    messages of its assistant message: chat tool messages hold text only."""
    picture = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    items = [call("a"), call("b"), output("a", [{"type": "input_text", "text": "Seen"}, picture]),
             output("b", [picture])]
    messages = messages_of(items)
    assert [m["role"] for m in messages] == ["assistant", "tool", "tool", "user"]
    assert messages[1]["content"] == "Seen"
    assert messages[2]["content"] == "(The output is in the next message.)"
    images = [p for p in messages[3]["content"] if p["type"] == "image_url"]
    assert [p["image_url"]["url"] for p in images] == ["data:image/png;base64,AAAA"] * 2


@pytest.mark.parametrize(("items", "param"), [
    ([output("nope")], "input[0].call_id"),
    ([call("a")], "input[0]"),
    ([user("x"), call("a"), call("b"), output("b")], "input[1]"),
    ([call("a"), call("a")], "input[1].call_id"),
    ([call("a"), output("a"), output("a")], "input[2].call_id"),
    ([call("a", arguments={"x": 1})], "input[0].arguments"),  # type: ignore[arg-type]
    ([{"type": "function_call", "call_id": "a", "arguments": "{}"}], "input[0].name"),
    ([call("a"), output("a", 5)], "input[1].output"),
    ([call("a"), output("a", [{"type": "weird"}])], "input[1].output[0].type"),
])
def test_calls_refused(items: list[Any], param: str) -> None:
    """Calls and outputs that do not pair up get a 400 naming the item."""
    assert refused({"input": items}).param == param


def test_missing_output_message() -> None:
    """The 400 for a call without its output names the call."""
    assert "'a'" in refused({"input": [call("a")]}).message


def test_dropped_items() -> None:
    """Reasoning, compaction and hosted tool call items are not sent, and
    are named once each."""
    items = [{"type": "reasoning", "summary": []}, {"type": "web_search_call", "id": "ws"},
             {"type": "reasoning", "summary": []}, {"type": "compaction",
                                                    "encrypted_content": "x"}, user("Hi")]
    bridged = chat_request_of({"model": "m", "input": items})
    assert bridged.chat["messages"] == [{"role": "user", "content": "Hi"}]
    assert bridged.dropped == ("reasoning", "web_search_call", "compaction")


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Well-formed item lists: messages, reasoning, calls made alone or
    together, and their outputs in any order, even after later items."""
    items: list[dict[str, Any]] = []
    unanswered: list[str] = []
    count = 0
    for step in draw(st.lists(st.sampled_from(
            ["user", "assistant", "reasoning", "calls", "outputs"]), max_size=25)):
        if step == "user":
            items.append(user(f"u{len(items)}"))
        elif step == "assistant":
            items.append({"role": "assistant", "content": f"a{len(items)}"})
        elif step == "reasoning":
            items.append({"type": "reasoning", "summary": []})
        elif step == "calls":
            for _ in range(draw(st.integers(1, 3))):
                count += 1
                kind = draw(st.sampled_from(["function", "custom"]))
                if kind == "function":
                    items.append(call(f"c{count}"))
                else:
                    items.append({"type": "custom_tool_call", "call_id": f"c{count}",
                                  "name": "apply_patch", "input": "x"})
                unanswered.append(f"c{count}")
        elif unanswered:
            answered = draw(st.lists(st.sampled_from(unanswered), unique=True, min_size=1))
            for call_id in answered:
                items.append(output(call_id))
                unanswered.remove(call_id)
    for call_id in draw(st.permutations(unanswered)):
        items.append(output(call_id))
    return items


@given(conversations())
def test_tool_messages_follow_their_calls(items: list[dict[str, Any]]) -> None:
    """For any well-formed item list, every tool message comes in the run of
    tool messages right after the assistant message holding its call id;
    every call has exactly one tool message; calls with nothing but
    reasoning between them share one assistant message; and the messages
    keep their order."""
    messages = messages_of(items)
    json.dumps(messages)
    seen: dict[str, int] = {}
    holder: dict[str, int] = {}
    for index, message in enumerate(messages):
        for tool_call in message.get("tool_calls", ()):
            holder[tool_call["id"]] = index
        if message["role"] == "tool":
            back = index
            while messages[back]["role"] == "tool":
                back -= 1
            assert messages[back]["role"] == "assistant"
            assert holder[message["tool_call_id"]] == back
            seen[message["tool_call_id"]] = seen.get(message["tool_call_id"], 0) + 1
    calls = [item["call_id"] for item in items if item.get("type") in (
        "function_call", "custom_tool_call")]
    assert seen == dict.fromkeys(calls, 1)
    kept = [item for item in items if item.get("type") != "reasoning"]
    for before, after in zip(kept, kept[1:], strict=False):
        if "name" in before and "name" in after:
            assert holder[before["call_id"]] == holder[after["call_id"]]
    texts = [m["content"] for m in messages if m["role"] in ("user", "assistant")
             and isinstance(m["content"], str)]
    assert texts == [item["content"] if isinstance(item["content"], str)
                     else item["content"][0]["text"] for item in items if "role" in item]
