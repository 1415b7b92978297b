"""The mock OpenAI upstream's APIs as clients see them: the Responses API,
embeddings, legacy completions and the echo of other /v1 paths."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from support.mock_fixtures import (
    RESPONSE,
    reset_client,
    running_mock,
    sdk_for,
    typed_events,
)

from genaiproxy.mock.payloads import EMBEDDING_DIMENSIONS, embedding_vector
from genaiproxy.mock.server import DEFAULT_REPLY

REPO_ROOT = Path(__file__).resolve().parents[2]
BANNER = "mock upstream listening on "


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """One mock upstream shared by the module's tests."""
    yield from running_mock()


@pytest.fixture
def client(mock_url: str) -> Iterator[httpx.Client]:
    """An httpx client on the shared mock, with its log and counters reset."""
    yield from reset_client(mock_url)


@pytest.fixture
def sdk(mock_url: str, client: httpx.Client) -> Iterator[openai.OpenAI]:
    """The openai SDK pointed straight at the shared mock (log reset)."""
    yield from sdk_for(mock_url)


def test_responses_with_the_sdk(sdk: openai.OpenAI, client: httpx.Client) -> None:
    response = sdk.responses.create(
        model="gpt-5",
        instructions="Be brief.",
        input=[{"role": "user", "content": "Say hello"}],
        metadata={"k": "v"},
    )
    assert response.output_text == DEFAULT_REPLY
    assert response.id.startswith("resp_mock_")
    assert response.object == "response" and response.status == "completed"
    assert response.model == "gpt-5"
    assert response.instructions == "Be brief."
    assert response.metadata == {"k": "v"}
    assert response.error is None and response.incomplete_details is None
    [message] = response.output
    assert message.type == "message" and message.id.startswith("msg_mock_")
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (4, 5)
    assert usage.total_tokens == 9
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0

    bare = client.post(
        "/v1/responses",
        json={**RESPONSE, "stream": False},
        headers={"X-Mock-Content-Type": "text/plain"},
    )
    assert bare.headers["content-type"] == "text/plain" and bare.text == DEFAULT_REPLY


