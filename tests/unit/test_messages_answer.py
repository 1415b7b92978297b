"""A whole chat completion answered as a Messages API C{message} (unit:
L{genaiproxy.api.messages.answer}), checked against the anthropic SDK's own
C{Message} type, and the same message whether the answer came whole or
streamed."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message
from hypothesis import given
from hypothesis import strategies as st

from genaiproxy.api.messages.answer import (
    RAW_ARGUMENTS,
    ObjectEnd,
    message_of,
    messages_usage,
    new_message_id,
    new_tool_id,
    tool_input,
)
from genaiproxy.api.messages.stream import MessagesEventWriter

USAGE = {"prompt_tokens": 110, "completion_tokens": 7, "total_tokens": 117,
         "prompt_tokens_details": {"cached_tokens": 100}}


def counting_ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"toolu_{next(counter)}"


def completion(message: dict[str, Any], finish: str | None = "stop",
               usage: dict[str, Any] | None = USAGE, **choice: Any) -> dict[str, Any]:
    """A chat completion as OpenAI writes it."""
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
            "model": "upstream-model", "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish, **choice}]}


def answer(message: dict[str, Any], stop_sequences: tuple[str, ...] = (),
           **options: Any) -> dict[str, Any]:
    """The message for a completion with C{message}, which the anthropic
    SDK's Message type must accept."""
    found = message_of(completion(message, **options), "company-model", "msg_1",
                       stop_sequences, new_id=counting_ids())
    Message.model_validate(found)
    return found


def tool_call(call_id: str | None, name: str, arguments: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"type": "function",
                            "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        call["id"] = call_id
    return call


def test_a_text_answer():
    """A text answer is a message with one text block, the model the client
    asked for, stop_reason end_turn and the usage in Anthropic's terms (the
    cached part of the prompt apart)."""
    assert answer({"content": "Hello."}) == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "company-model",
        "content": [{"type": "text", "text": "Hello."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 7, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 100}}


def test_blocks_in_order_thinking_text_tool_use():
    """Reasoning (reasoning_content, or reasoning) is a thinking block with
    the empty signature, first; then the text; then one tool_use block per
    call, its input the arguments' object; stop_reason tool_use."""
    found = answer({"reasoning": "Plan.", "content": "Running.", "tool_calls": [
        tool_call("call_a", "Bash", '{"command": "ls"}'),
        tool_call("call_b", "Read", '{"file_path": "/etc/hosts"}')]}, finish="tool_calls")
    assert found["content"] == [
        {"type": "thinking", "thinking": "Plan.", "signature": ""},
        {"type": "text", "text": "Running."},
        {"type": "tool_use", "id": "call_a", "name": "Bash", "input": {"command": "ls"}},
        {"type": "tool_use", "id": "call_b", "name": "Read", "input": {"file_path": "/etc/hosts"}}]
    assert found["stop_reason"] == "tool_use"


def test_a_call_without_an_id_gets_a_toolu_id():
    """A tool call the upstream gave no id gets a toolu_ one; a call
    without arguments gets the input {}."""
    found = answer({"tool_calls": [tool_call(None, "TaskList", "")]}, finish="tool_calls")
    assert found["content"] == [{"type": "tool_use", "id": "toolu_0", "name": "TaskList",
                                 "input": {}}]
    assert new_tool_id().startswith("toolu_") and len(new_tool_id()) == 30
    assert new_message_id().startswith("msg_") and new_message_id() != new_message_id()


def test_arguments_sent_as_an_object():
    """A few servers send the arguments as an object: it is the input."""
    found = answer({"tool_calls": [tool_call("c", "Bash", {"command": "ls"})]})
    assert found["content"][0]["input"] == {"command": "ls"}


@pytest.mark.parametrize(("arguments", "expected"), [
    ("", {}),
    ("  ", {}),
    ('{"a": 1}', {"a": 1}),
    (' {"a": [1, {"b": "}"}]} ', {"a": [1, {"b": "}"}]}),
    ('{"a": 1}{"a": 1}', {"a": 1}),  # the whole arguments repeated
    ('"{\\"a\\": 1}"', {"a": 1}),  # encoded twice
    ("[1, 2]", {RAW_ARGUMENTS: "[1, 2]"}),
    ("ls -l", {RAW_ARGUMENTS: "ls -l"}),
    ('{"a": ', {RAW_ARGUMENTS: '{"a": '}),
    ('"ls"', {RAW_ARGUMENTS: '"ls"'}),
    ("null", {RAW_ARGUMENTS: "null"}),
])
def test_tool_input(arguments, expected):
    """A call's input is always an object: the arguments' object, {} for
    none, and the raw arguments under _raw_arguments for anything that holds
    no object (the tool's schema then refuses it, and the model tries
    again)."""
    assert tool_input(arguments) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab{}[]"\\:, \n\u00e9'),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(alphabet='ab{}[]"\\', max_size=3), children, max_size=3),
    max_leaves=10)


