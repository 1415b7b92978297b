"""The Anthropic Messages API in the request path (issue 20): /v1/messages
answered through a chat upstream's /chat/completions, in memory
(L{genaiproxy.testing.MemoryProxy})."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from genaiproxy.testing import MemoryProxy

TOKEN = "messages-token-7f3a"
COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4.1",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hi from chat."}}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
}
CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi "}}]},
    {"choices": [{"index": 0, "delta": {"content": "there."}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}},
]
MESSAGES = {"model": "gpt-4.1", "max_tokens": 256, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello"}]}
ANTHROPIC_HEADERS = {"x-api-key": [TOKEN], "anthropic-version": ["2023-06-01"],
                     "anthropic-beta": ["interleaved-thinking-2025-05-14"]}


class Chat(Resource):
    """A chat completions upstream that records what it got; C{status}
    answers every request with that error instead."""

    isLeaf = True

    def __init__(self, status: int = 0) -> None:
        super().__init__()
        self.seen: list[tuple[Request, Any]] = []
        self.status = status

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        body = json.loads(request.content.read())
        self.seen.append((request, body))
        request.setHeader(b"content-type", b"application/json")
        if self.status:
            request.setResponseCode(self.status)
            if self.status == 429:
                request.setHeader(b"retry-after", b"7")
            return b'{"error": {"message": "slow down", "type": "rate_limit_exceeded"}}'
        if not body.get("stream"):
            return json.dumps(COMPLETION).encode()
        request.setHeader(b"content-type", b"text/event-stream")
        for chunk in CHUNKS:
            request.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        request.write(b"data: [DONE]\n\n")
        request.finish()
        return NOT_DONE_YET


def proxy_for(upstream: Chat, **environ: str) -> MemoryProxy:
    return MemoryProxy(upstream, {"AUTH_TOKEN": TOKEN, "MAX_RETRIES": "0", **environ})


def test_a_message_comes_back_from_chat_completions():
    """POST /v1/messages?beta=true with the token as x-api-key: the chat
    upstream gets a chat request without the client's token, Anthropic's
    headers or the query string; the client gets a Messages message with
    the text, end_turn and the usage, and a request-id header."""
    upstream = Chat()
    proxy = proxy_for(upstream)
    answer = proxy.request("POST", "/v1/messages?beta=true", json=MESSAGES,
                           headers=ANTHROPIC_HEADERS)
    assert answer.code == 200
    message = answer.json()
    assert message["type"] == "message" and message["model"] == "gpt-4.1"
    assert message["content"] == [{"type": "text", "text": "Hi from chat."}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] == 11 and message["usage"]["output_tokens"] == 4
    assert answer.header("request-id") == answer.header("x-request-id")
    [(seen, sent)] = upstream.seen
    assert seen.path == b"/v1/chat/completions" and seen.args == {}
    for name in ("x-api-key", "anthropic-version", "anthropic-beta", "authorization"):
        assert not seen.requestHeaders.hasHeader(name), name
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hello"}]


def test_a_streamed_message_is_the_messages_event_sequence():
    """A streamed request gets message_start, the text block's start,
    deltas and stop, message_delta with the stop reason and usage, and
    message_stop last."""
    proxy = proxy_for(Chat())
    answer = proxy.request("POST", "/v1/messages", json=dict(MESSAGES, stream=True),
                           headers={"Authorization": [f"Bearer {TOKEN}"]})
    assert answer.code == 200
    events = [json.loads(line[6:]) for line in answer.body.split(b"\n")
              if line.startswith(b"data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == (
        "Hi there.")
    [delta] = [e for e in events if e["type"] == "message_delta"]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == 2


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limit_error"), (400, "invalid_request_error"),
                                              (500, "api_error"), (503, "overloaded_error")])
def test_an_upstream_error_comes_in_anthropics_shape(status, kind):
    """The chat upstream's error keeps its status (a 429 its Retry-After)
    and its message, in Anthropic's shape."""
    proxy = proxy_for(Chat(status))
    answer = proxy.request("POST", "/v1/messages", json=MESSAGES, headers=ANTHROPIC_HEADERS)
    assert answer.code == status
    assert answer.json() == {"type": "error", "error": {"type": kind, "message": "slow down"}}
    if status == 429:
        assert answer.header("retry-after") == "7"


