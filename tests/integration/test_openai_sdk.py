"""The openai Python SDK as a real client of the daemon."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
def sdk(proxy):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused-by-the-proxy", max_retries=0)


def test_chat_completion(sdk):
    completion = sdk.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert completion.choices[0].message.content == "Hello from the mock upstream."
    assert completion.model == "gpt-4.1"


def test_streaming_chat_completion(sdk):
    stream = sdk.chat.completions.create(
        model="gpt-5",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        max_tokens=20,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == "Hello from the mock upstream."


def test_models_list(sdk):
    assert [m.id for m in sdk.models.list()] == ["gpt-4.1", "gpt-5"]


def test_upstream_429_raises_rate_limit_error(sdk):
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(
            model="gpt-4.1", messages=[],
            extra_headers={"X-Mock-Status": "429", "X-Mock-Header": "Retry-After: 30"})


def test_broken_stream_raises(sdk):
    stream = sdk.chat.completions.create(
        model="gpt-4.1", messages=[], stream=True, extra_headers={"X-Mock-Drop-After": "2"}
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_responses(sdk):
    response = sdk.responses.create(model="gpt-4.1", input="Say hello")
    assert response.output_text == "Hello from the mock upstream."


def test_streaming_responses(sdk, proxy):
    events = list(sdk.responses.create(model="gpt-5", input="Say hello", stream=True,
                                       extra_headers={"X-Request-ID": "sdk-responses-stream"}))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from the mock upstream."
    assert proxy.wait_for_event("streaming_end", id="sdk-responses-stream")


def test_responses_stream_helper(sdk):
    with sdk.responses.stream(model="gpt-4.1", input="Say hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello from the mock upstream."


def test_broken_responses_stream_raises(sdk):
    stream = sdk.responses.create(model="gpt-4.1", input="x", stream=True,
                                  extra_headers={"X-Mock-Drop-After": "1"})
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_embeddings(sdk):
    from genaiproxy.mock.payloads import embedding_vector

    result = sdk.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert [d.embedding for d in result.data] == [embedding_vector("alpha"), embedding_vector("beta")]


def test_legacy_completions(sdk):
    completion = sdk.completions.create(model="gpt-4.1", prompt="Say hello")
    assert completion.choices[0].text == "Hello from the mock upstream."


def test_request_id_and_retry_headers_reach_the_sdk(sdk):
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.with_raw_response.create(
            model="gpt-4.1", messages=[],
            extra_headers={"X-Mock-Status": "429", "X-Request-ID": "sdk-429",
                           "X-Mock-Header": "retry-after-ms: 15000"})
    headers = caught.value.response.headers
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "15000"
    assert caught.value.request_id == "sdk-429"
