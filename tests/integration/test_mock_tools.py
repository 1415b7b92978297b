"""The mock upstream's chat model as a tool-using model: the function tools
a request offers called on the first turn (plain, streamed in pieces one
call after another or interleaved), the tools' output quoted on the next,
and reasoning before either, as the openai SDK reads them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.mock_fixtures import reset_client, running_mock, sdk_for, sse_payloads

from genaiproxy.mock import cli as mock_cli
from genaiproxy.mock.server import DEFAULT_REPLY
from genaiproxy.mock.tool_calls import ToolCall, call_ids, parse_tool_call, tool_call_deltas


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """One mock upstream shared by the module's tests."""
    yield from running_mock()


@pytest.fixture
def client(mock_url: str) -> Iterator[httpx.Client]:
    """An httpx client on the shared mock, with its log and counters reset."""
    yield from reset_client(mock_url)


@pytest.fixture
def sdk(mock_url: str, client: httpx.Client) -> Iterator[openai.OpenAI]:
    """The openai SDK pointed straight at the shared mock (log reset)."""
    yield from sdk_for(mock_url)


# The tool-using model: function tools a request offers, called on the first
# turn, the tool's output quoted on the next.

TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("exec_command", "view_image", "write_stdin")
]
EXEC = 'exec_command={"cmd": "echo bridged-ok", "workdir": "/tmp"}'
TWO_CALLS = [("X-Mock-Tool-Call", EXEC), ("X-Mock-Tool-Call", 'view_image={"path": "a.png"}')]
ASK = [{"role": "user", "content": "Run it"}]


