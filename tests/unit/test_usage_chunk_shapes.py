"""The usage chunk as each gateway shapes it, taken out of the stream of a
client that did not ask for usage (STREAM_USAGE), and parsed once (units:
L{genaiproxy.api.stream_usage}, and the proxy in memory).

Each gateway's stream below is written down from its documentation or
source; C{{null}} marks where it writes C{"usage": null} once usage is
asked for, and the last event before C{[DONE]} is its usage chunk.

  - OpenAI (platform.openai.com/docs/api-reference/chat/create,
    C{stream_options.include_usage}): "an additional chunk ... before the
    data: [DONE] message ... the choices field will always be an empty
    array. All other chunks will also include a usage field, but with a
    null value."  Chunks carry C{obfuscation} padding since August 2025.
  - Azure OpenAI (learn.microsoft.com, Azure OpenAI REST reference, same
    C{stream_options} wording; content filtering: the first chunk of a
    stream holds the C{prompt_filter_results} and an empty C{choices}):
    keys sorted, C{content_filter_results} on every choice.
  - The LiteLLM proxy (litellm/litellm_core_utils/streaming_handler.py:
    after the last chunk, C{model_response_creator()} with the usage set,
    whose default choice is C{{"index": 0, "delta": {}}}; measured on
    1.77.7 in front of a chat-only upstream, see docs/background): no
    C{"usage": null} in the other chunks.  Some releases write the empty
    choice with null members instead (C{"delta": {"content": null, ...}}).
  - vLLM (vllm/entrypoints/openai/serving_chat.py,
    C{chat_completion_stream_generator}: C{final_usage_chunk} with
    C{choices=[]}, dumped with C{exclude_unset} and C{exclude_none}); the
    other chunks are dumped with C{exclude_unset}, so they have no usage
    member at all.
  - Ollama (middleware/openai.go, C{ChatWriter.writeResponse}: after the
    finish chunk, the same chunk again with C{Choices = []} and the usage;
    openai/openai.go: C{Usage} is C{omitempty}, C{finish_reason} is not).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.web.resource import Resource
from twisted.web.server import Request

from genaiproxy.api import stream_usage
from genaiproxy.api.stream_usage import UsageChunkRemover, UsageReader, is_usage_chunk
from genaiproxy.testing import MemoryProxy

# (gateway, the data payloads of its stream, the usage it reports, counted)
GATEWAYS: list[tuple[str, list[str], dict[str, int]]] = [
    ("openai", [
        '{"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
        '"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":'
        '"fp_0ba0d124f1","choices":[{"index":0,"delta":{"role":"assistant","content":"",'
        '"refusal":null},"logprobs":null,"finish_reason":null}]{null},"obfuscation":"5y"}',
        '{"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
        '"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":'
        '"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,'
        '"finish_reason":null}]{null},"obfuscation":"Qk2"}',
        '{"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
        '"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":'
        '"fp_0ba0d124f1","choices":[{"index":0,"delta":{},"logprobs":null,'
        '"finish_reason":"stop"}]{null},"obfuscation":"zT"}',
        '{"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1727000000,'
        '"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":'
        '"fp_0ba0d124f1","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,'
        '"total_tokens":18,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},'
        '"completion_tokens_details":{"reasoning_tokens":2,"audio_tokens":0,'
        '"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"4"}',
    ], {"input": 11, "output": 7, "cached": 3, "reasoning": 2}),
    ("azure", [
        '{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
        '[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,'
        '"severity":"safe"}}}]{null}}',
        '{"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,'
        '"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],'
        '"created":1727000000,"id":"chatcmpl-AZ","model":"gpt-4o-2024-11-20",'
        '"object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"{null}}',
        '{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},'
        '"delta":{"content":"Hello"},"finish_reason":null,"index":0,"logprobs":null}],'
        '"created":1727000000,"id":"chatcmpl-AZ","model":"gpt-4o-2024-11-20",'
        '"object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"{null}}',
        '{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop",'
        '"index":0,"logprobs":null}],"created":1727000000,"id":"chatcmpl-AZ",'
        '"model":"gpt-4o-2024-11-20","object":"chat.completion.chunk",'
        '"system_fingerprint":"fp_b705f0c291"{null}}',
        '{"choices":[],"created":1727000000,"id":"chatcmpl-AZ","model":"gpt-4o-2024-11-20",'
        '"object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291","usage":'
        '{"completion_tokens":7,"completion_tokens_details":{"reasoning_tokens":0},'
        '"prompt_tokens":11,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":18}}',
    ], {"input": 11, "output": 7, "cached": 0, "reasoning": 0}),
    ("litellm", [
        '{"id": "chatcmpl-7f", "created": 1727000000, "model": "gpt-4.1", "object": '
        '"chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hello", '
        '"role": "assistant"}}]}',
        '{"id": "chatcmpl-7f", "created": 1727000000, "model": "gpt-4.1", "object": '
        '"chat.completion.chunk", "choices": [{"finish_reason": "stop", "index": 0, '
        '"delta": {}}]}',
        '{"id": "chatcmpl-7f", "created": 1727000000, "model": "gpt-4.1", "object": '
        '"chat.completion.chunk", "choices": [{"index": 0, "delta": {}}], "usage": '
        '{"completion_tokens": 7, "prompt_tokens": 11, "total_tokens": 18}}',
    ], {"input": 11, "output": 7}),
    ("litellm, null members", [
        '{"id":"chatcmpl-7g","created":1727000000,"model":"gpt-4.1","object":'
        '"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello",'
        '"role":"assistant"}}]}',
        '{"id":"chatcmpl-7g","created":1727000000,"model":"gpt-4.1","object":'
        '"chat.completion.chunk","choices":[{"finish_reason":"stop","index":0,"delta":{}}]}',
        '{"id":"chatcmpl-7g","created":1727000000,"model":"gpt-4.1","object":'
        '"chat.completion.chunk","choices":[{"finish_reason":null,"index":0,"delta":'
        '{"content":null,"role":null,"function_call":null,"tool_calls":null,"audio":null}}],'
        '"usage":{"completion_tokens":7,"prompt_tokens":11,"total_tokens":18}}',
    ], {"input": 11, "output": 7}),
    ("vllm", [
        '{"id":"chatcmpl-9c","object":"chat.completion.chunk","created":1727000000,'
        '"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"role":'
        '"assistant","content":""},"logprobs":null,"finish_reason":null}]}',
        '{"id":"chatcmpl-9c","object":"chat.completion.chunk","created":1727000000,'
        '"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"content":'
        '"Hello"},"logprobs":null,"finish_reason":null}]}',
        '{"id":"chatcmpl-9c","object":"chat.completion.chunk","created":1727000000,'
        '"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"delta":{"content":""},'
        '"logprobs":null,"finish_reason":"stop","stop_reason":null}]}',
        '{"id":"chatcmpl-9c","object":"chat.completion.chunk","created":1727000000,'
        '"model":"Qwen/Qwen2.5-7B-Instruct","choices":[],"usage":{"prompt_tokens":11,'
        '"total_tokens":18,"completion_tokens":7}}',
    ], {"input": 11, "output": 7}),
    ("ollama", [
        '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1727000000,'
        '"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,'
        '"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}',
        '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1727000000,'
        '"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,'
        '"delta":{},"finish_reason":"stop"}]}',
        '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1727000000,'
        '"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[],"usage":'
        '{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}',
    ], {"input": 11, "output": 7}),
]
NAMES = [name for name, _, _ in GATEWAYS]


def stream_of(payloads: list[str], asked: bool) -> bytes:
    """A gateway's stream as it answers a request that asked for usage, or
    one that did not (no usage chunk, no "usage": null)."""
    null = ',"usage":null' if asked else ""
    events = [payload.replace("{null}", null) for payload in payloads]
    if not asked:
        events = events[:-1]
    return b"".join(b"data: " + event.encode() + b"\n\n" for event in events) + b"data: [DONE]\n\n"


def removed(stream: bytes, pieces: list[int], reader: UsageReader | None = None) -> bytes:
    """What the client gets of C{stream} cut at C{pieces}, through the
    remover, the reader reading it as the proxy's pump feeds it."""
    remover = UsageChunkRemover(reader)
    points = sorted({cut % (len(stream) + 1) for cut in pieces})
    shown = []
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        shown.append(remover.feed(stream[start:end]))
    shown.append(remover.flush())
    if reader is not None:
        for piece in shown:
            reader.feed(piece)
    return b"".join(shown)


