"""The Responses bridge in the request path (RESPONSES_API): a Responses
request sent to a chat-only upstream's /chat/completions and answered in the
Responses API, in memory (L{genaiproxy.testing.MemoryProxy})."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.logger import LogLevel, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from genaiproxy.testing import MemoryProxy

CHAT_COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Bridged hello."}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}
CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Brid"}}]},
    {"choices": [{"index": 0, "delta": {"content": "ged."}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}},
]
RESPONSES = {"model": "gpt-4.1", "input": "Say hello.", "instructions": "Be brief."}


class ChatOnly(Resource):
    """A gateway that publishes only chat completions: 404 (as an API
    Management portal words it) on /responses; streams when asked, and holds
    a stream open after C{hold_after} chunks."""

    isLeaf = True

    def __init__(self, hold_after: int | None = None) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, Any]] = []
        self.hold_after = hold_after
        self.held: list[Request] = []

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        body = json.loads(request.content.read())
        self.seen.append((request.path, body))
        request.setHeader(b"content-type", b"application/json")
        if not request.path.endswith(b"/chat/completions"):
            request.setResponseCode(404)
            return b'{"statusCode": 404, "message": "Resource not found"}'
        if not body.get("stream"):
            return json.dumps(CHAT_COMPLETION).encode()
        request.setHeader(b"content-type", b"text/event-stream")
        chunks = CHUNKS if self.hold_after is None else CHUNKS[:self.hold_after]
        for chunk in chunks:
            request.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if self.hold_after is not None:
            self.held.append(request)
            return NOT_DONE_YET
        request.write(b"data: [DONE]\n\n")
        request.finish()
        return NOT_DONE_YET


def events_of(body: bytes) -> list[dict[str, Any]]:
    """The data of each server-sent event in C{body}."""
    return [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]


def logged(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_format") == name or e.get("event") == name]


def capture() -> tuple[list[dict[str, Any]], Any]:
    events: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.info, LogLevel.warn, LogLevel.error):
            events.append(event)
    globalLogPublisher.addObserver(observer)
    return events, observer


def test_chat_mode_answers_a_responses_request_through_chat_completions():
    """With RESPONSES_API=chat, POST /v1/responses goes to the upstream's
    /chat/completions as a chat request, and the client gets a Responses
    object with the answer's text and usage (total_tokens included)."""
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"})
    answer = proxy.request("POST", "/v1/responses", json=RESPONSES)
    assert answer.code == 200
    document = answer.json()
    assert document["object"] == "response" and document["status"] == "completed"
    assert document["output"][0]["content"][0]["text"] == "Bridged hello."
    assert document["usage"]["total_tokens"] == 10
    [(path, sent)] = upstream.seen
    assert path == b"/v1/chat/completions"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Say hello."}]


def test_auto_mode_bridges_after_a_404_and_remembers_it():
    """With RESPONSES_API=auto (the default), the upstream's 404 on
    /responses is not what the client gets: the same request is answered
    through /chat/completions, responses_bridged is logged once, and the
    next request goes to /chat/completions at once."""
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream)
    events, observer = capture()
    try:
        first = proxy.request("POST", "/v1/responses", json=RESPONSES)
        second = proxy.request("POST", "/v1/responses", json=RESPONSES)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert first.code == second.code == 200
    assert [path for path, _ in upstream.seen] == [
        b"/v1/responses", b"/v1/chat/completions", b"/v1/chat/completions"]
    [bridged] = logged(events, "responses_bridged")
    assert bridged["upstream_name"] == "default"


def test_native_mode_passes_the_404_through():
    """With RESPONSES_API=native the upstream's answer is the client's."""
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "native"})
    answer = proxy.request("POST", "/v1/responses", json=RESPONSES)
    assert answer.code == 404
    assert [path for path, _ in upstream.seen] == [b"/v1/responses"]


def test_a_bridged_stream_is_the_responses_event_sequence():
    """A streamed request gets the Responses events: created first,
    sequence numbers from 0 by one, the text as deltas, and completed last
    with the usage; the upstream was asked for its usage."""
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"})
    answer = proxy.request("POST", "/v1/responses", json=dict(RESPONSES, stream=True))
    assert answer.code == 200
    assert answer.header("content-type").startswith("text/event-stream")
    events = events_of(answer.body)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == (
        "Bridged.")
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["total_tokens"] == 9
    [(_, sent)] = upstream.seen
    assert sent["stream_options"] == {"include_usage": True}


def test_a_stream_cut_upstream_ends_with_response_failed():
    """A bridged stream whose upstream connection breaks ends with
    response.failed, never response.completed, and the client's connection
    is closed without a clean end."""
    upstream = ChatOnly(hold_after=1)
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"})
    answering = proxy.client.post("http://proxy.test/v1/responses",
                                  json=dict(RESPONSES, stream=True), unbuffered=True)
    proxy.flush()
    response = proxy.result_of(answering)
    chunks: list[bytes] = []
    response.deliverBody(_Collect(chunks))
    proxy.flush()
    [held] = upstream.held
    held.channel.transport.abortConnection()  # the upstream connection breaks
    proxy.flush()
    events = events_of(b"".join(chunks))
    types = [e["type"] for e in events]
    assert types[-1] == "response.failed" and "response.completed" not in types


def test_a_request_the_bridge_cannot_send_is_a_400_without_an_upstream_call():
    """previous_response_id needs state the bridge does not keep: a 400
    invalid_request_error naming the field, and no upstream call."""
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"})
    answer = proxy.request("POST", "/v1/responses",
                           json=dict(RESPONSES, previous_response_id="resp_1"))
    assert answer.code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "previous_response_id"
    assert upstream.seen == []


