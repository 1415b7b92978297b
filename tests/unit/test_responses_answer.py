"""A whole chat completion answered as a Responses API C{response} object
(unit: L{genaiproxy.api.responses.answer}), checked against the openai
SDK's own C{Response} type."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import Response

from genaiproxy.api.responses.answer import response_of
from genaiproxy.api.responses.items import CustomInputDecoder, custom_input, responses_usage
from genaiproxy.api.responses.tools import DeclaredTool, ToolNames

TOOLS = ToolNames({
    "exec_command": DeclaredTool("function", "exec_command"),
    "apply_patch": DeclaredTool("custom", "apply_patch"),
    "multi_agent_v1__spawn_agent": DeclaredTool("function", "spawn_agent", "multi_agent_v1"),
})
REQUEST = {
    "model": "gpt-5-codex", "instructions": "Be brief.", "input": "hi", "stream": False,
    "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
              {"type": "custom", "name": "apply_patch"}],
    "tool_choice": "auto", "parallel_tool_calls": False, "temperature": 0.2, "top_p": 0.9,
    "max_output_tokens": 500, "text": {"format": {"type": "json_object"}},
    "reasoning": {"effort": "low", "summary": "auto"}, "metadata": {"team": "a"},
}
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 3},
         "completion_tokens_details": {"reasoning_tokens": 2}}


def counting_ids() -> Callable[[str], str]:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def completion(message: dict[str, Any], finish: str | None = "stop",
               usage: dict[str, Any] | None = USAGE, **choice: Any) -> dict[str, Any]:
    """A chat completion as OpenAI writes it."""
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
            "model": "upstream-model", "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish, **choice}]}


def answer(message: dict[str, Any], request: dict[str, Any] = REQUEST,
           **options: Any) -> dict[str, Any]:
    """The response object for a completion with C{message}, which the
    openai SDK's Response type must accept."""
    response = response_of(completion(message, **options), request, TOOLS, "resp_1",
                           1_700_000_000, new_id=counting_ids())
    Response.model_validate(response)
    return response


def call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_a_text_answer_is_a_completed_response():
    """A text answer is a completed response with one message item (its
    output_text with empty annotations), the usage mapped with its details,
    and the request's fields repeated as OpenAI repeats them."""
    response = answer({"content": "Hello"})
    assert response["output"] == [{
        "id": "msg_0", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello"}]}]
    assert {key: response[key] for key in ("id", "object", "created_at", "status", "model",
                                           "error", "incomplete_details", "store")} == {
        "id": "resp_1", "object": "response", "created_at": 1_700_000_000,
        "status": "completed", "model": "gpt-5-codex", "error": None,
        "incomplete_details": None, "store": False}
    for key in ("instructions", "tools", "tool_choice", "parallel_tool_calls", "temperature",
                "top_p", "max_output_tokens", "text", "reasoning", "metadata"):
        assert response[key] == REQUEST[key], key
    assert response["usage"] == {
        "input_tokens": 11, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 18}


def test_what_the_request_left_out_has_the_defaults():
    """A request with only a model and input gets OpenAI's defaults for the
    fields the response repeats (tools [], tool_choice auto, ...)."""
    response = answer({"content": "x"}, {"model": "m", "input": "hi"})
    assert (response["tools"], response["tool_choice"], response["parallel_tool_calls"],
            response["text"], response["metadata"]) == (
        [], "auto", True, {"format": {"type": "text"}}, {})


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_comes_first(field):
    """The upstream's reasoning (DeepSeek's and vLLM's reasoning_content,
    Ollama's reasoning) is a reasoning item before the message: a summary,
    as the request asked for one."""
    response = answer({field: "Think.", "content": "4"})
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]
    assert response["output"][0] == {"id": "rs_0", "type": "reasoning",
                                     "summary": [{"type": "summary_text", "text": "Think."}]}


def test_reasoning_without_a_summary_asked_for_is_reasoning_text():
    """A request that asked for no summary gets the reasoning as what it is,
    reasoning_text content; a message with both names counts it once."""
    response = answer({"reasoning_content": "Think.", "reasoning": "Think.", "content": "4"},
                      {"model": "m"})
    assert response["output"][0] == {"id": "rs_0", "type": "reasoning", "summary": [],
                                     "content": [{"type": "reasoning_text", "text": "Think."}]}


def test_tool_calls_follow_the_message_in_order():
    """Each tool call is its own item after the message, in the upstream's
    order: function calls with their arguments, a custom tool's call with
    the string it was given as input, a namespaced call named as declared."""
    response = answer({"content": "Working.", "tool_calls": [
        call("exec_command", '{"cmd":"ls"}', "call_a"),
        call("apply_patch", '{"input":"*** Begin Patch\\n*** End Patch"}', "call_b"),
        call("multi_agent_v1__spawn_agent", '{"message":"go"}', "call_c"),
        call("invented", "", "call_d")]}, finish="tool_calls")
    assert response["output"][1:] == [
        {"id": "fc_1", "type": "function_call", "status": "completed",
         "arguments": '{"cmd":"ls"}', "call_id": "call_a", "name": "exec_command"},
        {"id": "ctc_2", "type": "custom_tool_call", "status": "completed", "call_id": "call_b",
         "input": "*** Begin Patch\n*** End Patch", "name": "apply_patch"},
        {"id": "fc_3", "type": "function_call", "status": "completed",
         "arguments": '{"message":"go"}', "call_id": "call_c", "name": "spawn_agent",
         "namespace": "multi_agent_v1"},
        {"id": "fc_4", "type": "function_call", "status": "completed", "arguments": "{}",
         "call_id": "call_d", "name": "invented"}]


def test_a_call_without_an_id_is_given_one():
    """A server that sends no tool call id: the call still gets a call_id,
    which the client's function_call_output will name."""
    response = answer({"tool_calls": [{"function": {"name": "exec_command",
                                                    "arguments": {"cmd": "ls"}}}]})
    assert response["output"][0]["call_id"] == "call_1"
    assert json.loads(response["output"][0]["arguments"]) == {"cmd": "ls"}


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"),
                                                ("content_filter", "content_filter")])
