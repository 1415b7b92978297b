"""Usage read from streams as they pass, and the usage chunk taken back out
(units: L{genaiproxy.api.stream_usage} and the request rewriting that asks)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from genaiproxy.api.normalize import prepare_body
from genaiproxy.api.stream_usage import HOLD_MAX, LINE_MAX, UsageChunkRemover, UsageReader

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 3},
         "completion_tokens_details": {"reasoning_tokens": 2}}
COUNTED = {"input": 11, "output": 7, "cached": 3, "reasoning": 2}


def chat_stream(with_usage: bool, pieces: tuple[str, ...] = ("Hel", "lo", "!"),
                compact: bool = True) -> bytes:
    """A chat stream as OpenAI writes it; with usage asked for, every chunk
    says "usage": null and a usage-only chunk comes before [DONE]."""
    separators = (",", ":") if compact else (", ", ": ")
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4.1"}
    null = {"usage": None} if with_usage else {}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": piece},
                                    "finish_reason": None}], **null} for piece in pieces]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   **null})
    if with_usage:
        events.append({**base, "choices": [], "usage": USAGE})
    body = b"".join(b"data: " + json.dumps(event, separators=separators).encode() + b"\n\n"
                    for event in events)
    return body + b"data: [DONE]\n\n"


def responses_stream(instructions: str = "Be brief.") -> bytes:
    """A Responses API stream: usage is null until response.completed."""
    response = {"id": "resp_1", "object": "response", "instructions": instructions,
                "output": [], "usage": None, "metadata": {}}
    completed = {**response, "status": "completed",
                 "usage": {"input_tokens": 5, "output_tokens": 4,
                           "input_tokens_details": {"cached_tokens": 1},
                           "output_tokens_details": {"reasoning_tokens": 0}}}

    def event(kind: str, **fields: object) -> bytes:
        data = json.dumps({"type": kind, **fields}).encode()
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    return (event("response.created", response=response)
            + event("response.output_text.delta", delta="Hi")
            + event("response.completed", response=completed))


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """C{data} in pieces, cut at the given offsets."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)
            if data[start:end]]


cuts = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12)


@given(cuts)
def test_chat_usage_is_read_however_the_stream_is_cut(offsets):
    """The usage of a chat stream's last chunk is found whatever the chunk
    boundaries, and the "usage": null of the other chunks is no usage."""
    reader = UsageReader(responses_api=False)
    for piece in split_at(chat_stream(with_usage=True), offsets):
        reader.feed(piece)
    assert reader.usage == COUNTED


def test_a_stream_without_usage_reports_none():
    """A chat stream that was not asked for usage reports none."""
    reader = UsageReader(responses_api=False)
    reader.feed(chat_stream(with_usage=False))
    assert reader.usage is None


@given(cuts)
def test_responses_usage_comes_from_response_completed(offsets):
    """A Responses stream's usage is its response.completed event's."""
    reader = UsageReader(responses_api=True)
    for piece in split_at(responses_stream(), offsets):
        reader.feed(piece)
    assert reader.usage == {"input": 5, "output": 4, "cached": 1, "reasoning": 0}


@given(cuts)
def test_a_long_completed_event_is_read_in_bounded_memory(offsets):
    """A response.completed event far longer than the line buffer (long
    instructions echoed back) still gives its usage, and the reader never
    holds more than its bound of it."""
    stream = responses_stream(instructions="x " * (3 * LINE_MAX))
    reader = UsageReader(responses_api=True)
    pieces = split_at(stream, offsets)
    # Cut the long events finer still, as a network would.
    pieces = [piece[i:i + 8192] for piece in pieces for i in range(0, len(piece), 8192)]
    for piece in pieces:
        reader.feed(piece)
        assert reader.held_bytes <= LINE_MAX
    assert reader.usage == {"input": 5, "output": 4, "cached": 1, "reasoning": 0}


def test_a_usage_object_elsewhere_in_a_responses_stream_is_not_taken():
    """In a Responses stream, only the response's end events count: a
    "usage" object in another event (a tool's arguments) is not usage."""
    event = json.dumps({"type": "response.function_call_arguments.done",
                        "arguments": {"usage": {"input_tokens": 99}}})
    reader = UsageReader(responses_api=True)
    reader.feed(b"event: x\ndata: " + event.encode() + b"\n\n")
    assert reader.usage is None


