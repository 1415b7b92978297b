"""genaiproxy.testing, as a test of the proxy uses it: the real proxy in
memory, its upstream a small twisted.web resource of the test's own, its
clients treq clients whose requests never touch a socket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq import collect
from twisted.internet.protocol import Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from genaiproxy.config import ConfigError, ModelsFileError
from genaiproxy.testing import DEFAULT_ENVIRONMENT, PROXY_URL, MemoryProxy

TOKEN = "client-token-5f2c9a71"
AUTH = {"Authorization": [f"Bearer {TOKEN}"]}
CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."}}]}
EVENTS = [b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
          b'data: {"choices":[{"index":0,"delta":{"content":"lo."}}]}\n\n',
          b"data: [DONE]\n\n"]


class Upstream(Resource):
    """An upstream that records each request and answers a chat completion,
    or (with C{hold}) keeps the request for the test to answer."""

    isLeaf = True

    def __init__(self, hold: bool = False) -> None:
        super().__init__()
        self.hold = hold
        self.received: list[Request] = []
        self.bodies: list[Any] = []

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        self.received.append(request)
        self.bodies.append(json.loads(request.content.read()))
        if self.hold:
            return NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(COMPLETION).encode()


def test_a_chat_request_is_answered_by_the_upstream_with_the_key_injected():
    """A chat request with the client's token reaches the upstream resource
    under the base URL's path, with the subscription key and the request id
    and without the client's token; the client gets the upstream's answer."""
    upstream = Upstream()
    proxy = MemoryProxy(upstream, {"AUTH_TOKEN": TOKEN,
                                   "GENAI_BASE_URL": "http://gateway.test/genai"})
    answer = proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=AUTH)
    assert answer.code == 200
    assert answer.json() == COMPLETION
    assert answer.header("content-type") == "application/json"
    [seen] = upstream.received
    assert seen.path == b"/genai/v1/chat/completions"
    subscription = DEFAULT_ENVIRONMENT["GENAI_SUBSCRIPTION_NAME"]
    assert seen.requestHeaders.getRawHeaders(subscription) == [DEFAULT_ENVIRONMENT["GENAI_API_KEY"]]
    assert not seen.requestHeaders.hasHeader("authorization")
    assert seen.getHeader("x-request-id") == answer.header("x-request-id")
    assert upstream.bodies[0]["messages"] == CHAT["messages"]
    assert proxy.forwarder.in_flight == 0


def test_a_request_without_the_token_never_reaches_the_upstream():
    """The proxy's own answers come as the daemon's do: a JSON 401, and the
    upstream resource sees nothing."""
    upstream = Upstream()
    proxy = MemoryProxy(upstream, {"AUTH_TOKEN": TOKEN})
    answer = proxy.request("POST", "/v1/chat/completions", json=CHAT)
    assert answer.code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert upstream.received == []


def test_a_stream_passes_through_as_the_upstream_writes_it():
    """Each event the upstream writes reaches the client before the next is
    written, and the client gets the upstream's bytes unchanged."""
    upstream = Upstream(hold=True)
    proxy = MemoryProxy(upstream)
    answering = proxy.client.post(PROXY_URL + "/v1/chat/completions",
                                  json=dict(CHAT, stream=True), unbuffered=True)
    proxy.flush()
    [held] = upstream.received
    held.setHeader(b"content-type", b"text/event-stream")
    held.write(EVENTS[0])
    response = proxy.result_of(answering)
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["text/event-stream"]
    chunks: list[bytes] = []
    done = collect(response, chunks.append)
    proxy.flush()
    assert b"".join(chunks) == EVENTS[0]
    held.write(EVENTS[1])
    proxy.flush()
    assert b"".join(chunks) == EVENTS[0] + EVENTS[1]
    held.write(EVENTS[2])
    held.finish()
    proxy.result_of(done)
    assert b"".join(chunks) == b"".join(EVENTS)
    assert proxy.forwarder.in_flight == 0