def test_a_cut_answer_is_incomplete(finish, reason):
    """An upstream that stopped for length (or its content filter) gives an
    incomplete response saying why, and the item it was writing is
    incomplete."""
    response = answer({"reasoning_content": "r", "content": "Once upon"}, finish=finish)
    assert (response["status"], response["incomplete_details"]) == ("incomplete",
                                                                    {"reason": reason})
    assert response["output"][1]["status"] == "incomplete"


def test_tool_calls_cut_by_length_are_incomplete():
    """Cut while writing tool calls, the calls are the incomplete items."""
    response = answer({"content": "x", "tool_calls": [call("exec_command", '{"cmd":')]},
                      finish="length")
    assert [item["status"] for item in response["output"]] == ["completed", "incomplete"]


def test_a_refusal_is_a_refusal_part():
    """message.refusal is a refusal content part."""
    response = answer({"content": None, "refusal": "I can't help with that."})
    assert response["output"][0]["content"] == [{"type": "refusal",
                                                 "refusal": "I can't help with that."}]


def test_logprobs_are_kept():
    """The choice's logprobs go into the output_text part."""
    logprobs = {"content": [{"token": "é", "logprob": -0.5, "top_logprobs": [
        {"token": "é", "logprob": -0.5, "bytes": [195, 169]}]}]}
    response = answer({"content": "é"}, logprobs=logprobs)
    assert response["output"][0]["content"][0]["logprobs"] == [{
        "token": "é", "bytes": [195, 169], "logprob": -0.5,
        "top_logprobs": [{"token": "é", "bytes": [195, 169], "logprob": -0.5}]}]


def test_usage_always_has_a_total():
    """An upstream usage without total_tokens gets one computed (Codex
    refuses usage without it); no usage at all is null, not made-up zeros."""
    assert responses_usage({"prompt_tokens": 4, "completion_tokens": 5})["total_tokens"] == 9
    assert responses_usage({"prompt_tokens": 4, "completion_tokens": 5,
                            "total_tokens": 0})["total_tokens"] == 0
    assert answer({"content": "x"}, usage=None)["usage"] is None


def test_an_empty_answer_has_no_items():
    """An answer with no text and no calls is a completed response with an
    empty output."""
    assert answer({"content": ""})["output"] == []


@pytest.mark.parametrize(("arguments", "expected"), [
    ('{"input": "a\\nb"}', "a\nb"),
    ('{"input": "trunc', "trunc"),
    ('{"patch": {"not": "a string"}}', '{"patch": {"not": "a string"}}'),
    ("*** Begin Patch", "*** Begin Patch"),
    ("", ""), (" { } ", ""),
    ('{"in\\"put": "v", "other": 1}', "v"),
])
def test_custom_input_of_arguments(arguments, expected):
    """A custom tool's input is the arguments' first member when it is a
    string (even cut short); arguments of another shape are the input as
    they came, and empty ones an empty input."""
    assert custom_input(arguments) == expected


@given(st.text(), st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=8),
       st.booleans())
def test_custom_input_decodes_however_the_arguments_are_cut(text, cuts, ascii_only):
    """Decoded piece by piece, the arguments give the string they hold,
    wherever the pieces are cut (inside an escape, between the halves of a
    surrogate pair); and no piece is text a JSON parser would refuse."""
    arguments = json.dumps({"input": text}, ensure_ascii=ascii_only)
    points = sorted({cut % (len(arguments) + 1) for cut in cuts})
    decoder = CustomInputDecoder()
    pieces = [decoder.feed(arguments[start:end])
              for start, end in zip([0, *points], [*points, len(arguments)], strict=True)]
    pieces.append(decoder.close())
    assert "".join(pieces) == text
    for piece in pieces:
        piece.encode("utf-8")  # no lone surrogate
