"""A streamed chat answer written as a Responses API event stream (unit:
L{genaiproxy.api.responses.stream}), whole: the same bytes however the
upstream's stream is cut, any chat stream a whole Responses stream, ending
with the response the answer gets unstreamed, and its usage read by the
proxy's usage reader."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from support.chat_stream import call, chunk
from support.responses_stream import (
    DONE,
    ECHO,
    ROLE,
    SUMMARY_ECHO,
    TOOLS,
    USAGE,
    check_whole,
    counting_ids,
    events_of,
    run,
    usage_chunk,
    writer,
)

from genaiproxy.api.responses.answer import response_of
from genaiproxy.api.stream_usage import UsageReader

RICH_STREAM = (
    ROLE + chunk({"reasoning_content": "Plan: \\u00e9"}) + b": ping\r\n\r\n"
    + chunk({"content": "Sure."}) + chunk(call(0, '{"cmd":', "exec_command"))
    + chunk(call(1, '{"input":"a\\n\\u00e9', "apply_patch")) + chunk(call(0, '"ls"}'))
    + chunk(call(1, '"}')) + chunk({}, "tool_calls") + usage_chunk() + DONE)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """C{data} in pieces, cut at the given offsets."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=16))
def test_the_output_does_not_depend_on_where_the_upstream_cut(cuts):
    """However the upstream's bytes are cut, the client gets the same bytes
    as for the stream fed whole, and every item added is done."""
    whole = writer(SUMMARY_ECHO)
    expected = whole.feed(RICH_STREAM) + whole.finish()
    bridge = writer(SUMMARY_ECHO)
    out = b"".join(bridge.feed(piece) for piece in split_at(RICH_STREAM, cuts)) + bridge.finish()
    assert out == expected
    check_whole(events_of(out))


@st.composite
def chat_streams(draw: st.DrawFn) -> list[bytes]:
    """Chat streams as servers write them: reasoning, text and tool calls in
    any order, calls in sequence or interleaved, any finish_reason or none."""
    pieces = draw(st.lists(st.one_of(
        st.builds(lambda text: chunk({"reasoning_content": text}), st.text(min_size=1)),
        st.builds(lambda text: chunk({"content": text}), st.text(min_size=1)),
        st.builds(lambda index, text: chunk(call(index, json.dumps(text)[1:])),
                  st.integers(0, 2), st.text()),
    ), max_size=12))
    names = draw(st.permutations(["exec_command", "apply_patch", "multi_agent_v1__spawn_agent"]))
    opened = [chunk(call(index, '{"x":"', names[index])) for index in range(3)]
    stream = [*opened[:draw(st.integers(0, 3))], *pieces]
    finish = draw(st.sampled_from([None, "stop", "tool_calls", "length"]))
    if finish:
        stream.append(chunk({}, finish))
    if draw(st.booleans()):
        stream.append(usage_chunk())
    return stream + [DONE] if draw(st.booleans()) else stream


@given(chat_streams(), st.booleans())
def test_any_chat_stream_gives_a_whole_responses_stream(stream, summary):
    """Whatever a chat stream holds, the Responses stream is whole: events
    the SDK accepts, in sequence, every item closed, each item's deltas
    adding up to its done event, and the final output the items done."""
    events = run(b"".join(stream), SUMMARY_ECHO if summary else ECHO)
    sums: dict[int, str] = {}
    for event in events:
        if event["type"].endswith(".delta"):
            sums[event["output_index"]] = sums.get(event["output_index"], "") + event["delta"]
        elif event["type"] in ("response.output_text.done", "response.reasoning_text.done",
                               "response.reasoning_summary_text.done"):
            assert event["text"] == sums.pop(event["output_index"], "")
        elif event["type"] == "response.function_call_arguments.done":
            assert event["arguments"] == sums.pop(event["output_index"], "")
        elif event["type"] == "response.custom_tool_call_input.done":
            assert event["input"] == sums.pop(event["output_index"], "")


def test_the_streamed_answer_ends_as_the_whole_answer_would_be():
    """The response a stream ends with is the response object the same
    answer gets unstreamed."""
    events = run(chunk({"reasoning_content": "Plan."}) + chunk({"content": "Sure."})
                 + chunk(call(0, '{"cmd":"ls"}', "exec_command", "call_a"))
                 + chunk(call(1, '{"input":"*** Begin Patch"}', "apply_patch", "call_b"))
                 + chunk({}, "tool_calls") + usage_chunk() + DONE, SUMMARY_ECHO)
    whole = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "reasoning_content": "Plan.", "content": "Sure.", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'}}]}}],
        "usage": USAGE}
    assert events[-1]["response"] == response_of(whole, SUMMARY_ECHO, TOOLS, "resp_test",
                                                 1_700_000_000, new_id=counting_ids())


def test_crlf_line_ends_read_as_lf_ones():
    """An upstream that ends its lines with CRLF gives the same answer."""
    stream = chunk({"content": "a"}) + chunk(call(0, "{}", "exec_command")) + chunk({}, "stop")
    assert run(stream.replace(b"\n", b"\r\n")) == run(stream)


def test_the_usage_reader_counts_a_bridged_stream():
    """The proxy's usage reader for Responses streams finds the usage of a
    bridged stream in its response.completed event."""
    bridge = writer()
    out = bridge.feed(chunk({"content": "a"}) + chunk({}, "stop") + usage_chunk() + DONE)
    reader = UsageReader(responses_api=True)
    reader.feed(out)
    assert reader.usage == {"input": 11, "output": 7, "cached": 3, "reasoning": 2}
    assert bridge.usage == USAGE and bridge.status == "completed" and bridge.error is None
