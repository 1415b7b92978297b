"""GET /metrics: Prometheus series of the forwarded requests, counted exactly."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from support import ProxyProcess, run_proxy, wait_for
from support.metrics import AUTH, TOKEN, scrape

from genaiproxy import __version__
from genaiproxy.observe.metrics import MAX_MODELS

CHAT = "/v1/chat/completions"


@pytest.fixture
def proxy(mock_url: str) -> Iterator[ProxyProcess]:
    """A daemon of its own, so that its counts are this test's alone."""
    with run_proxy(mock_url, AUTH_TOKEN=TOKEN, RETRY_BACKOFF_SEC="0.01") as running:
        yield running


def requests_counted(samples: dict, **labels: str) -> float:
    labels.setdefault("upstream", "default")
    key = ("genai_proxy_requests_total", tuple(sorted(labels.items())))
    return samples.get(key, 0.0)


def chat(proxy: ProxyProcess, model: str = "gpt-4.1", stream: bool = False,
         **headers: str) -> httpx.Response:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(proxy.url + CHAT, json=body, headers={**AUTH, **headers}, timeout=30,
                      trust_env=False)


def test_metrics_follow_the_token_rule(proxy):
    """/metrics needs the bearer token when one is set, like /v1."""
    assert httpx.get(proxy.url + "/metrics", trust_env=False).status_code == 401
    samples = scrape(proxy)
    assert samples[("genai_proxy_build_info", (("version", __version__),))] == 1


def test_requests_are_counted_by_route_model_status_and_client(proxy, mock_url):
    """Each forwarded request is counted once, with its route, model, status
    and client; durations, streams and retries are recorded as they happen."""
    for _ in range(3):
        assert chat(proxy).status_code == 200
    assert chat(proxy, stream=True).status_code == 200
    assert chat(proxy, **{"X-Mock-Status": "404"}).status_code == 404
    assert chat(proxy, **{"X-Request-ID": str(uuid.uuid4()), "X-Mock-Fail-First": "1"}
                ).status_code == 200
    embeddings = httpx.post(proxy.url + "/v1/embeddings", headers=AUTH, trust_env=False,
                            json={"model": "text-embedding-3-small", "input": "hi"})
    assert embeddings.status_code == 200

    samples = scrape(proxy)
    assert requests_counted(samples, route="chat", model="gpt-4.1", status="200",
                            client="default") == 5
    assert requests_counted(samples, route="chat", model="gpt-4.1", status="404",
                            client="default") == 1
    assert requests_counted(samples, route="embeddings", model="text-embedding-3-small",
                            status="200", client="default") == 1
    assert samples[("genai_proxy_request_duration_seconds_count",
                     (("client", "default"), ("model", "gpt-4.1"), ("route", "chat")))] == 6
    assert samples[("genai_proxy_retries_total", (("reason", "connection_lost"),))] == 1
    assert samples[("genai_proxy_streamed_bytes_total", ())] > 0
    assert samples[("genai_proxy_streams_in_flight", ())] == 0
    assert samples[("genai_proxy_requests_in_flight", ())] == 0


def test_a_client_that_leaves_is_counted_as_499(proxy):
    """A client gone before the end of its stream is counted with status 499,
    and the stream leaves the in-flight gauges."""
    address = urlsplit(proxy.url)
    body = b'{"model":"gpt-4.1","stream":true,"messages":[]}'
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     b"X-Mock-Events: 200\r\nX-Mock-Event-Delay: 0.05\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (CHAT.encode(), TOKEN.encode(), len(body), body))
        assert b"200" in sock.recv(65536)
        proxy.wait_for_event("streaming_start")
    left = wait_for(lambda: requests_counted(scrape(proxy), route="chat", model="gpt-4.1",
                                             status="499", client="default"))
    assert left == 1
    samples = scrape(proxy)
    assert samples[("genai_proxy_streams_in_flight", ())] == 0


