"""Tests for the mock OpenAI upstream, run as a real subprocess."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support import run_mock_upstream
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from genaiproxy.mock_upstream import (
    DEFAULT_REPLY,
    EMBEDDING_DIMENSIONS,
    build_site,
    embedding_vector,
    split_reply,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
BANNER = "mock upstream listening on "
CHAT = {"model": "gpt-5", "messages": [{"role": "user", "content": "Say hello"}]}
RESPONSE = {"model": "gpt-5", "input": "Say hello", "stream": True}


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """One mock upstream shared by the module's tests."""
    with run_mock_upstream("--event-delay", "0.05") as (url, _):
        yield url


@pytest.fixture
def client(mock_url: str) -> Iterator[httpx.Client]:
    """An httpx client on the shared mock, with its log and counters reset."""
    with httpx.Client(base_url=mock_url, timeout=5.0) as client:
        client.delete("/_mock/requests").raise_for_status()
        yield client


@pytest.fixture
def sdk(mock_url: str, client: httpx.Client) -> Iterator[openai.OpenAI]:
    """The openai SDK pointed straight at the shared mock (log reset)."""
    with httpx.Client(trust_env=False, timeout=5.0) as http_client:
        yield openai.OpenAI(
            base_url=f"{mock_url}/v1",
            api_key="sk-mock",
            max_retries=0,
            http_client=http_client,
        )