def test_an_upstream_error_keeps_its_status_and_body():
    """An error the chat upstream answers before the answer starts reaches
    the client as it came (status and OpenAI error body)."""
    class Limited(Resource):
        isLeaf = True

        def render_POST(self, request: Request) -> bytes:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json")
            return b'{"error": {"message": "bad model", "type": "invalid_request_error"}}'

    proxy = MemoryProxy(Limited(), {"RESPONSES_API": "chat"})
    answer = proxy.request("POST", "/v1/responses", json=RESPONSES)
    assert answer.code == 400
    assert answer.json()["error"]["message"] == "bad model"


class _Collect:
    """A body protocol that keeps what arrives."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def makeConnection(self, transport: Any) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any) -> None:
        pass


def test_an_alias_is_sent_under_its_upstream_name_and_answered_under_its_own(tmp_path):
    """A models.yaml alias (upstream_model) reaches the chat upstream under
    the upstream's name; the Responses object names the model the client
    asked for."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: team-model\n    upstream_model: gpt-4.1\n")
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"}, models_path=str(models))
    answer = proxy.request("POST", "/v1/responses", json=dict(RESPONSES, model="team-model"))
    assert answer.code == 200 and answer.json()["model"] == "team-model"
    [(_, sent)] = upstream.seen
    assert sent["model"] == "gpt-4.1"


def test_an_aliased_bridged_request_is_parsed_once(tmp_path, monkeypatch):
    """The client's body is parsed once, however many times the request is
    made ready (for its alias and cap, then for the bridge): a Codex turn
    is 50 to 100 KB of JSON.  The upstream gets the alias's name and the
    cap; the answer echoes what the client sent."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: team-model\n    upstream_model: gpt-4.1\n"
                      "    max_output_tokens: 20\n")
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"}, models_path=str(models))
    body = json.dumps(dict(RESPONSES, model="team-model", max_output_tokens=50)).encode()
    parsed = []
    loads = json.loads

    def counting(text: Any, *args: Any, **kwargs: Any) -> Any:
        if text == body:
            parsed.append(text)
        return loads(text, *args, **kwargs)
    monkeypatch.setattr(json, "loads", counting)
    answer = proxy.request("POST", "/v1/responses", data=body,
                           headers={"Content-Type": ["application/json"]})
    assert answer.code == 200 and answer.json()["model"] == "team-model"
    assert answer.json()["max_output_tokens"] == 50  # the client's, as it sent it
    [(_, sent)] = upstream.seen
    assert (sent["model"], sent["max_tokens"]) == ("gpt-4.1", 20)
    assert len(parsed) == 1


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16-be", "utf-16"])
def test_a_body_with_a_bom_or_in_utf16_is_bridged(encoding):
    """A body json.loads reads (UTF-8 with a BOM, UTF-16) is bridged like
    any other, not refused as "not a JSON object"."""
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"})
    answer = proxy.request("POST", "/v1/responses",
                           data=json.dumps(RESPONSES).encode(encoding),
                           headers={"Content-Type": ["application/json"]})
    assert answer.code == 200 and answer.json()["model"] == "gpt-4.1"
    [(_, sent)] = upstream.seen
    assert sent["messages"][-1] == {"role": "user", "content": "Say hello."}


def test_an_alias_of_a_gpt5_model_gets_the_gpt5_rules(tmp_path):
    """An alias whose upstream model is of the gpt-5 family: the chat
    request the bridge sends it follows gpt-5's rules (max_completion_tokens,
    temperature 1), though the client's model name did not say gpt-5."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: team-model\n    upstream_model: gpt-5-big\n")
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"}, models_path=str(models))
    answer = proxy.request("POST", "/v1/responses", json=dict(
        RESPONSES, model="team-model", max_output_tokens=30, temperature=0.5))
    assert answer.code == 200 and answer.json()["model"] == "team-model"
    [(_, sent)] = upstream.seen
    assert (sent["model"], sent["max_completion_tokens"], sent["temperature"]) == (
        "gpt-5-big", 30, 1)
    assert "max_tokens" not in sent


def test_a_bridged_streams_usage_is_counted_from_the_upstream(tmp_path):
    """The tokens of a bridged stream (the chat upstream's usage chunk) are
    counted in the metrics under the route responses."""
    proxy = MemoryProxy(ChatOnly(), {"RESPONSES_API": "chat"})
    proxy.request("POST", "/v1/responses", json=dict(RESPONSES, stream=True))
    metrics = proxy.request("GET", "/metrics").body.decode()
    assert 'genai_proxy_tokens_total{client="",kind="input",model="gpt-4.1"} 7.0' in metrics
    assert 'route="responses"' in metrics


def test_a_number_beyond_a_double_is_a_400_not_infinity_upstream():
    """1e999 reads as infinity, which JSON cannot carry: a 400, and the
    upstream never gets a body with Infinity in it."""
    upstream = ChatOnly()
    proxy = MemoryProxy(upstream, {"RESPONSES_API": "chat"})
    answer = proxy.request("POST", "/v1/responses", data=b'{"model": "gpt-4.1", "input": "hi", '
                           b'"temperature": 1e999}', headers={
                               "Content-Type": ["application/json"]})
    assert answer.code == 400 and "1e999" in answer.json()["error"]["message"]
    assert upstream.seen == []