def _chunks(client: httpx.Client, body: dict[str, object],
            headers: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The chunks of a streamed chat answer (without [DONE])."""
    answer = client.post("/v1/chat/completions", json={**body, "stream": True},
                         headers=[("X-Mock-Event-Delay", "0"), *headers])
    payloads = sse_payloads(answer.text.splitlines())
    assert payloads[-1] == "[DONE]"
    return [json.loads(payload) for payload in payloads[:-1]]


def test_first_turn_calls_the_offered_tools(sdk: openai.OpenAI, client: httpx.Client) -> None:
    """A request offering function tools gets the calls the control names,
    in order, each with a call_ id and its arguments exactly as given;
    finish_reason is tool_calls and there is no content."""
    completion = sdk.chat.completions.create(
        model="gpt-5", messages=ASK, tools=TOOLS, extra_headers={"X-Mock-Tool-Call": EXEC})
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "exec_command"
    assert call.function.arguments == '{"cmd": "echo bridged-ok", "workdir": "/tmp"}'

    answer = client.post("/v1/chat/completions", json={"messages": ASK, "tools": TOOLS},
                         headers=TWO_CALLS).json()
    calls = answer["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["exec_command", "view_image"]
    assert len({c["id"] for c in calls}) == 2
    assert answer["usage"]["completion_tokens"] > 0


def test_only_offered_tools_are_called(client: httpx.Client) -> None:
    """The mock calls only functions the request offers, none when
    tool_choice is none, only the one tool_choice names, and only the first
    when parallel_tool_calls is false; otherwise it answers as usual."""
    def names(body: dict[str, object], headers: list[tuple[str, str]] = TWO_CALLS) -> list[str]:
        answer = client.post("/v1/chat/completions", json={"messages": ASK, **body},
                             headers=headers).json()["choices"][0]
        message = answer["message"]
        if not message.get("tool_calls"):
            assert message["content"] == DEFAULT_REPLY and answer["finish_reason"] == "stop"
            return []
        return [call["function"]["name"] for call in message["tool_calls"]]

    assert names({"tools": TOOLS}) == ["exec_command", "view_image"]
    assert names({}) == []
    assert names({"tools": TOOLS[1:]}) == ["view_image"]
    assert names({"tools": TOOLS[2:]}) == []
    assert names({"tools": [{"type": "custom", "name": "exec_command"}, "junk"]}) == []
    assert names({"tools": TOOLS, "tool_choice": "none"}) == []
    assert names({"tools": TOOLS, "tool_choice": {"type": "function",
                                                  "function": {"name": "view_image"}}}) == ["view_image"]
    assert names({"tools": TOOLS, "parallel_tool_calls": False}) == ["exec_command"]
    assert names({"tools": TOOLS}, headers=[]) == []  # no control: the usual reply


def test_streamed_calls_one_after_another(client: httpx.Client, sdk: openai.OpenAI) -> None:
    """Streamed, as OpenAI sends them: each call opens with index, id, type
    and name with empty arguments, its arguments follow in several pieces
    (index and arguments only), then the next call; the SDK's stream helper
    rebuilds both calls."""
    chunks = _chunks(client, {"messages": ASK, "tools": TOOLS}, TWO_CALLS)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0]["role"] == "assistant" and deltas[0]["content"] is None
    assert deltas[-1] == {} and chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    entries = [entry for delta in deltas[:-1] for entry in delta["tool_calls"]]
    assert len(entries) == len(deltas) - 1  # one entry per chunk
    assert [entry["index"] for entry in entries] == sorted(entry["index"] for entry in entries)
    for index, arguments in enumerate(['{"cmd": "echo bridged-ok", "workdir": "/tmp"}',
                                       '{"path": "a.png"}']):
        opening, *pieces = [entry for entry in entries if entry["index"] == index]
        assert opening["id"].startswith("call_") and opening["type"] == "function"
        assert opening["function"] == {"name": TOOLS[index]["function"]["name"], "arguments": ""}
        assert len(pieces) == 5 and all(set(piece) == {"index", "function"} for piece in pieces)
        assert "".join(piece["function"]["arguments"] for piece in pieces) == arguments

    with sdk.chat.completions.stream(model="gpt-5", messages=ASK, tools=TOOLS,
                                     extra_headers={"X-Mock-Event-Delay": "0",
                                                    "X-Mock-Tool-Call": EXEC}) as stream:
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"cmd": "echo bridged-ok", "workdir": "/tmp"}


def test_streamed_calls_interleaved(client: httpx.Client, sdk: openai.OpenAI) -> None:
    """Interleaved, as vLLM may send them: every call opens first with its
    name and no arguments key, then the pieces take turns by index; the
    SDK still rebuilds each call's arguments."""
    headers = [*TWO_CALLS, ("X-Mock-Interleave-Tool-Calls", "1"), ("X-Mock-Events", "3")]
    chunks = _chunks(client, {"messages": ASK, "tools": TOOLS}, headers)
    entries = [entry for chunk in chunks[:-1] for entry in chunk["choices"][0]["delta"]["tool_calls"]]
    assert [entry["index"] for entry in entries] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert entries[0]["function"] == {"name": "exec_command"} and "arguments" not in entries[1]["function"]
    assert entries[0]["id"] != entries[1]["id"]

    stream = sdk.chat.completions.create(
        model="gpt-5", messages=ASK, tools=TOOLS, stream=True,
        extra_headers={"X-Mock-Event-Delay": "0", "X-Mock-Interleave-Tool-Calls": "1",
                       "X-Mock-Tool-Call": EXEC})
    arguments = "".join(delta.function.arguments or "" for chunk in stream
                        for delta in chunk.choices[0].delta.tool_calls or [] if delta.function)
    assert json.loads(arguments) == {"cmd": "echo bridged-ok", "workdir": "/tmp"}


def test_the_tool_output_is_quoted(sdk: openai.OpenAI, client: httpx.Client) -> None:
    """When the conversation ends in the tool outputs, the answer quotes
    each (one 'The tool said:' line per output, text parts joined), plain
    and streamed, whatever the tool-call control says."""
    first = sdk.chat.completions.create(model="gpt-5", messages=ASK, tools=TOOLS,
                                        extra_headers={"X-Mock-Tool-Call": EXEC})
    call = (first.choices[0].message.tool_calls or [])[0]
    messages = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "bridged-ok\n"},
                {"role": "tool", "tool_call_id": "call_2",
                 "content": [{"type": "text", "text": "two "}, {"type": "text", "text": "parts"}]}]
    second = sdk.chat.completions.create(model="gpt-5", messages=messages, tools=TOOLS,
                                         extra_headers={"X-Mock-Tool-Call": EXEC})
    quote = "The tool said: bridged-ok\n\nThe tool said: two parts"
    assert second.choices[0].message.content == quote
    assert second.choices[0].finish_reason == "stop" and not second.choices[0].message.tool_calls
    chunks = _chunks(client, {"messages": messages}, [])
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == quote


THOUGHT = "The user wants a command run, so I call exec_command."


