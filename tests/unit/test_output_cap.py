"""A model's cap on output tokens (models.yaml's max_output_tokens) on every
route: a request asking for more is sent with the cap, whatever its API and
whether it is passed through or bridged (in memory)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.web.resource import Resource
from twisted.web.server import Request

from genaiproxy.testing import MemoryProxy

CHAT_ANSWER = {"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "ok"}}]}


class Recorder(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        self.bodies.append(json.loads(request.content.read()))
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(CHAT_ANSWER).encode()


MODELS = ("models:\n  - id: small\n    max_output_tokens: 1000\n"
          "  - id: gpt-5-mini\n    max_output_tokens: 2000\n  - id: free\n")


@pytest.mark.parametrize(("path", "body", "environ", "field", "sent"), [
    ("/v1/chat/completions", {"model": "small", "max_tokens": 32000, "messages": []}, {},
     "max_tokens", 1000),
    ("/v1/chat/completions", {"model": "gpt-5-mini", "max_tokens": 32000, "messages": []}, {},
     "max_completion_tokens", 2000),
    ("/v1/chat/completions", {"model": "small", "max_tokens": 500, "messages": []}, {},
     "max_tokens", 500),
    ("/v1/chat/completions", {"model": "free", "max_tokens": 32000, "messages": []}, {},
     "max_tokens", 32000),
    ("/v1/responses", {"model": "small", "max_output_tokens": 32000, "input": "hi"},
     {"RESPONSES_API": "native"}, "max_output_tokens", 1000),
    ("/v1/responses", {"model": "small", "max_output_tokens": 32000, "input": "hi"},
     {"RESPONSES_API": "chat"}, "max_tokens", 1000),
    ("/v1/messages", {"model": "small", "max_tokens": 32000,
                      "messages": [{"role": "user", "content": "hi"}]}, {},
     "max_tokens", 1000),
    ("/v1/messages", {"model": "small", "max_tokens": 32000,
                      "messages": [{"role": "user", "content": "hi"}]},
     {"MESSAGES_API": "native"}, "max_tokens", 1000),
])
def test_a_request_asking_for_more_than_the_cap_is_sent_with_the_cap(
        tmp_path, path, body, environ, field, sent):
    """Claude Code asks for 32,000 tokens: a model capped lower gets its
    cap, on chat, Responses and Messages, passed through or bridged; a
    request within the cap, or for a model without one, is left alone."""
    models = tmp_path / "models.yaml"
    models.write_text(MODELS)
    upstream = Recorder()
    proxy = MemoryProxy(upstream, environ, models_path=str(models))
    proxy.request("POST", path, json=body)
    [received] = upstream.bodies
    assert received[field] == sent


class RefusesStreamOptions(Recorder):
    """An older API version: a 400 naming stream_options when asked for it."""

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        body = json.loads(request.content.read())
        self.bodies.append(body)
        request.setHeader(b"content-type", b"application/json")
        if "stream_options" in body:
            request.setResponseCode(400)
            return b'{"error": {"message": "Unrecognized request argument: stream_options"}}'
        request.setHeader(b"content-type", b"text/event-stream")
        return b"data: [DONE]\n\n"


def test_the_cap_stays_when_the_request_is_sent_again_without_stream_options(tmp_path):
    """An upstream that refuses stream_options gets the request again
    without it, still capped."""
    models = tmp_path / "models.yaml"
    models.write_text(MODELS)
    upstream = RefusesStreamOptions()
    proxy = MemoryProxy(upstream, models_path=str(models))
    answer = proxy.request("POST", "/v1/chat/completions", json={
        "model": "small", "max_tokens": 32000, "stream": True, "messages": []})
    assert answer.code == 200
    assert [body.get("max_tokens") for body in upstream.bodies] == [1000, 1000]
    assert "stream_options" not in upstream.bodies[1]
