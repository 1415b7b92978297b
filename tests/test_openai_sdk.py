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
            model="gpt-4.1", messages=[], extra_headers={"X-Mock-Status": "429"}
        )


def test_broken_stream_raises(sdk):
    stream = sdk.chat.completions.create(
        model="gpt-4.1", messages=[], stream=True, extra_headers={"X-Mock-Drop-After": "2"}
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