def test_model_labels_are_bounded(proxy):
    """Past MAX_MODELS distinct model names, more are counted as "other"."""
    for number in range(MAX_MODELS + 5):
        assert chat(proxy, model=f"made-up-{number}").status_code == 200
    samples = scrape(proxy)
    models = {dict(labels)["model"] for name, labels in samples
              if name == "genai_proxy_requests_total"}
    assert len(models) == MAX_MODELS + 1 and "other" in models
    assert requests_counted(samples, route="chat", model="other", status="200",
                            client="default") == 5


def test_tokens_are_counted_from_json_answers_exactly(proxy):
    """Tokens of non-streamed chat, completions, responses and embeddings
    answers are counted by model, client and kind, exactly as the upstream
    reported them, and the response log event carries the usage."""
    calls = [
        ("/v1/chat/completions", {"model": "gpt-4.1", "messages": [{"role": "user",
                                                                    "content": "one two three"}]}),
        ("/v1/chat/completions", {"model": "gpt-4.1", "messages": [{"role": "user",
                                                                    "content": "four"}]}),
        ("/v1/completions", {"model": "gpt-4.1", "prompt": "five six"}),
        ("/v1/responses", {"model": "gpt-5", "input": "seven eight nine ten"}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "eleven twelve"}),
    ]
    expected: dict[tuple[str, str], int] = {}
    for path, body in calls:
        rid = str(uuid.uuid4())
        answer = httpx.post(proxy.url + path, json=body, headers={**AUTH, "X-Request-ID": rid},
                            trust_env=False, timeout=30)
        assert answer.status_code == 200, answer.text
        usage = answer.json()["usage"]
        reported = {
            "input": usage.get("prompt_tokens", usage.get("input_tokens")),
            "output": usage.get("completion_tokens", usage.get("output_tokens")),
            "cached": (usage.get("input_tokens_details") or {}).get("cached_tokens"),
            "reasoning": (usage.get("output_tokens_details") or {}).get("reasoning_tokens"),
        }
        reported = {kind: count for kind, count in reported.items() if count is not None}
        assert proxy.wait_for_event("response", id=rid)["usage"] == reported
        for kind, count in reported.items():
            key = (body["model"], kind)
            expected[key] = expected.get(key, 0) + count
    assert ("gpt-4.1", "output") in expected and ("text-embedding-3-small", "input") in expected
    samples = scrape(proxy)
    counted = {(dict(labels)["model"], dict(labels)["kind"]): value
               for (name, labels), value in samples.items() if name == "genai_proxy_tokens_total"}
    assert counted == expected
    assert all(dict(labels)["client"] == "default" for (name, labels) in samples
               if name == "genai_proxy_tokens_total")


def test_first_streamed_byte_and_reloads_are_recorded(mock_url, tmp_path):
    """A stream records its time to first byte; each load of models.yaml and
    of a secret file is counted by file and result."""
    key = tmp_path / "key"
    key.write_text("key-metrics-1\n")
    with run_proxy(mock_url, models="- id: gpt-4.1\n", AUTH_TOKEN=TOKEN,
                   GENAI_API_KEY_FILE=str(key), without=("GENAI_API_KEY",)) as proxy:
        assert chat(proxy, stream=True).status_code == 200
        (proxy.workdir / "models.yaml").write_text("- id: [unclosed\n")
        key.write_text("key-metrics-2\n")
        # Found by the proxy's own check of the files, once each.
        proxy.wait_for_event("models_reload_failed")
        proxy.wait_for_event("credentials_reloaded")
        samples = scrape(proxy)
    assert samples[("genai_proxy_stream_first_byte_seconds_count", (("route", "chat"),))] == 1
    reloads = {dict(labels)["file"] + "/" + dict(labels)["result"]: value
               for (name, labels), value in samples.items()
               if name == "genai_proxy_config_reloads_total"}
    assert reloads == {"models/ok": 1, "models/failed": 1, "GENAI_API_KEY_FILE/ok": 1}
