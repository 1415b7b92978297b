"""The clients' limits and streams, in memory: a stream counts its tokens
from the usage the upstream reports at its end (bridged streams too), and
holds a concurrency slot while it is open."""

from __future__ import annotations

from typing import Any

from support.limits_proxy import Upstream, bearer, limited_proxy
from treq import content
from twisted.internet.protocol import Protocol

CHAT = {"model": "gpt-5", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _start(proxy: Any, path: str = "/v1/chat/completions", body: Any = CHAT,
           token: str = "tok-alice") -> Any:
    """A streamed request, its answer's head read (the stream left open)."""
    answering = proxy.client.post(f"http://proxy.test{path}", json=body, unbuffered=True,
                                  headers=bearer(token))
    proxy.flush()
    return proxy.result_of(answering)


def test_a_stream_counts_its_tokens_from_its_usage(tmp_path):
    """tokens_per_minute 150: a stream's usage chunk (100 tokens) counts,
    as the proxy asked for it on the client's behalf; two streams take the
    minute past the limit, and the next request is refused."""
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    tokens_per_minute: 150")
    for _ in range(2):
        response = _start(proxy)
        assert response.code == 200
        proxy.result_of(content(response))
    refused = proxy.request("POST", "/v1/chat/completions", json=CHAT,
                            headers=bearer("tok-alice"))
    assert refused.code == 429 and "tokens_per_minute" in refused.json()["error"]["message"]
    assert refused.header("x-ratelimit-remaining-tokens") == "0"


def test_a_bridged_stream_counts_its_tokens_too(tmp_path):
    """A Responses stream answered through chat completions counts the chat
    stream's usage."""
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    tokens_per_day: 100",
                                RESPONSES_API="chat")
    response = _start(proxy, "/v1/responses", {"model": "gpt-5", "input": "hi", "stream": True})
    body = proxy.result_of(content(response))
    assert b"response.completed" in body
    refused = proxy.request("POST", "/v1/responses", json={"model": "gpt-5", "input": "hi"},
                            headers=bearer("tok-alice"))
    assert refused.code == 429 and refused.json()["error"]["code"] == "insufficient_quota"


def test_an_open_stream_holds_a_concurrency_slot_until_it_ends(tmp_path):
    """concurrent_requests 1: while a stream is open the next request is
    refused (rate_limit_exceeded, Retry-After 1); once it ends, the slot
    is free; another client has its own slot."""
    upstream = Upstream()
    upstream.hold = True
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    concurrent_requests: 1", upstream)
    response = _start(proxy)
    refused = proxy.request("POST", "/v1/embeddings", json={
        "model": "text-embedding-3-small", "input": "x"}, headers=bearer("tok-alice"))
    assert refused.code == 429 and refused.header("retry-after") == "1"
    assert "concurrent_requests" in refused.json()["error"]["message"]
    assert _start(proxy, token="tok-ci").code == 200  # ci-runner's own slot
    upstream.hold = False
    Upstream.end(upstream.held[0])
    proxy.result_of(content(response))
    assert proxy.request("POST", "/v1/embeddings", json={
        "model": "text-embedding-3-small", "input": "x"}, headers=bearer("tok-alice")).code == 200


def test_a_client_that_leaves_frees_its_slot(tmp_path):
    """A stream whose client goes away gives its slot back."""
    upstream = Upstream()
    upstream.hold = True
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    concurrent_requests: 1", upstream)
    response = _start(proxy)
    assert response.code == 200
    reader = Protocol()
    response.deliverBody(reader)
    proxy.flush()
    assert reader.transport is not None
    reader.transport.stopProducing()  # the client closes its connection
    proxy.flush()
    upstream.hold = False
    assert proxy.request("POST", "/v1/embeddings", json={
        "model": "text-embedding-3-small", "input": "x"}, headers=bearer("tok-alice")).code == 200