def test_time_passes_only_when_the_test_says():
    """The proxy's timers run on the test's clock: an upstream that never
    answers is given up after REQUEST_TIMEOUT (no retries here), and
    not a moment before."""
    upstream = Upstream(hold=True)
    proxy = MemoryProxy(upstream, {"REQUEST_TIMEOUT": "30", "MAX_RETRIES": "0"})
    answering = proxy.client.post(PROXY_URL + "/v1/chat/completions", json=CHAT)
    proxy.advance(29.9)
    with pytest.raises(AssertionError, match="has not fired"):
        proxy.result_of(answering)
    proxy.advance(0.1)
    response = proxy.result_of(answering)
    assert response.code == 502
    error = json.loads(proxy.result_of(response.content()))["error"]
    assert error["type"] == "proxy_error" and "read_timeout" in error["message"]
    assert len(upstream.received) == 1


def test_models_yaml_is_served_and_bad_settings_refused(tmp_path):
    """The model list comes from the models.yaml given (none: an empty
    list); a setting the daemon would refuse is refused here too."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: gpt-4.1\n  - id: secret-model\n    hidden: true\n")
    served = MemoryProxy(Upstream(), models_path=str(models)).request("GET", "/v1/models")
    assert [model["id"] for model in served.json()["data"]] == ["gpt-4.1"]
    empty = MemoryProxy(Upstream()).request("GET", "/v1/models")
    assert empty.json()["data"] == []
    with pytest.raises(ConfigError, match="MAX_RETRIES"):
        MemoryProxy(Upstream(), {"MAX_RETRIES": "many"})


def test_models_yaml_may_route_to_the_one_upstream_only(tmp_path):
    """A models.yaml naming upstreams besides the in-memory one is refused
    (as the daemon refuses a bad file), with a message that says why."""
    models = tmp_path / "models.yaml"
    models.write_text("upstreams:\n  other:\n    base_url: http://other.test\n"
                      "models:\n  - id: gpt-4.1\n    upstream: other\n")
    proxy = MemoryProxy(Upstream(), models_path=str(models))
    with pytest.raises(ModelsFileError, match="one upstream: models.yaml names others \\(other\\)"):
        proxy.catalog.models()


class RawClient(Protocol):
    """Sends bytes as they are written and keeps what comes back."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def test_a_raw_client_reaches_the_proxy_channel():
    """connect() gives any client protocol a connection to a new channel of
    the proxy: the bytes it writes are read as HTTP by the proxy's own
    channel, which refuses what the daemon refuses."""
    proxy = MemoryProxy(Upstream())
    good = RawClient(b"GET /v1/models HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
    bad = RawClient(b"GET /v1/models HTTP/9.9\r\nHost: proxy.test\r\n\r\n")
    proxy.connect(good)
    proxy.connect(bad)
    proxy.flush()
    assert good.received.startswith(b"HTTP/1.1 200 ")
    assert bad.received.startswith(b"HTTP/1.1 400 ")


def test_a_model_name_no_utf8_can_hold_leaves_metrics_and_status_working():
    """A JSON body may name its model with a lone surrogate (C{"\\ud800"}),
    which no UTF-8 text can hold: the request is forwarded, and /metrics and
    /status, written in UTF-8, still answer, with the name's place kept."""
    proxy = MemoryProxy(Upstream(), {"AUTH_TOKEN": TOKEN})
    body = b'{"model": "gpt-\\ud800", "messages": []}'
    answer = proxy.request("POST", "/v1/chat/completions", data=body,
                           headers={**AUTH, "Content-Type": ["application/json"]})
    assert answer.code == 200
    metrics = proxy.request("GET", "/metrics", headers=AUTH)
    status = proxy.request("GET", "/status", headers=AUTH)
    assert metrics.code == 200 and b'model="gpt-?"' in metrics.body
    assert status.code == 200 and b"gpt-?" in status.body