def test_reasoning_content_plain_and_streamed(sdk: openai.OpenAI, client: httpx.Client) -> None:
    """X-Mock-Reasoning puts the text in the message's reasoning_content
    (the SDK keeps it), counted as reasoning tokens; streamed, it comes
    first in deltas of its own that join back to it, then the content."""
    completion = sdk.chat.completions.create(model="gpt-5", messages=ASK,
                                             extra_headers={"X-Mock-Reasoning": THOUGHT})
    message = completion.choices[0].message
    assert message.content == DEFAULT_REPLY
    assert (message.model_extra or {})["reasoning_content"] == THOUGHT
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == len(THOUGHT.split())
    assert usage.completion_tokens == len(THOUGHT.split()) + len(DEFAULT_REPLY.split())

    stream = sdk.chat.completions.create(model="gpt-5", messages=ASK, stream=True,
                                         extra_headers={"X-Mock-Reasoning": THOUGHT,
                                                        "X-Mock-Event-Delay": "0"})
    deltas = [chunk.choices[0].delta for chunk in stream if chunk.choices]
    thinking = [(delta.model_extra or {}).get("reasoning_content") for delta in deltas]
    first_content = next(i for i, delta in enumerate(deltas) if delta.content)
    assert all(thinking[:first_content]) and not any(thinking[first_content:])
    assert "".join(thinking[:first_content]) == THOUGHT
    assert deltas[0].role == "assistant"
    assert "".join(delta.content or "" for delta in deltas) == DEFAULT_REPLY


def test_reasoning_field_and_tool_calls(client: httpx.Client) -> None:
    """X-Mock-Reasoning-Field: reasoning names the field as vLLM and Ollama
    do; reasoning comes before tool calls too; an unknown field is a 400."""
    headers = [("X-Mock-Reasoning", THOUGHT), ("X-Mock-Reasoning-Field", "reasoning"),
               ("X-Mock-Tool-Call", EXEC)]
    plain = client.post("/v1/chat/completions", json={"messages": ASK, "tools": TOOLS},
                        headers=headers).json()["choices"][0]["message"]
    assert plain["reasoning"] == THOUGHT and "reasoning_content" not in plain
    assert plain["tool_calls"][0]["function"]["name"] == "exec_command"

    deltas = [c["choices"][0]["delta"] for c in _chunks(client, {"messages": ASK, "tools": TOOLS}, headers)]
    kinds = ["reasoning" if "reasoning" in delta else "tool_calls" if "tool_calls" in delta else "end"
             for delta in deltas]
    assert kinds == ["reasoning"] * 5 + ["tool_calls"] * 6 + ["end"]
    assert deltas[0]["role"] == "assistant" and "role" not in deltas[5]
    assert "".join(delta["reasoning"] for delta in deltas[:5]) == THOUGHT

    bad = client.post("/v1/chat/completions", json={"messages": ASK},
                      headers={"X-Mock-Reasoning-Field": "thinking"})
    assert bad.status_code == 400 and "X-Mock-Reasoning-Field" in bad.json()["error"]["message"]
    bad = client.post("/v1/chat/completions", json={"messages": ASK, "tools": TOOLS},
                      headers={"X-Mock-Tool-Call": "exec_command=[1]"})
    assert bad.status_code == 400 and "X-Mock-Tool-Call" in bad.json()["error"]["message"]


@given(arguments=st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=4),
       names=st.lists(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), min_size=1, max_size=4),
       pieces=st.integers(0, 12), interleave=st.booleans())
def test_tool_call_deltas_rebuild_the_calls(arguments: dict[str, str], names: list[str],
                                            pieces: int, interleave: bool) -> None:
    """However many pieces and in either order, each call's first entry
    carries its id, type and name, the others only its index and an
    arguments piece, and the pieces join back to the arguments."""
    calls = [ToolCall(name, json.dumps(arguments)) for name in names]
    entries = tool_call_deltas(calls, call_ids(7, calls), pieces, interleave)
    for index, call in enumerate(calls):
        opening, *rest = [entry for entry in entries if entry["index"] == index]
        assert (opening["id"], opening["type"], opening["function"]["name"]) == (
            f"call_mock_7_{index}", "function", call.name)
        assert 1 <= len(rest) <= max(1, pieces)
        assert all(set(entry) == {"index", "function"} for entry in rest)
        assert opening["function"].get("arguments", "") + "".join(
            entry["function"]["arguments"] for entry in rest) == call.arguments
    if not interleave:
        assert [entry["index"] for entry in entries] == sorted(entry["index"] for entry in entries)


def test_tool_call_option_parsing() -> None:
    """--tool-call takes NAME or NAME=JSON object (kept as given); anything
    else is a usage error, and the header a 400."""
    assert parse_tool_call("view_image") == ToolCall("view_image", "{}")
    assert parse_tool_call('f= {"a": [1]} ') == ToolCall("f", '{"a": [1]}')
    for bad in ("", "=x", "two words", "f=[1]", "f={nope"):
        with pytest.raises(ValueError):
            parse_tool_call(bad)
        with pytest.raises(SystemExit) as exited:
            mock_cli.main(["--tool-call", bad])
        assert exited.value.code == 2
