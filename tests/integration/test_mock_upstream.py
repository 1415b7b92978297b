"""The mock OpenAI upstream as a real subprocess: routes, X-Mock-* controls,
request log and counters, and the site built in process."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from support import run_mock_upstream, wait_for
from support.mock_fixtures import (
    CHAT,
    reset_client,
    running_mock,
    sdk_for,
    sse_payloads,
)
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from genaiproxy.mock.payloads import split_reply
from genaiproxy.mock.server import DEFAULT_REPLY, build_site

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


@pytest.mark.parametrize(("after", "events"), [(0, 0), (2, 2), (99, 4)])
def test_error_after_ends_the_stream_with_an_error_event(client: httpx.Client, after: int,
                                                         events: int) -> None:
    """X-Mock-Error-After: N sends N events (at most all of them), then an
    error event instead of the rest and of [DONE], and ends the stream
    cleanly."""
    headers = {"X-Mock-Error-After": str(after), "X-Mock-Events": "4",
               "X-Mock-Event-Delay": "0.01"}
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True},
                       headers=headers) as response:
        payloads = sse_payloads(list(response.iter_lines()))
    assert response.status_code == 200
    assert [json.loads(p).get("error", {}).get("code") for p in payloads] == (
        [None] * events + ["server_error"])


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


APIM_404 = {"statusCode": 404, "message": "Resource not found"}


def test_chat_only_gateway_and_model_options() -> None:
    """Started --chat-only, any /responses path is a 404 with the body an
    Azure API Management portal sends (and still logged), whatever the
    method or prefix, while chat answers; --tool-call, --interleave-tool-calls
    and --reasoning shape every chat answer, and the X-Mock-* headers
    override them for one request."""
    tools = [{"type": "function", "function": {"name": name}} for name in ("exec_command", "view_image")]
    chat = {**CHAT, "tools": tools}
    with run_mock_upstream(
        "--chat-only", "--tool-call", 'exec_command={"cmd":"echo bridged-ok"}',
        "--tool-call", "view_image", "--interleave-tool-calls", "--reasoning", "Let me see.",
        "--event-delay", "0",
    ) as (url, _), httpx.Client(base_url=url, timeout=5.0) as client:
        for method, path in (("POST", "/v1/responses"), ("POST", "/genai/responses/"),
                             ("GET", "/v1/responses/resp_1/input_items")):
            missing = client.request(method, path, json={})
            assert missing.status_code == 404, path
            assert missing.headers["content-type"] == "application/json"
            assert missing.json() == APIM_404
        assert [entry["path"] for entry in client.get("/_mock/requests").json()] == [
            "/v1/responses", "/genai/responses/", "/v1/responses/resp_1/input_items"]
        with httpx.Client(trust_env=False) as http_client:
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, http_client=http_client)
            with pytest.raises(openai.NotFoundError):
                sdk.responses.create(model="gpt-5", input="hi")
        assert client.post("/v1/responses", json={"input": "hi"},
                           headers={"X-Mock-Chat-Only": "0"}).status_code == 200

        message = client.post("/v1/chat/completions", json=chat).json()["choices"][0]["message"]
        assert [call["function"]["arguments"] for call in message["tool_calls"]] == [
            '{"cmd":"echo bridged-ok"}', "{}"]
        assert message["reasoning_content"] == "Let me see."
        streamed = client.post("/v1/chat/completions", json={**chat, "stream": True}).text
        indexes = [entry["index"] for payload in sse_payloads(streamed.splitlines())[:-1]
                   for entry in json.loads(payload)["choices"][0]["delta"].get("tool_calls", [])]
        assert indexes[:4] == [0, 1, 0, 1]  # interleaved
        overridden = client.post("/v1/chat/completions", json=chat, headers=[
            ("X-Mock-Tool-Call", "view_image"), ("X-Mock-Reasoning", "")]).json()
        message = overridden["choices"][0]["message"]
        assert [call["function"]["name"] for call in message["tool_calls"]] == ["view_image"]
        assert "reasoning_content" not in message


def test_chat_only_header(client: httpx.Client) -> None:
    """X-Mock-Chat-Only: 1 makes one request meet a chat-only gateway."""
    missing = client.post("/v1/responses", json={"input": "hi"}, headers={"X-Mock-Chat-Only": "1"})
    assert (missing.status_code, missing.json()) == (404, APIM_404)
    assert client.post("/v1/chat/completions", json=CHAT,
                       headers={"X-Mock-Chat-Only": "1"}).status_code == 200
    assert len(client.get("/_mock/requests").json()) == 2


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
