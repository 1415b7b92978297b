"""A streamed chat answer written as a Messages API event stream (unit:
L{genaiproxy.api.messages.stream}): the exact event sequences, blocks that
never interleave and are all stopped.  The anthropic SDK's reading of the
stream, and the same bytes however the upstream's stream is cut, are in
test_messages_stream_sdk.py."""

from __future__ import annotations

from support.chat_stream import call, chunk
from support.messages_stream import (
    DONE,
    END,
    ROLE,
    START,
    USAGE,
    brief,
    briefs,
    check_whole,
    events_of,
    run,
    usage_chunk,
    writer,
)

from genaiproxy.api.messages.stream import EVENT_MAX, error_type_of


def test_a_text_answer():
    """A text answer is message_start (empty, the model asked for, the
    input as estimated), ping, one text block whose deltas go out as they
    came, then message_delta with the usage chunk's counts and
    message_stop."""
    events = run(ROLE + chunk({"content": "Hel"}) + chunk({"content": "lo"}) + chunk({}, "stop")
                 + usage_chunk() + DONE, input_tokens=123)
    assert events == [
        {"type": "message_start", "message": {
            "id": "msg_test", "type": "message", "role": "assistant",
            "model": "company-model", "content": [], "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 123, "output_tokens": 0,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"input_tokens": 10, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 100, "output_tokens": 7}},
        {"type": "message_stop"}]


def test_the_first_events_go_out_before_the_upstream_says_anything():
    """message_start and ping go out at start(), once; a role delta with
    empty content starts no block."""
    bridge = writer()
    assert briefs(events_of(bridge.start())) == START
    assert bridge.start() == b""
    assert bridge.feed(ROLE) == b""


def test_thinking_then_text():
    """reasoning_content is a thinking block before the text: thinking
    deltas, then a signature_delta (the empty signature) before it stops."""
    events = run(chunk({"reasoning_content": "Let me "}) + chunk({"reasoning_content": "think."})
                 + chunk({"content": "4"}) + chunk({}, "stop") + DONE)
    assert briefs(events) == [
        *START,
        ("start", 0, "thinking"),
        ("thinking_delta", 0, "Let me "),
        ("thinking_delta", 0, "think."),
        ("signature_delta", 0, ""),
        ("stop", 0),
        ("start", 1, "text"),
        ("text_delta", 1, "4"),
        ("stop", 1),
        *END]
    assert events[2]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}


def test_ollama_and_vllm_name_the_reasoning_reasoning():
    """A delta's "reasoning" (Ollama, newer vLLM) is read as reasoning_content
    is; a delta that has both counts once."""
    events = run(chunk({"reasoning": "a"}) + chunk({"reasoning": "b", "reasoning_content": "b"})
                 + chunk({}, "stop") + DONE)
    assert [e["delta"]["thinking"] for e in events if e["type"] == "content_block_delta"
            and e["delta"]["type"] == "thinking_delta"] == ["a", "b"]


def test_one_tool_call():
    """A tool call is a tool_use block with the chat call's id and name,
    its arguments sent as input_json_delta as they came; the text before it
    stops first; stop_reason tool_use."""
    events = run(ROLE + chunk({"content": "Running."})
                 + chunk(call(0, "", "Bash", "call_abc")) + chunk(call(0, '{"command":'))
                 + chunk(call(0, '"ls"}')) + chunk({}, "tool_calls") + usage_chunk() + DONE)
    assert briefs(events) == [
        *START,
        ("start", 0, "text"),
        ("text_delta", 0, "Running."),
        ("stop", 0),
        ("start", 1, "tool_use", "call_abc", "Bash"),
        ("input_json_delta", 1, '{"command":'),
        ("input_json_delta", 1, '"ls"}'),
        ("stop", 1),
        ("message_delta", "tool_use", None),
        ("message_stop",)]
    assert events[5]["content_block"] == {"type": "tool_use", "id": "call_abc", "name": "Bash",
                                          "input": {}}


def test_parallel_tool_calls_one_after_another():
    """Parallel calls as OpenAI streams them (one after the other) each
    stream as they come: a call stops once its arguments' object closed and
    the next begins."""
    events = run(chunk(call(0, '{"command":"ls"}', "Bash"))
                 + chunk(call(1, "", "Read")) + chunk(call(1, '{"file_path":'))
                 + chunk(call(1, '"/etc/hosts"}')) + chunk({}, "tool_calls") + DONE)
    assert briefs(events) == [
        *START,
        ("start", 0, "tool_use", "call_0", "Bash"),
        ("input_json_delta", 0, '{"command":"ls"}'),
        ("stop", 0),
        ("start", 1, "tool_use", "call_1", "Read"),
        ("input_json_delta", 1, '{"file_path":'),
        ("input_json_delta", 1, '"/etc/hosts"}'),
        ("stop", 1),
        ("message_delta", "tool_use", None),
        ("message_stop",)]


def test_interleaved_tool_calls_are_serialised():
    """Calls whose pieces interleave by index (as some servers send them)
    never interleave as blocks: the later call's pieces are held until the
    earlier call's object closes, then sent as one delta."""
    events = run(chunk(call(0, '{"command":', "Bash")) + chunk(call(1, '{"command":', "Bash"))
                 + chunk(call(0, '"a"')) + chunk(call(1, '"b"}')) + chunk(call(0, "}"))
                 + chunk({}, "tool_calls") + DONE)
    assert briefs(events) == [
        *START,
        ("start", 0, "tool_use", "call_0", "Bash"),
        ("input_json_delta", 0, '{"command":'),
        ("input_json_delta", 0, '"a"'),
        ("input_json_delta", 0, "}"),
        ("stop", 0),
        ("start", 1, "tool_use", "call_1", "Bash"),
        ("input_json_delta", 1, '{"command":"b"}'),
        ("stop", 1),
        ("message_delta", "tool_use", None),
        ("message_stop",)]


def test_an_unfinished_call_holds_the_rest_until_the_finish_reason():
    """A call whose object never closes stays open to the finish_reason;
    the calls and text after it wait, and go out in order then."""
    events = run(chunk(call(0, '{"command":"a', "Bash")) + chunk(call(1, '{}', "Read"))
                 + chunk({"content": "after"}) + chunk({}, "length") + DONE)
    assert briefs(events) == [
        *START,
        ("start", 0, "tool_use", "call_0", "Bash"),
        ("input_json_delta", 0, '{"command":"a'),
        ("stop", 0),
        ("start", 1, "tool_use", "call_1", "Read"),
        ("input_json_delta", 1, "{}"),
        ("stop", 1),
        ("start", 2, "text"),
        ("text_delta", 2, "after"),
        ("stop", 2),
        ("message_delta", "max_tokens", None),
        ("message_stop",)]


def test_a_call_named_late_waits_for_its_name():
    """A call whose first piece has no name starts once the name comes."""
    events = run(chunk({"tool_calls": [{"index": 0, "id": "call_x",
                                        "function": {"arguments": '{"a":'}}]})
                 + chunk({"tool_calls": [{"index": 0, "function": {"name": "Bash",
                                                                   "arguments": "1}"}}]})
                 + chunk({}, "tool_calls") + DONE)
    assert briefs(events)[2:5] == [("start", 0, "tool_use", "call_x", "Bash"),
                                  ("input_json_delta", 0, '{"a":1}'), ("stop", 0)]


def test_a_call_without_an_id_or_arguments():
    """A call the upstream gave no id gets a toolu_ one; a call whose
    arguments never came gets {} (one delta of its own)."""
    events = run(chunk({"tool_calls": [{"index": 0, "function": {"name": "TaskList"}}]})
                 + chunk({}, "tool_calls") + DONE)
    assert briefs(events)[2:5] == [("start", 0, "tool_use", "toolu_0", "TaskList"),
                                  ("input_json_delta", 0, "{}"), ("stop", 0)]


def test_arguments_that_are_no_object_are_sent_whole_at_the_end():
    """Arguments that do not begin as a JSON object are held, and sent at
    the block's end as the object the unstreamed answer has."""
    events = run(chunk(call(0, ' "ls', "Bash")) + chunk(call(0, ' -l"')) + chunk({}, "tool_calls"))
    assert briefs(events)[2:5] == [
        ("start", 0, "tool_use", "call_0", "Bash"),
        ("input_json_delta", 0, '{"_raw_arguments": " \\"ls -l\\""}'),
        ("stop", 0)]


def test_pieces_after_the_object_closed_are_left_out():
    """A server that repeats the whole arguments in its last piece: what
    comes after the object closed is not sent (it would make the input
    invalid JSON)."""
    events = run(chunk(call(0, '{"a":"}\\"{"}', "Bash")) + chunk(call(0, '{"a":"}\\"{"}'))
                 + chunk({}, "tool_calls") + DONE)
    assert briefs(events)[3:5] == [("input_json_delta", 0, '{"a":"}\\"{"}'), ("stop", 0)]


def test_finish_reason_length():
    """An upstream that stopped for length: stop_reason max_tokens."""
    events = run(chunk({"content": "Once upon"}) + chunk({}, "length") + usage_chunk() + DONE)
    assert briefs(events)[-2:] == [("message_delta", "max_tokens", None), ("message_stop",)]


def test_stop_reasons():
    """content_filter is a refusal; a stop on one of the request's
    stop_sequences (vLLM names it in the choice's stop_reason) is
    stop_sequence, with the sequence; calls under finish_reason stop are
    tool_use."""
    refused = run(chunk({"content": "x"}) + chunk({}, "content_filter") + DONE)
    assert brief(refused[-2]) == ("message_delta", "refusal", None)
    vllm = chunk({}, "stop").replace(b'"finish_reason":"stop"',
                                     b'"finish_reason":"stop","stop_reason":"###"')
    stopped = run(chunk({"content": "x"}) + vllm + DONE, stop_sequences=["###"])
    assert brief(stopped[-2]) == ("message_delta", "stop_sequence", "###")
    unasked = run(chunk({"content": "x"}) + vllm + DONE)
    assert brief(unasked[-2]) == ("message_delta", "end_turn", None)
    ollama = run(chunk(call(0, "{}", "Bash")) + chunk({}, "stop") + DONE)
    assert brief(ollama[-2]) == ("message_delta", "tool_use", None)


def test_every_block_is_stopped_without_a_finish_reason():
    """A stream that ends cleanly with neither finish_reason nor [DONE]
    still stops every block it started, and ends with message_delta (no
    usage came: output_tokens 0 alone) and message_stop."""
    events = run(chunk({"content": "Hi"}) + chunk(call(0, '{"command":"ls"', "Bash"))
                 + chunk(call(1, '{"x":1}', "Read")))
    assert briefs(events)[-7:] == [
        ("input_json_delta", 1, '{"command":"ls"'),
        ("stop", 1),
        ("start", 2, "tool_use", "call_1", "Read"),
        ("input_json_delta", 2, '{"x":1}'),
        ("stop", 2),
        ("message_delta", "tool_use", None),
        ("message_stop",)]
    assert events[-2]["usage"] == {"output_tokens": 0}


def test_message_delta_waits_for_the_usage_chunk():
    """The usage chunk comes after the finish_reason: message_delta waits
    for it, and goes out as soon as it comes (before [DONE])."""
    bridge = writer()
    out = bridge.feed(chunk({"content": "Hi"}) + chunk({}, "stop"))
    assert briefs(events_of(out))[-1] == ("stop", 0)
    out = bridge.feed(usage_chunk([{"index": 0, "delta": {}}]))  # the LiteLLM proxy's shape
    assert briefs(events_of(out)) == END
    assert events_of(out)[0]["usage"]["cache_read_input_tokens"] == 100
    assert bridge.feed(DONE) == b"" and bridge.finish() == b""
    assert (bridge.status, bridge.stop_reason, bridge.usage) == ("completed", "end_turn", USAGE)


def test_usage_in_the_finish_chunk_ends_the_message_at_once():
    """A server that puts the usage in the finish_reason's chunk: the
    message ends with that chunk."""
    bridge = writer()
    out = bridge.feed(chunk({"content": "Hi"}) + chunk({}, "stop", usage=USAGE))
    assert briefs(events_of(out))[-2:] == END


def test_a_broken_stream_ends_with_an_error_event():
    """A stream that breaks upstream ends with an error event, never
    message_stop; the open block is not stopped (Claude Code acts on a
    stopped block, and these arguments are cut)."""
    bridge = writer()
    out = bridge.feed(chunk({"content": "Hal"}) + chunk(call(0, '{"command":"rm -', "Bash")))
    out += bridge.fail("the upstream connection was lost")
    events = events_of(out)
    check_whole(events)
    assert briefs(events)[-3:] == [
        ("start", 1, "tool_use", "call_0", "Bash"),
        ("input_json_delta", 1, '{"command":"rm -'),
        ("error", "overloaded_error", "the upstream connection was lost")]
    assert events[-1] == {"type": "error", "error": {
        "type": "overloaded_error", "message": "the upstream connection was lost"}}
    assert (bridge.status, bridge.feed(DONE), bridge.finish(), bridge.fail("again")) == (
        "failed", b"", b"", b"")
    assert briefs(events_of(writer().fail("x", "api_error"))) == [*START, ("error", "api_error", "x")]


def test_an_upstream_error_event_ends_with_an_error_event():
    """An upstream's error event mid-stream ends the answer with an error
    event: overloaded_error for a transient code (Claude Code retries it),
    api_error for any other; nothing after it is sent."""
    error = b'data: {"error": {"message": "slow down", "type": "requests", "code": ' \
            b'"rate_limit_exceeded"}}\n\n'
    events = run(chunk({"content": "Hi"}) + error + chunk({"content": "more"}) + DONE)
    assert briefs(events)[-1] == ("error", "overloaded_error", "slow down")
    assert ("text_delta", 0, "more") not in briefs(events)
    vllm = run(b'data: {"object":"error","message":"bad","code":400}\n\n')
    assert briefs(vllm)[-1] == ("error", "api_error", "bad")
    assert error_type_of("server_error") == "api_error"


def test_keep_alive_comments_pass_as_comments():
    """An upstream's SSE comment reaches the client as a comment."""
    bridge = writer()
    bridge.start()
    assert bridge.feed(b": keep-alive\n\n") == b": keep-alive\n\n"


def test_an_event_past_the_bound_fails_the_message():
    """An upstream event longer than EVENT_MAX is not kept: the message
    fails instead of the proxy's memory growing."""
    bridge = writer()
    out = bridge.feed(b"data: " + b"x" * (EVENT_MAX // 2))
    out += bridge.feed(b"x" * (EVENT_MAX // 2 + 10))
    assert briefs(events_of(out))[-1][:2] == ("error", "api_error")
    assert bridge.feed(b"\n\n") == b""


def test_a_refusal_is_text_and_stops_as_a_refusal():
    """delta.refusal (OpenAI) streams as text; stop_reason refusal."""
    events = run(chunk({"refusal": "I can't"}) + chunk({}, "stop") + DONE)
    assert briefs(events)[2:] == [("start", 0, "text"), ("text_delta", 0, "I can't"),
                                  ("stop", 0), ("message_delta", "refusal", None),
                                  ("message_stop",)]


def test_crlf_line_ends_read_as_lf_ones():
    """An upstream that ends its lines with CRLF gives the same answer."""
    stream = chunk({"content": "a"}) + chunk(call(0, "{}", "Bash")) + chunk({}, "stop")
    assert run(stream.replace(b"\n", b"\r\n")) == run(stream)
