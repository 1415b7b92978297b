"""A streamed chat answer written as a Messages API event stream (unit:
L{genaiproxy.api.messages.stream}), read by the anthropic SDK's
C{MessageStream}, and the same bytes however the upstream's stream is
cut."""

from __future__ import annotations

import json

import anthropic
import httpx2
from hypothesis import given
from hypothesis import strategies as st
from support.chat_stream import call, chunk
from support.messages_stream import (
    DONE,
    ROLE,
    USAGE,
    check_whole,
    events_of,
    usage_chunk,
    writer,
)

from genaiproxy.api.messages.answer import message_of

# The anthropic SDK's own reading of the stream.


def sdk_final_message(stream: bytes) -> anthropic.types.Message:
    """What the anthropic SDK's MessageStream makes of C{stream}, served
    as the body of a /v1/messages answer: its SSE decoder, its events and
    its accumulation into the final message."""
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                               content=stream)
    client = anthropic.Anthropic(api_key="test", base_url="http://proxy.test",
                                 http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
                                 max_retries=0)
    with client.messages.stream(model="company-model", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as events:
        return events.get_final_message()


WHOLE = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
    "role": "assistant", "reasoning_content": "Plan.", "content": "Sure.", "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "Bash", "arguments": '{"command":"ls"}'}},
        {"id": "call_b", "type": "function",
         "function": {"name": "Read", "arguments": '{"file_path":"/a\\u00e9"}'}}]}}],
    "usage": USAGE}
RICH_STREAM = (
    ROLE + chunk({"reasoning_content": "Pl"}) + chunk({"reasoning_content": "an."})
    + b": ping\r\n\r\n" + chunk({"content": "Sure."})
    + chunk(call(0, '{"command":', "Bash", "call_a"))
    + chunk(call(1, '{"file_path":"/a\\u00e9', "Read", "call_b")) + chunk(call(0, '"ls"}'))
    + chunk(call(1, '"}')) + chunk({}, "tool_calls") + usage_chunk() + DONE)


def test_the_sdk_accumulates_the_stream_into_the_whole_answer():
    """The anthropic SDK's MessageStream, reading the bytes through its own
    SSE decoder, ends with the message the same answer gets unstreamed."""
    bridge = writer()
    final = sdk_final_message(bridge.feed(RICH_STREAM) + bridge.finish())
    whole = message_of(WHOLE, "company-model", "msg_test")
    assert final.model_dump(exclude_none=True) == anthropic.types.Message.model_validate(
        whole).model_dump(exclude_none=True)
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[3].input == {"file_path": "/a\u00e9"}  # type: ignore[union-attr]


def test_the_sdk_raises_on_a_broken_stream():
    """The SDK reads the error event as an error, never as a whole answer."""
    bridge = writer()
    stream = bridge.feed(chunk({"content": "Hi"})) + bridge.fail("lost")
    try:
        sdk_final_message(stream)
    except anthropic.APIStatusError as error:
        assert "overloaded_error" in str(error)
    else:
        raise AssertionError("the SDK took a broken stream for a whole answer")


# Any split, any stream.


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """C{data} in pieces, cut at the given offsets."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=16))
def test_the_output_does_not_depend_on_where_the_upstream_cut(cuts):
    """However the upstream's bytes are cut, the client gets the same bytes
    as for the stream fed whole; blocks never interleave and every block
    started is stopped."""
    whole = writer()
    expected = whole.feed(RICH_STREAM) + whole.finish()
    bridge = writer()
    out = b"".join(bridge.feed(piece) for piece in split_at(RICH_STREAM, cuts)) + bridge.finish()
    assert out == expected
    check_whole(events_of(out))


@st.composite
def chat_streams(draw: st.DrawFn) -> list[bytes]:
    """Chat streams as servers write them: reasoning, text and tool calls in
    any order, calls in sequence or interleaved, named late or never, any
    finish_reason or none, a usage chunk or none."""
    pieces = draw(st.lists(st.one_of(
        st.builds(lambda text: chunk({"reasoning_content": text}), st.text(min_size=1)),
        st.builds(lambda text: chunk({"content": text}), st.text(min_size=1)),
        st.builds(lambda index, text: chunk(call(index, text)), st.integers(0, 2),
                  st.sampled_from(['"', "}", "{", "x", '\\"', "]", " ", "[1,"])),
        st.builds(lambda index, name: chunk(call(index, "", name)), st.integers(0, 2),
                  st.sampled_from(["Bash", "Read"])),
    ), max_size=14))
    opened = [chunk(call(index, '{"x":"', "Bash")) for index in range(3)]
    stream = [*opened[:draw(st.integers(0, 3))], *pieces]
    finish = draw(st.sampled_from([None, "stop", "tool_calls", "length"]))
    if finish:
        stream.append(chunk({}, finish))
    if draw(st.booleans()):
        stream.append(usage_chunk())
    return stream + [DONE] if draw(st.booleans()) else stream


@given(chat_streams(), st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=6))
def test_any_chat_stream_gives_a_whole_messages_stream(stream, cuts):
    """Whatever a chat stream holds, however it is cut, the Messages stream
    is whole: events the SDK's types accept, blocks indexed from 0 that
    never interleave, every block started stopped (a thinking block after
    its signature_delta), one message_delta and message_stop last, and
    the text of each block what the upstream sent for it."""
    data = b"".join(stream)
    bridge = writer()
    out = b"".join(bridge.feed(piece) for piece in split_at(data, cuts)) + bridge.finish()
    events = events_of(out)
    check_whole(events)
    previous = None
    sent: dict[str, str] = {"thinking": "", "text": ""}
    for event in events:
        if event["type"] == "content_block_stop":
            assert previous is not None
            if previous["type"] == "content_block_delta" and previous["delta"]["type"] in (
                    "thinking_delta", "signature_delta"):
                assert previous["delta"]["type"] == "signature_delta"
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            if delta["type"] in ("thinking_delta", "text_delta"):
                key = delta["type"].removesuffix("_delta")
                sent[key] += delta[key]
        previous = event
    expected = {"thinking": "", "text": ""}
    for piece in stream:
        if piece == DONE:
            continue
        for choice in json.loads(piece[6:])["choices"]:
            if choice["finish_reason"]:
                break
            expected["thinking"] += choice["delta"].get("reasoning_content", "")
            expected["text"] += choice["delta"].get("content", "")
        else:
            continue
        break
    assert sent == expected