@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4),
       st.text(alphabet='{}[]"\\ x', max_size=6),
       st.lists(st.integers(0, 200), max_size=8), st.booleans())
def test_the_end_of_an_object_is_found_however_it_is_cut(value, rest, cuts, indent):
    """Fed an object's JSON text in any pieces, with anything after it,
    ObjectEnd keeps exactly the object's text and says when it closed:
    braces and quotes inside strings, and escapes cut between pieces,
    do not fool it."""
    text = json.dumps(value, indent=1 if indent else None, ensure_ascii=False)
    data = text + rest
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    end = ObjectEnd()
    kept = ""
    for start, stop in zip([0, *points], [*points, len(data)], strict=True):
        if not end.closed:
            piece = data[start:stop]
            kept += piece[:end.feed(piece)]
    assert kept == text and end.closed


@pytest.mark.parametrize(("finish", "message", "stop_reason"), [
    ("stop", {"content": "x"}, "end_turn"),
    ("length", {"content": "x"}, "max_tokens"),
    ("tool_calls", {"tool_calls": [tool_call("c", "Bash", "{}")]}, "tool_use"),
    ("content_filter", {"content": ""}, "refusal"),
    ("function_call", {"function_call": {"name": "Bash", "arguments": "{}"}}, "tool_use"),
    # Ollama and some vLLM parsers say stop for tool calls.
    ("stop", {"tool_calls": [tool_call("c", "Bash", "{}")]}, "tool_use"),
    (None, {"content": "x"}, "end_turn"),
    ("stop", {"refusal": "I can't help with that."}, "refusal"),
])
def test_stop_reasons(finish, message, stop_reason):
    """The finish_reason's meaning as a stop_reason."""
    assert answer(message, finish=finish)["stop_reason"] == stop_reason


def test_a_refusal_is_text():
    """OpenAI's refusal goes out as the text block."""
    assert answer({"content": None, "refusal": "No."})["content"] == [
        {"type": "text", "text": "No."}]


def test_stop_sequence_when_the_upstream_names_it():
    """A stop on one of the request's stop_sequences is stop_sequence, with
    the sequence, when the upstream names it (vLLM's choice stop_reason);
    a stop on anything else, or unnamed, is end_turn."""
    found = answer({"content": "x"}, ("###", "END"), stop_reason="END")
    assert (found["stop_reason"], found["stop_sequence"]) == ("stop_sequence", "END")
    other = answer({"content": "x"}, ("###",), stop_reason="<|eot|>")
    assert (other["stop_reason"], other["stop_sequence"]) == ("end_turn", None)
    unnamed = answer({"content": "x"}, ("###",))
    assert (unnamed["stop_reason"], unnamed["stop_sequence"]) == ("end_turn", None)


