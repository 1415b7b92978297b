"""Upstream failures through the real daemon: retries, recovery, timeouts."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
from support import BASE_ENV, free_port, run_mock_upstream, run_proxy

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4.1", "messages": []}
KEY = BASE_ENV["GENAI_API_KEY"]


def test_refused_then_recovers(client):
    """Connections refused while the upstream is down are retried with backoff;
    once it comes up, the waiting request succeeds."""
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    with run_proxy(upstream, MAX_RETRIES="8", RETRY_BACKOFF_SEC="0.2") as proxy:
        rid = "recover-" + uuid.uuid4().hex
        result: dict[str, httpx.Response] = {}
        sender = threading.Thread(
            target=lambda: result.setdefault(
                "response",
                httpx.post(proxy.url + CHAT, json=BODY, headers={"X-Request-ID": rid}, timeout=60),
            )
        )
        sender.start()
        proxy.wait_for(lambda: len([e for e in proxy.events("retry") if e["id"] == rid]) >= 2)
        with run_mock_upstream("--port", str(port)):
            sender.join(timeout=60)
        response = result["response"]
        assert response.status_code == 200
        assert response.json()["object"] == "chat.completion"
        retries = [e for e in proxy.events("retry") if e["id"] == rid]
        assert retries[0]["level"] == "WARNING"
        assert retries[0]["error"]["type"] == "connect_error"
        assert [e["backoff_sec"] for e in retries[:2]] == [0.2, 0.4]


def test_retries_exhausted_give_502(client):
    port = free_port()
    with run_proxy(f"http://127.0.0.1:{port}", MAX_RETRIES="2", RETRY_BACKOFF_SEC="0.01") as proxy:
        rid = "down-" + uuid.uuid4().hex
        response = client.post(proxy.url + CHAT, json=BODY, headers={"X-Request-ID": rid})
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "proxy_error"
        assert error["request_id"] == rid
        assert error["upstream"] == f"http://127.0.0.1:{port}"
        assert "connect_error" in error["message"]
        assert KEY not in response.text
        final = proxy.wait_for_event("final_error", id=rid)  # logged after the retries
        assert len([e for e in proxy.events("retry") if e["id"] == rid]) == 2
        assert final["level"] == "ERROR" and final["error"]["type"] == "proxy_error"
        # The health probe of an unreachable upstream says so: 502, as JSON.
        health = client.get(proxy.url + "/health")
        assert health.status_code == 502 and health.json()["error"]["type"] == "proxy_error"


def test_connection_lost_before_response_is_retried(proxy, client):
    """An upstream that closes the connection without answering (as a stale
    keep-alive connection does) is retried transparently."""
    rid = "lost-" + uuid.uuid4().hex
    response = client.post(
        proxy.url + CHAT, json=BODY, headers={"X-Request-ID": rid, "X-Mock-Fail-First": "1"}
    )
    assert response.status_code == 200
    proxy.wait_for_event("response", id=rid)  # logged after the retry
    [retry] = [e for e in proxy.events("retry") if e["id"] == rid]
    assert retry["retry"] == 1
    assert retry["error"]["type"] in ("connection_lost", "protocol_error")


@pytest.fixture(scope="module")
def impatient_proxy(mock_url):
    """A proxy with a short REQUEST_TIMEOUT."""
    with run_proxy(mock_url, REQUEST_TIMEOUT="0.5", MAX_RETRIES="1", RETRY_BACKOFF_SEC="0.01") as p:
        yield p


def test_hanging_upstream_times_out(impatient_proxy, client):
    rid = "hang-" + uuid.uuid4().hex
    response = client.post(
        impatient_proxy.url + CHAT, json=BODY, headers={"X-Request-ID": rid, "X-Mock-Hang": "1"}
    )
    assert response.status_code == 502
    assert "read_timeout" in response.json()["error"]["message"]
    impatient_proxy.wait_for_event("final_error", id=rid)
    [retry] = [e for e in impatient_proxy.events("retry") if e["id"] == rid]
    assert retry["error"]["type"] == "read_timeout"


def test_timeout_is_idle_time_not_total_time(impatient_proxy, client):
    """A stream that keeps sending runs past REQUEST_TIMEOUT (0.5 s here)."""
    started = time.monotonic()
    with client.stream(
        "POST",
        impatient_proxy.url + CHAT,
        json={**BODY, "stream": True},
        headers={"X-Mock-Events": "8", "X-Mock-Event-Delay": "0.2"},
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - started > 1.0
    assert lines[-1] == "data: [DONE]"


def test_stream_going_quiet_is_cut_visibly(impatient_proxy, client):
    """A stream silent for longer than REQUEST_TIMEOUT ends as a broken stream."""
    rid = "quiet-" + uuid.uuid4().hex
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream(
            "POST",
            impatient_proxy.url + CHAT,
            json={**BODY, "stream": True},
            headers={"X-Mock-Events": "3", "X-Mock-Event-Delay": "2", "X-Request-ID": rid},
        ) as response:
            for _ in response.iter_lines():
                pass
    event = impatient_proxy.wait_for_event("stream_broken", id=rid)
    assert "read_timeout" in event["error"]["message"]


def test_non_streamed_body_that_breaks_after_the_headers_is_retried(proxy, client):
    """The headers came and then the body broke: nothing reached the client
    yet, so the request is retried and the client gets the whole answer."""
    rid = "midbody-" + uuid.uuid4().hex
    response = client.post(proxy.url + CHAT, json=BODY, headers={
        "X-Request-ID": rid, "X-Mock-Fail-First": "1", "X-Mock-Fail-Mid-Body": "1"})
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
    proxy.wait_for_event("response", id=rid)
    [retry] = [e for e in proxy.events("retry") if e["id"] == rid]
    assert retry["error"]["type"] in ("connection_lost", "protocol_error")