def wait_for(check: Callable[[], Any], timeout: float = 3.0) -> Any:
    """Poll ``check`` until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "condition not reached in time"
            return result
        time.sleep(0.02)


def sse_payloads(lines: list[str]) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in lines if line.startswith("data: ")]


def typed_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """An ``event:``/``data:`` SSE body as (event name, decoded data) pairs,
    checking that every event is exactly those two lines."""
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((event_line[len("event: "):], json.loads(data_line[len("data: "):])))
    return events


def test_process_banner_and_sigterm() -> None:
    with run_mock_upstream("--reply", "Custom words here") as (url, process):
        assert url.startswith("http://127.0.0.1:")
        assert int(url.rsplit(":", 1)[1]) > 0
        answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT).json()
        assert answer["choices"][0]["message"]["content"] == "Custom words here"
        process.terminate()
        assert process.wait(timeout=5) == 0


def test_root_health_and_models(client: httpx.Client) -> None:
    root = client.get("/")
    assert root.status_code == 200
    assert root.headers["content-type"].startswith("text/plain")
    assert root.text == "mock upstream ok"

    assert client.get("/v1/health").json() == {"status": "ok"}

    models = client.get("/v1/models")
    assert models.status_code == 200
    assert models.headers["content-type"] == "application/json"
    body = models.json()
    assert body["object"] == "list"
    assert {model["id"] for model in body["data"]} >= {"gpt-4.1", "gpt-5"}


def test_routes_match_any_prefix(client: httpx.Client) -> None:
    assert client.get("/genai/v1/health").json() == {"status": "ok"}
    assert client.get("/a/b/v1/models").status_code == 200
    assert client.get("/genai/").text == "mock upstream ok"
    answer = client.post("/genai/v1/chat/completions", json=CHAT)
    assert answer.json()["object"] == "chat.completion"


def test_unknown_path_and_bad_json(client: httpx.Client) -> None:
    missing = client.get("/nothing-here")  # outside /v1/ (inside is echoed)
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] is None
    assert error["message"]

    for path in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings"):
        bad = client.post(path, content=b"{not json")
        assert bad.status_code == 400, path
        assert bad.json()["error"]["type"] == "invalid_request_error"
        assert client.post(path, json=[1]).status_code == 400
        wrong = client.get(path)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_non_stream_chat_echoes_model(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4.1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"].startswith("chatcmpl-mock-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4.1"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": DEFAULT_REPLY}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_plain_text_content_type(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions", json=CHAT, headers={"X-Mock-Content-Type": "text/plain"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.text == DEFAULT_REPLY


def test_stream_events_are_spaced_by_the_delay(client: httpx.Client) -> None:
    delay = 0.15
    headers = {"X-Mock-Events": "4", "X-Mock-Event-Delay": str(delay)}
    arrivals: list[float] = []
    lines: list[str] = []
    with client.stream(
        "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data: "):
                arrivals.append(time.monotonic())

    payloads = sse_payloads(lines)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert len(chunks) == 5  # 4 content events + the finish chunk
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["model"] == "gpt-5" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    content = [chunk["choices"][0]["delta"].get("content") for chunk in chunks[:4]]
    assert "".join(content) == DEFAULT_REPLY
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:4], strict=False)]
    assert all(gap >= delay * 0.5 for gap in gaps), gaps


def test_stream_with_zero_events(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"X-Mock-Events": "0"},
    )
    payloads = sse_payloads(response.text.splitlines())
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[0])["choices"][0]["finish_reason"] == "stop"


def test_status_control_and_retry_after(client: httpx.Client) -> None:
    limited = client.get("/v1/models", headers={"X-Mock-Status": "429"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json() == {
        "error": {"message": "mock error 429", "type": "mock_error", "code": "429"}
    }

    streamed = client.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"x-mock-status": "503"},
    )
    assert streamed.status_code == 503
    assert streamed.headers["content-type"] == "application/json"
    assert "retry-after" not in streamed.headers
    assert streamed.json()["error"]["code"] == "503"


def test_drop_after_breaks_the_stream(client: httpx.Client) -> None:
    lines: list[str] = []
    headers = {"X-Mock-Drop-After": "2", "X-Mock-Event-Delay": "0.01"}
    with pytest.raises(httpx.TransportError):
        with client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
    payloads = sse_payloads(lines)
    assert len(payloads) == 2
    assert "[DONE]" not in payloads
    assert client.get("/_mock/stats").json()["streams_dropped"] == 1


def test_drop_after_on_a_plain_request(client: httpx.Client) -> None:
    with pytest.raises(httpx.TransportError):
        client.post("/v1/chat/completions", json=CHAT, headers={"X-Mock-Drop-After": "0"})


def test_fail_first_then_answer(client: httpx.Client) -> None:
    headers = {"X-Mock-Fail-First": "2", "X-Request-ID": f"req-{uuid.uuid4()}"}
    for _ in range(2):
        with pytest.raises(httpx.TransportError):
            client.post("/v1/chat/completions", json=CHAT, headers=headers)
    answer = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY
    # Another id gets its own budget of failures.
    with pytest.raises(httpx.TransportError):
        client.post(
            "/v1/chat/completions",
            json=CHAT,
            headers={**headers, "X-Request-ID": f"req-{uuid.uuid4()}"},
        )


def test_hang_never_answers(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/models", headers={"X-Mock-Hang": "1"}, timeout=0.3)


def test_requests_log(client: httpx.Client) -> None:
    client.post(
        "/genai/v1/chat/completions?api-version=2024-10-21&x=1",
        content=b'{"model": "gpt-5"}\xff',
        headers={"Content-Type": "application/json", "X-Custom": "a"},
    )
    client.get("/_mock/stats")
    [entry] = client.get("/_mock/requests").json()
    assert entry["method"] == "POST"
    assert entry["path"] == "/genai/v1/chat/completions"
    assert entry["query"] == "api-version=2024-10-21&x=1"
    assert entry["headers"]["x-custom"] == ["a"]
    assert entry["headers"]["content-type"] == ["application/json"]
    assert entry["body"] == '{"model": "gpt-5"}\ufffd'
    assert entry["body_length"] == 19

    assert client.delete("/_mock/requests").json() == {"cleared": 1}
    assert client.get("/_mock/requests").json() == []


def test_stats_count_streams_and_connections(mock_url: str, client: httpx.Client) -> None:
    def stats() -> dict[str, int]:
        return httpx.get(f"{mock_url}/_mock/stats").json()

    client.post("/v1/chat/completions", json={**CHAT, "stream": True},
                headers={"X-Mock-Event-Delay": "0"})
    headers = {"X-Mock-Events": "100", "X-Mock-Event-Delay": "0.05"}
    with httpx.Client(base_url=mock_url, timeout=5.0) as streamer:
        with streamer.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
        ) as response:
            lines = response.iter_lines()  # keep it: dropping it closes the stream
            assert next(lines).startswith("data: ")
            # This connection, the fixture client's and the poller's own.
            wait_for(lambda: stats()["open_connections"] == 3)
            assert stats()["streams_cancelled"] == 0
    counters = wait_for(lambda: (s := stats())["streams_cancelled"] == 1 and s)
    assert counters["streams_started"] == 2
    assert counters["streams_completed"] == 1
    assert counters["requests"] == 2
    client.close()
    wait_for(lambda: stats()["open_connections"] == 1)


def test_build_site_in_process_with_a_clock() -> None:
    clock = Clock()
    site = build_site(events=3, event_delay=1.0, reply="a b c", clock=clock)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 12345))
    transport = StringTransport()
    channel.makeConnection(transport)
    assert site.state.open_connections == 1
    body = b'{"model": "m", "stream": true}'
    channel.dataReceived(
        b"POST /x/v1/chat/completions HTTP/1.1\r\nHost: mock\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert transport.value().count(b"data: ") == 1  # first event right away
    clock.advance(1.0)
    assert transport.value().count(b"data: ") == 2
    channel.connectionLost(Failure(ConnectionLost()))
    assert site.state.stats()["streams_cancelled"] == 1
    assert site.state.open_connections == 0
    assert not [call for call in clock.getDelayedCalls() if call.active()]


def test_split_reply() -> None:
    assert split_reply("Hello from the mock upstream.", 5) == [
        "Hello ", "from ", "the ", "mock ", "upstream."
    ]
    assert "".join(split_reply("Hello from the mock upstream.", 2)) == (
        "Hello from the mock upstream."
    )
    assert split_reply("one two", 4) == ["one ", "two ", "one ", "two"]
    assert split_reply("anything", 0) == []
    assert split_reply("", 2) == ["", ""]


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
