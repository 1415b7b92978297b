"""A streamed chat answer written as a Responses API event stream (unit:
L{genaiproxy.api.responses.stream}): the exact event sequences, the
sequence numbers, every item closed, the openai SDK's event types.  The
same bytes however the upstream's stream is cut, and any stream whole, are
in test_responses_stream_whole.py."""

from __future__ import annotations

import json

import pytest
from support.chat_stream import call, chunk
from support.responses_stream import (
    DONE,
    ECHO,
    ROLE,
    START,
    SUMMARY_ECHO,
    briefs,
    check_whole,
    events_of,
    run,
    usage_chunk,
    writer,
)

from genaiproxy.api.responses.stream import EVENT_MAX


def test_a_text_answer():
    """A text answer is one message item with one output_text part, each
    delta sent as it came, and response.completed carries the whole output
    and the usage (with total_tokens) of the usage chunk after the
    finish_reason."""
    events = run(ROLE + chunk({"content": "Hel"}) + chunk({"content": "lo"}) + chunk({}, "stop")
                 + usage_chunk() + DONE)
    assert briefs(events) == [
        *START,
        ("output_item.added", 0, "message", "in_progress"),
        ("content_part.added", 0, "output_text"),
        ("output_text.delta", 0, "Hel"),
        ("output_text.delta", 0, "lo"),
        ("output_text.done", 0, "Hello"),
        ("content_part.done", 0, "output_text"),
        ("output_item.done", 0, "message", "completed"),
        ("completed", "completed")]
    response = events[-1]["response"]
    assert response["output"] == [{
        "id": "msg_0", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello"}]}]
    assert response["usage"] == {
        "input_tokens": 11, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 18}
    assert (response["id"], response["model"], response["created_at"]) == (
        "resp_test", "gpt-5-codex", 1_700_000_000)
    assert response["instructions"] == "Be brief." and response["tools"] == ECHO["tools"]


def test_the_first_events_go_out_before_the_upstream_says_anything():
    """response.created and response.in_progress go out at start(), once."""
    bridge = writer()
    assert briefs(events_of(bridge.start())) == START
    assert bridge.start() == b""
    assert bridge.feed(ROLE) == b""  # a role with empty content opens nothing


@pytest.mark.parametrize(("echo", "expected"), [
    (SUMMARY_ECHO, [("reasoning_summary_part.added", 0, "summary_text"),
                    ("reasoning_summary_text.delta", 0, "Let me "),
                    ("reasoning_summary_text.delta", 0, "think."),
                    ("reasoning_summary_text.done", 0, "Let me think."),
                    ("reasoning_summary_part.done", 0, "summary_text")]),
    (ECHO, [("content_part.added", 0, "reasoning_text"),
            ("reasoning_text.delta", 0, "Let me "),
            ("reasoning_text.delta", 0, "think."),
            ("reasoning_text.done", 0, "Let me think."),
            ("content_part.done", 0, "reasoning_text")]),
])
def test_reasoning_then_text(echo, expected):
    """The upstream's reasoning_content becomes a reasoning item before the
    message, closed when the text begins: as a summary when the request
    asked for one (what Codex shows), else as reasoning_text."""
    events = run(chunk({"reasoning_content": "Let me "}) + chunk({"reasoning_content": "think."})
                 + chunk({"content": "4"}) + chunk({}, "stop") + DONE, echo)
    assert briefs(events) == [
        *START, ("output_item.added", 0, "reasoning", None), *expected,
        ("output_item.done", 0, "reasoning", None),
        ("output_item.added", 1, "message", "in_progress"),
        ("content_part.added", 1, "output_text"),
        ("output_text.delta", 1, "4"),
        ("output_text.done", 1, "4"),
        ("content_part.done", 1, "output_text"),
        ("output_item.done", 1, "message", "completed"),
        ("completed", "completed")]
    reasoning = events[-1]["response"]["output"][0]
    if echo is SUMMARY_ECHO:
        assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    else:
        assert reasoning["content"] == [{"type": "reasoning_text", "text": "Let me think."}]


def test_ollama_and_vllm_name_the_reasoning_reasoning():
    """A delta's "reasoning" (Ollama, newer vLLM) is read as reasoning_content
    is; a delta that has both (vLLM for a while) counts once."""
    events = run(chunk({"reasoning": "a"}) + chunk({"reasoning": "b", "reasoning_content": "b"})
                 + chunk({}, "stop") + DONE, SUMMARY_ECHO)
    assert events[-1]["response"]["output"][0]["summary"][0]["text"] == "ab"


def test_one_tool_call():
    """A tool call is a function_call item named as declared, its arguments
    streamed as they came; the text before it is closed first."""
    events = run(ROLE + chunk({"content": "Running."})
                 + chunk(call(0, "", "exec_command", "call_abc")) + chunk(call(0, '{"cmd":'))
                 + chunk(call(0, '"ls"}')) + chunk({}, "tool_calls") + usage_chunk() + DONE)
    assert briefs(events)[2:] == [
        ("output_item.added", 0, "message", "in_progress"),
        ("content_part.added", 0, "output_text"),
        ("output_text.delta", 0, "Running."),
        ("output_text.done", 0, "Running."),
        ("content_part.done", 0, "output_text"),
        ("output_item.done", 0, "message", "completed"),
        ("output_item.added", 1, "function_call", "in_progress"),
        ("function_call_arguments.delta", 1, '{"cmd":'),
        ("function_call_arguments.delta", 1, '"ls"}'),
        ("function_call_arguments.done", 1, '{"cmd":"ls"}'),
        ("output_item.done", 1, "function_call", "completed"),
        ("completed", "completed")]
    assert events[-1]["response"]["output"][1] == {
        "id": "fc_1", "type": "function_call", "status": "completed",
        "arguments": '{"cmd":"ls"}', "call_id": "call_abc", "name": "exec_command"}


def test_parallel_tool_calls_one_after_another():
    """Parallel calls as OpenAI streams them (one after the other) are one
    item each, in order, all closed at the finish_reason."""
    events = run(chunk(call(0, '{"cmd":"ls"}', "exec_command"))
                 + chunk(call(1, "", "exec_command")) + chunk(call(1, '{"cmd":"pwd"}'))
                 + chunk({}, "tool_calls") + DONE)
    assert briefs(events)[2:] == [
        ("output_item.added", 0, "function_call", "in_progress"),
        ("function_call_arguments.delta", 0, '{"cmd":"ls"}'),
        ("output_item.added", 1, "function_call", "in_progress"),
        ("function_call_arguments.delta", 1, '{"cmd":"pwd"}'),
        ("function_call_arguments.done", 0, '{"cmd":"ls"}'),
        ("output_item.done", 0, "function_call", "completed"),
        ("function_call_arguments.done", 1, '{"cmd":"pwd"}'),
        ("output_item.done", 1, "function_call", "completed"),
        ("completed", "completed")]
    output = events[-1]["response"]["output"]
    assert [(item["call_id"], item["arguments"]) for item in output] == [
        ("call_0", '{"cmd":"ls"}'), ("call_1", '{"cmd":"pwd"}')]


def test_interleaved_tool_calls():
    """Calls whose pieces interleave by index (as some servers send them)
    stay apart: each piece goes to its own item."""
    events = run(chunk(call(0, '{"cmd":', "exec_command")) + chunk(call(1, '{"cmd":', "exec_command"))
                 + chunk(call(0, '"a"}')) + chunk(call(1, '"b"}')) + chunk({}, "tool_calls") + DONE)
    assert briefs(events)[2:8] == [
        ("output_item.added", 0, "function_call", "in_progress"),
        ("function_call_arguments.delta", 0, '{"cmd":'),
        ("output_item.added", 1, "function_call", "in_progress"),
        ("function_call_arguments.delta", 1, '{"cmd":'),
        ("function_call_arguments.delta", 0, '"a"}'),
        ("function_call_arguments.delta", 1, '"b"}')]
    assert [item["arguments"] for item in events[-1]["response"]["output"]] == [
        '{"cmd":"a"}', '{"cmd":"b"}']


def test_a_custom_tool_call_streams_its_input():
    """A call to a tool declared custom is a custom_tool_call item whose
    input is the string parameter's value, decoded as it streams (an escape
    cut between two pieces waits for its end)."""
    events = run(chunk(call(0, '{"input":"*** Begin', "apply_patch"))
                 + chunk(call(0, " Patch\\")) + chunk(call(0, 'n+\\u00e9\\n*** End Patch"}'))
                 + chunk({}, "tool_calls") + DONE)
    assert briefs(events)[2:] == [
        ("output_item.added", 0, "custom_tool_call", "in_progress"),
        ("custom_tool_call_input.delta", 0, "*** Begin"),
        ("custom_tool_call_input.delta", 0, " Patch"),
        ("custom_tool_call_input.delta", 0, "\n+é\n*** End Patch"),
        ("custom_tool_call_input.done", 0, "*** Begin Patch\n+é\n*** End Patch"),
        ("output_item.done", 0, "custom_tool_call", "completed"),
        ("completed", "completed")]
    assert events[-1]["response"]["output"][0] == {
        "id": "ctc_0", "type": "custom_tool_call", "status": "completed", "call_id": "call_0",
        "input": "*** Begin Patch\n+é\n*** End Patch", "name": "apply_patch"}


def test_a_namespaced_call_comes_back_as_declared():
    """A call to a function of a namespace tool carries its declared name
    and the namespace, which Codex routes it by."""
    events = run(chunk(call(0, "{}", "multi_agent_v1__spawn_agent")) + chunk({}, "tool_calls")
                 + DONE)
    item = events[-1]["response"]["output"][0]
    assert (item["name"], item["namespace"]) == ("spawn_agent", "multi_agent_v1")
    assert [e["item"]["namespace"] for e in events if "item" in e] == ["multi_agent_v1"] * 2


def test_a_call_without_arguments_has_empty_json_arguments():
    """A call whose arguments never came is given {} (a delta of its own, so
    that the deltas still add up to the done event's arguments)."""
    events = run(chunk(call(0, "", "exec_command")) + chunk({}, "tool_calls") + DONE)
    assert briefs(events)[3:5] == [("function_call_arguments.delta", 0, "{}"),
                                  ("function_call_arguments.done", 0, "{}")]


def test_finish_reason_length_is_an_incomplete_response():
    """An upstream that stopped for length gives response.incomplete (reason
    max_output_tokens), never response.completed; the cut item is
    incomplete."""
    events = run(chunk({"content": "Once upon"}) + chunk({}, "length") + usage_chunk() + DONE)
    assert briefs(events)[-2:] == [("output_item.done", 0, "message", "incomplete"),
                                   ("incomplete", "incomplete")]
    response = events[-1]["response"]
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"]["total_tokens"] == 18


def test_content_filter_is_an_incomplete_response():
    """finish_reason content_filter: response.incomplete, reason content_filter."""
    events = run(chunk({"content": "x"}) + chunk({}, "content_filter") + DONE)
    assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}


def test_every_item_is_closed_without_a_finish_reason():
    """A stream that ends cleanly with neither finish_reason nor [DONE]
    still closes every item it opened (Codex drops a reply otherwise)."""
    events = run(chunk({"content": "Hi"}) + chunk(call(0, '{"cmd":"ls"}', "exec_command"))
                 + chunk(call(1, '{"input":"x', "apply_patch")))
    assert briefs(events)[-5:] == [
        ("function_call_arguments.done", 1, '{"cmd":"ls"}'),
        ("output_item.done", 1, "function_call", "completed"),
        ("custom_tool_call_input.done", 2, "x"),
        ("output_item.done", 2, "custom_tool_call", "completed"),
        ("completed", "completed")]
    assert events[-1]["response"]["usage"] is None


def test_a_broken_stream_fails_and_never_completes():
    """A stream that breaks upstream ends with response.failed (code and
    message), never response.completed; the items it had open are listed
    incomplete, not announced done (a client may act on a done call)."""
    bridge = writer()
    out = bridge.feed(chunk({"content": "Hal"}) + chunk(call(0, '{"cmd":"rm -', "exec_command")))
    out += bridge.fail("the upstream connection was lost", "server_error")
    events = events_of(out)
    check_whole(events)
    assert briefs(events)[-3:] == [("output_item.added", 1, "function_call", "in_progress"),
                                   ("function_call_arguments.delta", 1, '{"cmd":"rm -'),
                                   ("failed", "failed")]
    response = events[-1]["response"]
    assert response["error"] == {"code": "server_error",
                                 "message": "the upstream connection was lost"}
    assert [(item["type"], item["status"]) for item in response["output"]] == [
        ("message", "completed"), ("function_call", "incomplete")]
    assert (bridge.status, bridge.feed(DONE), bridge.finish(), bridge.fail("again")) == (
        "failed", b"", b"", b"")


def test_an_upstream_error_event_fails_the_response():
    """An upstream's error event mid-stream ends the answer with
    response.failed carrying its code and message."""
    error = b'data: {"error": {"message": "overloaded", "type": "server_error", "code": ' \
            b'"rate_limit_exceeded"}}\n\n'
    events = run(chunk({"content": "Hi"}) + error + chunk({"content": "more"}) + DONE)
    assert briefs(events)[-1] == ("failed", "failed")
    assert events[-1]["response"]["error"] == {"code": "rate_limit_exceeded",
                                               "message": "overloaded"}
    assert not any(e["type"] == "response.output_text.delta" and e["delta"] == "more"
                   for e in events)


def test_the_writer_keeps_the_upstream_error_it_ended_with():
    """The writer keeps the upstream's error (its message and code) for the
    stream's end to report; a stream that broke or ended well has none."""
    error = b'data: {"error": {"message": "overloaded", "code": "server_error"}}\n\n'
    failed = writer()
    failed.feed(chunk({"content": "Hi"}) + error)
    assert failed.upstream_error == {"message": "overloaded", "code": "server_error"}
    broken = writer()
    broken.feed(chunk({"content": "Hi"}))
    broken.fail("the upstream connection was lost")
    whole = writer()
    whole.feed(chunk({"content": "Hi"}) + chunk({}, "stop") + DONE)
    whole.finish()
    assert (broken.upstream_error, whole.upstream_error) == (None, None)


def test_a_vllm_error_object_fails_the_response():
    """vLLM's error shape ({"object": "error", "code": 400}) fails the
    response too, with a code the SDKs know."""
    events = run(b'data: {"object":"error","message":"bad","code":400}\n\n')
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "bad"}