def last_choice(stream: bytes) -> dict[str, Any]:
    """The last choice of the last chunk that has choices, as the openai SDK
    reads C{chunk.choices[0]} of the last chunk."""
    documents = [json.loads(line[6:]) for line in stream.split(b"\n")
                 if line.startswith(b"data: {")]
    return [document for document in documents if document.get("choices")][-1]["choices"][-1]


@pytest.mark.parametrize(("name", "payloads", "counted"), GATEWAYS, ids=NAMES)
def test_each_gateways_usage_chunk_is_known_by_what_it_carries(name, payloads, counted):
    """The last chunk of each gateway's stream is its usage chunk; none of
    the others is, Azure's prompt-filter chunk (empty choices, no usage)
    included."""
    documents = [json.loads(payload.replace("{null}", ',"usage":null')) for payload in payloads]
    assert [is_usage_chunk(document) for document in documents] == (
        [False] * (len(documents) - 1) + [True])


@pytest.mark.parametrize(("name", "payloads", "counted"), GATEWAYS, ids=NAMES)
@given(pieces=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=8))
def test_the_client_gets_the_stream_it_would_have_had(name, payloads, counted, pieces):
    """Through the remover, each gateway's stream answered with usage is
    byte for byte its stream without usage, however cut: one chunk fewer,
    and the last chunk with choices ends with its finish_reason; the usage
    is still read."""
    reader = UsageReader(responses_api=False)
    shown = removed(stream_of(payloads, asked=True), pieces, reader)
    assert shown == stream_of(payloads, asked=False)
    assert last_choice(shown)["finish_reason"] == "stop"
    assert reader.usage == counted