def test_responses_stream_with_the_sdk(sdk: openai.OpenAI) -> None:
    events = list(
        sdk.responses.create(
            model="gpt-5",
            input="Say hello",
            stream=True,
            extra_headers={"X-Mock-Event-Delay": "0.01"},
        )
    )
    types = [event.type for event in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == DEFAULT_REPLY
    assert events[-1].response.output_text == DEFAULT_REPLY
    assert events[-1].response.usage.output_tokens == 5

    with sdk.responses.stream(
        model="gpt-4.1",
        input="Say hello",
        extra_headers={"X-Mock-Events": "3", "X-Mock-Event-Delay": "0"},
    ) as stream:
        pieces = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(pieces) == 3 and "".join(pieces) == DEFAULT_REPLY
    assert final.output_text == DEFAULT_REPLY and final.model == "gpt-4.1"


def test_responses_stream_framing(client: httpx.Client) -> None:
    delay = 0.1
    headers = {"X-Mock-Events": "3", "X-Mock-Event-Delay": str(delay)}
    arrivals: list[float] = []
    body = ""
    with client.stream("POST", "/genai/v1/responses", json=RESPONSE, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in response.headers
        for text in response.iter_text():
            body += text
            if "response.output_text.delta" in text:
                arrivals.append(time.monotonic())
    assert "[DONE]" not in body
    events = typed_events(body)
    assert [data["type"] for _, data in events] == [name for name, _ in events]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[-1][0] == "response.completed"
    deltas = [data for name, data in events if name == "response.output_text.delta"]
    assert len(deltas) == 3
    item_id = events[2][1]["item"]["id"]
    for delta in deltas:
        assert delta["item_id"] == item_id
        assert (delta["output_index"], delta["content_index"]) == (0, 0)
    done = dict(events)
    assert done["response.output_text.done"]["text"] == DEFAULT_REPLY
    completed = done["response.completed"]["response"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == DEFAULT_REPLY
    assert completed["usage"]["total_tokens"] == 2 + 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(gaps) == 2 and all(gap >= delay * 0.5 for gap in gaps), gaps


def test_responses_stream_drop_and_status(client: httpx.Client) -> None:
    body = b""
    headers = {"X-Mock-Drop-After": "2", "X-Mock-Event-Delay": "0.01"}
    with (
        pytest.raises(httpx.TransportError),
        client.stream("POST", "/v1/responses", json=RESPONSE, headers=headers) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            body += chunk
    assert body.count(b"event: response.output_text.delta\n") == 2
    assert b"response.completed" not in body
    assert b"response.content_part.added" in body
    stats = client.get("/_mock/stats").json()
    assert stats["streams_dropped"] == 1 and stats["streams_completed"] == 0

    limited = client.post("/v1/responses", json=RESPONSE, headers={"X-Mock-Status": "429"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["code"] == "429"


def test_embeddings_with_the_sdk(sdk: openai.OpenAI, client: httpx.Client) -> None:
    # The SDK asks for base64 by default and decodes it.
    listed = sdk.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"])
    assert listed.object == "list" and listed.model == "text-embedding-3-small"
    assert [item.index for item in listed.data] == [0, 1]
    assert listed.data[0].embedding == embedding_vector("alpha")
    assert listed.data[1].embedding == embedding_vector("beta gamma")
    assert len(listed.data[0].embedding) == EMBEDDING_DIMENSIONS
    assert listed.data[0].embedding != listed.data[1].embedding
    assert abs(sum(value * value for value in listed.data[0].embedding) - 1) < 1e-5
    assert (listed.usage.prompt_tokens, listed.usage.total_tokens) == (3, 3)
    assert client.get("/_mock/requests").json()[0]["body"].count('"base64"') == 1

    single = sdk.embeddings.create(model="m", input="alpha", encoding_format="float")
    assert single.data[0].embedding == embedding_vector("alpha")
    wide = sdk.embeddings.create(model="m", input="alpha", dimensions=32)
    assert len(wide.data[0].embedding) == 32

    raw = client.post(
        "/v1/embeddings", json={"input": "alpha", "encoding_format": "base64"}
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack("<8f", packed)) == embedding_vector("alpha")
    for bad in ({"input": []}, {"input": 3}, {"input": "a", "encoding_format": "hex"},
                {"input": "a", "dimensions": 0}):
        assert client.post("/v1/embeddings", json=bad).status_code == 400, bad


def test_legacy_completions(sdk: openai.OpenAI, client: httpx.Client) -> None:
    completion = sdk.completions.create(model="gpt-5", prompt="Say hello")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == DEFAULT_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens == 2

    stream = sdk.completions.create(
        model="gpt-5",
        prompt="Say hello",
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Mock-Event-Delay": "0"},
    )
    chunks = list(stream)
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == DEFAULT_REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_other_v1_paths_are_echoed(client: httpx.Client) -> None:
    upload = random.Random(7).randbytes(5 * 1024 * 1024)
    answer = client.post(
        "/genai/v1/files?purpose=batch",
        content=upload,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "object": "mock.echo",
        "method": "POST",
        "path": "/genai/v1/files",
        "query": "purpose=batch",
        "body_bytes": len(upload),
        "body_sha256": hashlib.sha256(upload).hexdigest(),
        "content_type": "application/octet-stream",
    }
    [entry] = client.get("/_mock/requests").json()
    assert entry["body_length"] == len(upload)
    assert entry["body"] == upload[: 64 * 1024].decode("utf-8", "replace")

    multipart = client.build_request(
        "POST",
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", b"RIFF" * 1000)},
        data={"model": "whisper-1"},
    )
    sent = multipart.read()
    echo = client.send(multipart).json()
    assert echo["content_type"] == multipart.headers["content-type"]
    assert echo["content_type"].startswith("multipart/form-data; boundary=")
    assert (echo["body_bytes"], echo["body_sha256"]) == (
        len(sent), hashlib.sha256(sent).hexdigest()
    )

    for method, path in (("DELETE", "/v1/responses/resp_1"),
                         ("GET", "/v1/responses/resp_1/input_items"),
                         ("PUT", "/v1/anything/")):
        echo = client.request(method, path).json()
        assert (echo["object"], echo["method"], echo["path"]) == ("mock.echo", method, path)
        assert echo["body_bytes"] == 0 and echo["content_type"] is None
    assert client.get("/v1/x", headers={"X-Mock-Status": "503"}).status_code == 503
    with pytest.raises(httpx.TransportError):
        client.get("/v1/x", headers={"X-Mock-Drop-After": "0"})