def test_usage_in_a_chunk_with_an_empty_choice():
    """The LiteLLM proxy's usage chunk (choices [{"index": 0, "delta": {}}])
    is read like OpenAI's (choices [])."""
    events = run(chunk({"content": "x"}) + chunk({}, "stop")
                 + usage_chunk([{"index": 0, "delta": {}}]) + DONE)
    assert events[-1]["response"]["usage"]["total_tokens"] == 18


def test_a_refusal_is_a_refusal_part():
    """delta.refusal streams as a refusal content part."""
    events = run(chunk({"refusal": "I can't"}) + chunk({"refusal": " help."}) + chunk({}, "stop")
                 + DONE)
    assert briefs(events)[3:7] == [("content_part.added", 0, "refusal"),
                                   ("refusal.delta", 0, "I can't"),
                                   ("refusal.delta", 0, " help."),
                                   ("refusal.done", 0, "I can't help.")]


def test_logprobs_go_with_their_delta():
    """A chunk's logprobs go with its output_text.delta, and all of them
    with the done event."""
    logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                             "top_logprobs": [{"token": "Hi", "logprob": -0.1}]}]}
    with_logprobs = json.dumps({"choices": [{"index": 0, "delta": {"content": "Hi"},
                                             "logprobs": logprobs}]})
    events = run(b"data: " + with_logprobs.encode() + b"\n\n" + DONE)
    delta = next(e for e in events if e["type"] == "response.output_text.delta")
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert delta["logprobs"] == done["logprobs"] == [{
        "token": "Hi", "bytes": [72, 105], "logprob": -0.1,
        "top_logprobs": [{"token": "Hi", "bytes": [72, 105], "logprob": -0.1}]}]


def test_keep_alive_comments_pass_as_comments():
    """An upstream's SSE comment reaches the client as a comment."""
    bridge = writer()
    bridge.start()
    assert bridge.feed(b": keep-alive\n\n") == b": keep-alive\n\n"


def test_an_event_past_the_bound_fails_the_response():
    """An upstream event longer than EVENT_MAX is not kept: the response
    fails instead of the proxy's memory growing."""
    bridge = writer()
    out = bridge.feed(b"data: " + b"x" * (EVENT_MAX // 2))
    out += bridge.feed(b"x" * (EVENT_MAX // 2 + 10))
    assert briefs(events_of(out))[-1] == ("failed", "failed")
    assert bridge.feed(b"\n\n") == b""