def test_usage():
    """Usage: input_tokens is the prompt less what was read from (and, when
    the upstream says, written to) the cache; no usage is zeros (the
    Messages API requires the counts)."""
    assert messages_usage({"prompt_tokens": 50, "completion_tokens": 5,
                           "prompt_tokens_details": {"cached_tokens": 20,
                                                     "cache_write_tokens": 10}}) == {
        "input_tokens": 20, "output_tokens": 5, "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 20}
    assert messages_usage({"prompt_tokens": 5, "completion_tokens": None,
                           "prompt_tokens_details": {"cached_tokens": 9}}) == {
        "input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 5}
    assert messages_usage(None) is None
    assert answer({"content": "x"}, usage=None)["usage"] == {
        "input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0}


def test_an_empty_or_odd_completion_is_still_a_message():
    """A completion without choices, or with a message that is no object,
    is an empty message the SDK accepts, never a traceback."""
    for odd in ({}, {"choices": None}, {"choices": [{"index": 0, "message": "x"}]},
                {"choices": [{"index": 1, "message": {"content": "n=2"}}]}):
        found = message_of(odd, "company-model", "msg_1")
        Message.model_validate(found)
        assert found["content"] == [] and found["stop_reason"] == "end_turn"


def test_content_as_a_list_of_parts():
    """Some servers send the content as a list of text parts."""
    found = answer({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
    assert found["content"] == [{"type": "text", "text": "ab"}]


# The same message, streamed.


def streamed(message: dict[str, Any], finish: str, pieces: list[int]) -> dict[str, Any]:
    """The message the Messages stream for C{message}, streamed in pieces of
    the given sizes, adds up to."""
    deltas: list[dict[str, Any]] = []
    for key in ("reasoning_content", "content"):
        text = message.get(key) or ""
        for start, size in zip(itertools.accumulate([0, *pieces]), [*pieces, len(text)],
                               strict=False):
            if text[start:start + size]:
                deltas.append({key: text[start:start + size]})
    for index, call in enumerate(message.get("tool_calls", [])):
        arguments = call["function"]["arguments"]
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}
        deltas.append({"tool_calls": [head]})
        size = pieces[0] if pieces else len(arguments) or 1
        for at in range(0, len(arguments), size):
            deltas.append({"tool_calls": [{"index": index, "function": {
                "arguments": arguments[at:at + size]}}]})
    lines: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
    lines.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    lines.append({"choices": [], "usage": USAGE})
    data = b"".join(b"data: " + json.dumps(line).encode() + b"\n\n" for line in lines)
    writer = MessagesEventWriter("company-model", "msg_1", new_id=counting_ids())
    out = writer.feed(data + b"data: [DONE]\n\n") + writer.finish()
    return accumulate(out)


def accumulate(stream: bytes) -> dict[str, Any]:
    """The message the anthropic SDK's MessageStream makes of C{stream},
    served as the body of a /v1/messages answer."""
    def serve(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                               content=stream)
    client = anthropic.Anthropic(api_key="test", base_url="http://proxy.test", max_retries=0,
                                 http_client=httpx2.Client(transport=httpx2.MockTransport(serve)))
    with client.messages.stream(model="company-model", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as events:
        return events.get_final_message().model_dump(exclude_none=True)


json_objects = st.dictionaries(st.text(max_size=5), st.one_of(
    st.text(max_size=8), st.integers(), st.lists(st.text(max_size=3), max_size=3)), max_size=4)


@given(reasoning=st.text(max_size=20), content=st.text(max_size=20),
       inputs=st.lists(json_objects, max_size=3),
       finish=st.sampled_from(["stop", "tool_calls", "length"]),
       pieces=st.lists(st.integers(1, 7), max_size=5))
def test_streamed_and_whole_answers_say_the_same(reasoning, content, inputs, finish, pieces):
    """The message the anthropic SDK's MessageStream makes of a stream is
    the message the same answer gets whole: the same blocks, stop_reason
    and usage."""
    message: dict[str, Any] = {"reasoning_content": reasoning, "content": content}
    if inputs:
        message["tool_calls"] = [tool_call(f"call_{i}", "Bash", json.dumps(value))
                                 for i, value in enumerate(inputs)]
    whole = message_of(completion(message, finish), "company-model", "msg_1",
                       new_id=counting_ids())
    assert streamed(message, finish, pieces) == Message.model_validate(whole).model_dump(
        exclude_none=True)