@pytest.mark.parametrize("body", [
    {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},  # no max_tokens
    {"model": "gpt-4.1", "max_tokens": 10, "messages": "hi"},
    {"model": "gpt-4.1", "max_tokens": 10,
     "messages": [{"role": "user", "content": [{"type": "hologram"}]}]},
])
def test_bad_input_is_a_400_without_an_upstream_call(body):
    """No max_tokens, messages not a list, an unknown block type: a 400
    invalid_request_error in Anthropic's shape, and no upstream call."""
    upstream = Chat()
    answer = proxy_for(upstream).request("POST", "/v1/messages", json=body,
                                         headers=ANTHROPIC_HEADERS)
    assert answer.code == 400
    document = answer.json()
    assert document["type"] == "error" and document["error"]["type"] == "invalid_request_error"
    assert upstream.seen == []


def test_without_the_token_the_answer_is_anthropics_401():
    """A wrong x-api-key: 401 authentication_error, in Anthropic's shape."""
    upstream = Chat()
    answer = proxy_for(upstream).request("POST", "/v1/messages", json=MESSAGES,
                                         headers={"x-api-key": ["wrong"]})
    assert answer.code == 401 and answer.json()["error"]["type"] == "authentication_error"
    assert upstream.seen == []


def test_count_tokens_is_answered_without_the_upstream():
    """count_tokens answers an estimate of the input, never asking the
    upstream; a longer conversation counts more."""
    upstream = Chat()
    proxy = proxy_for(upstream)
    short = proxy.request("POST", "/v1/messages/count_tokens?beta=true", json=MESSAGES,
                          headers=ANTHROPIC_HEADERS)
    longer = dict(MESSAGES, messages=MESSAGES["messages"] * 20)
    long = proxy.request("POST", "/v1/messages/count_tokens", json=longer,
                         headers=ANTHROPIC_HEADERS)
    assert short.code == long.code == 200
    assert 0 < short.json()["input_tokens"] < long.json()["input_tokens"]
    assert upstream.seen == []


def test_native_mode_passes_the_request_through():
    """MESSAGES_API=native: /v1/messages goes upstream as it came (with
    Anthropic's version header, without the client's token)."""
    upstream = Chat()
    proxy = proxy_for(upstream, MESSAGES_API="native")
    proxy.request("POST", "/v1/messages", json=MESSAGES, headers=ANTHROPIC_HEADERS)
    [(seen, sent)] = upstream.seen
    assert seen.path == b"/v1/messages" and sent == MESSAGES
    assert seen.getHeader("anthropic-version") == "2023-06-01"
    assert not seen.requestHeaders.hasHeader("x-api-key")


def test_a_number_beyond_a_double_is_a_400_in_anthropics_shape():
    """1e999 in a Messages request: Anthropic's invalid_request_error, and
    nothing sent upstream as Infinity."""
    upstream = Chat()
    proxy = MemoryProxy(upstream, {"AUTH_TOKEN": TOKEN})
    answer = proxy.request("POST", "/v1/messages", data=json.dumps(MESSAGES).replace(
        '"max_tokens": 256', '"max_tokens": 256, "temperature": 1e999').encode(), headers={
        **ANTHROPIC_HEADERS, "Content-Type": ["application/json"]})
    assert answer.code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert upstream.seen == []


def test_an_aliased_message_is_parsed_once(tmp_path, monkeypatch):
    """The client's Messages body is parsed once, though it is made ready
    for its alias and cap, then translated: a Claude Code turn is about
    90 KB of JSON.  The upstream gets the alias's name and the cap; the
    answer names the model the client asked for."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: team-model\n    upstream_model: gpt-4.1\n"
                      "    max_output_tokens: 100\n")
    upstream = Chat()
    proxy = MemoryProxy(upstream, {"AUTH_TOKEN": TOKEN, "MAX_RETRIES": "0"},
                        models_path=str(models))
    body = json.dumps(dict(MESSAGES, model="team-model")).encode()
    parsed = []
    loads = json.loads

    def counting(text: Any, *args: Any, **kwargs: Any) -> Any:
        if text == body:
            parsed.append(text)
        return loads(text, *args, **kwargs)
    monkeypatch.setattr(json, "loads", counting)
    answer = proxy.request("POST", "/v1/messages", data=body, headers={
        "Content-Type": ["application/json"], "x-api-key": [TOKEN]})
    assert answer.code == 200 and answer.json()["model"] == "team-model"
    [(_, sent)] = upstream.seen
    assert (sent["model"], sent["max_tokens"]) == ("gpt-4.1", 100)
    assert len(parsed) == 1