@given(cuts, st.booleans())
def test_the_remover_gives_the_stream_the_client_asked_for(offsets, compact):
    """A stream answered with usage, once the remover is through it, is byte
    for byte the stream that was asked for without usage, however cut."""
    remover = UsageChunkRemover()
    shown = b"".join(remover.feed(piece)
                     for piece in split_at(chat_stream(True, compact=compact), offsets))
    shown += remover.flush()
    assert shown == chat_stream(False, compact=compact)


def test_whole_events_go_through_at_once_and_unchanged():
    """Chunks that end at event boundaries come out as they went in: the
    same bytes, at once (no re-chunking, nothing held)."""
    remover = UsageChunkRemover()
    stream = chat_stream(with_usage=False)
    events = [event + b"\n\n" for event in stream.split(b"\n\n")[:-1]]
    assert [remover.feed(event) for event in events] == events
    assert remover.flush() == b""


def test_an_unfinished_event_is_held_only_up_to_a_bound():
    """Half an event waits for its end, but one longer than the bound goes
    through as it comes (it cannot be the short usage chunk)."""
    remover = UsageChunkRemover()
    assert remover.feed(b'data: {"choices": [{"delta": {"content": "a') == b""
    assert remover.feed(b'b"}}]}\n\n') == b'data: {"choices": [{"delta": {"content": "ab"}}]}\n\n'
    long = b"data: " + b"y" * (HOLD_MAX + 1)
    assert remover.feed(long) == long
    assert remover.feed(b"z\n\ndata: [DO") == b"z\n\n"
    assert remover.flush() == b"data: [DO"


def test_the_proxy_asks_a_stream_for_its_usage():
    """With stream usage on, a streamed request that did not ask for usage
    is sent asking for it (other stream options kept); one that asked
    already, or is not streamed, goes byte-for-byte as it came."""
    plain = b'{"model":"gpt-4.1","stream":true,"stream_options":{"x":1},"messages":[]}'
    prepared = prepare_body(plain, "max_completion_tokens", stream_usage=True)
    assert prepared.usage_added
    assert json.loads(prepared.body)["stream_options"] == {"x": 1, "include_usage": True}
    asked = b'{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true}}'
    for body in (asked, b'{"model":"gpt-4.1","stream":false}', b'{"stream":true,'
                 b'"stream_options":"odd"}'):
        prepared = prepare_body(body, "max_completion_tokens", stream_usage=True)
        assert not prepared.usage_added and prepared.body == body
    off = prepare_body(plain, "max_completion_tokens", stream_usage=False)
    assert not off.usage_added and off.body == plain


def test_a_body_that_cannot_be_rewritten_goes_as_it_came():
    """A request whose JSON cannot be written back (a number beyond a
    double) is sent as the client wrote it, not asking for usage."""
    body = b'{"model":"gpt-4.1","stream":true,"seed":1e999}'
    prepared = prepare_body(body, "max_completion_tokens", stream_usage=True)
    assert not prepared.usage_added and prepared.body == body
    assert "stream_options" not in prepared.payload


def test_a_long_completed_event_with_its_type_last_is_read():
    """A writer that sorts keys puts "type" after "response": a long
    response.completed event is still recognised by its end."""
    completed = {"response": {"instructions": "y " * (2 * LINE_MAX),
                              "usage": {"input_tokens": 8, "output_tokens": 3}},
                 "sequence_number": 9, "type": "response.completed"}
    stream = b"event: response.completed\ndata: " + json.dumps(completed).encode() + b"\n\n"
    reader = UsageReader(responses_api=True)
    for start in range(0, len(stream), 4096):
        reader.feed(stream[start:start + 4096])
    assert reader.usage == {"input": 8, "output": 3}


def test_the_end_of_a_long_event_split_across_chunks_is_seen():
    """After an event too long to hold, whose blank line is split across two
    chunks, the next event (here the usage chunk) is still taken out."""
    long = b"data: " + json.dumps({"choices": [{"delta": {"content": "x" * (HOLD_MAX + 10)}}],
                                   "usage": None}).encode()
    usage_only = chat_stream(with_usage=True).split(b"\n\n")[-3] + b"\n\n"
    assert b'"choices":[]' in usage_only
    remover = UsageChunkRemover()
    shown = remover.feed(long + b"\n") + remover.feed(b"\n" + usage_only)
    shown += remover.feed(b"data: [DONE]\n\n") + remover.flush()
    assert b'"choices":[]' not in shown and shown.endswith(b"\n\ndata: [DONE]\n\n")