def test_a_chunk_with_content_and_usage_is_kept():
    """A chunk that carries usage and also a piece of the answer (vLLM's
    continuous_usage_stats puts usage in every chunk) is not the usage
    chunk: the client gets it."""
    chunk = ('{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,'
             '"delta":{"content":"Hi"},"finish_reason":null}],'
             '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')
    role = chunk.replace('"content":"Hi"', '"role":"assistant"')
    call = chunk.replace('"content":"Hi"', '"tool_calls":[{"index":0,"id":"call_1"}]')
    finish = chunk.replace('"content":"Hi"},"finish_reason":null', '},"finish_reason":"stop"')
    for kept in (chunk, role, call, finish):
        assert not is_usage_chunk(json.loads(kept))
        event = b"data: " + kept.encode() + b"\n\n"
        assert removed(event, []) == event


class GatewayUpstream(Resource):
    """An upstream that answers every chat request with a gateway's stream,
    with usage when the request asked for it."""

    isLeaf = True

    def __init__(self, payloads: list[str]) -> None:
        super().__init__()
        self.payloads = payloads

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        options = json.loads(request.content.read()).get("stream_options") or {}
        request.setHeader(b"content-type", b"text/event-stream")
        return stream_of(self.payloads, asked=options.get("include_usage") is True)


def tokens_counted(proxy: MemoryProxy) -> dict[str, float]:
    """The tokens the proxy counted for gpt-4.1, by kind."""
    registry = proxy.forwarder.metrics.registry
    return {kind: registry.get_sample_value("genai_proxy_tokens_total",
                                            {"model": "gpt-4.1", "client": "", "kind": kind})
            or 0.0 for kind in ("input", "output")}


@pytest.mark.parametrize(("name", "payloads", "counted"), GATEWAYS, ids=NAMES)
def test_the_proxy_passes_the_clients_stream_and_counts_its_usage(name, payloads, counted):
    """In front of each gateway, a client that did not ask for usage gets
    the stream the gateway sends without it (the LiteLLM proxy's usage
    chunk, choices not empty, included), and the usage is counted."""
    proxy = MemoryProxy(GatewayUpstream(payloads))
    body = {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    answer = proxy.request("POST", "/v1/chat/completions", json=body)
    assert answer.code == 200
    assert answer.body == stream_of(payloads, asked=False)
    assert tokens_counted(proxy) == {"input": 11, "output": 7}


def test_the_usage_chunk_is_parsed_once(monkeypatch):
    """Through the proxy, the usage chunk the proxy takes out of a stream is
    parsed once: the remover hands its usage to the reader, which does not
    parse it again."""
    parsed: list[bytes] = []
    parse = stream_usage._json_of_line

    def counting(line: bytes) -> Any:
        if b'"usage":{' in line:
            parsed.append(line)
        return parse(line)

    monkeypatch.setattr(stream_usage, "_json_of_line", counting)
    payloads = GATEWAYS[0][1]
    proxy = MemoryProxy(GatewayUpstream(payloads))
    body = {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    assert proxy.request("POST", "/v1/chat/completions", json=body).code == 200
    assert len(parsed) == 1
    assert tokens_counted(proxy) == {"input": 11, "output": 7}
