"""Streaming through the real daemon: unbuffered, headers, disconnects, breaks."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

CHAT = "/v1/chat/completions"
STREAM_BODY = {"model": "gpt-4.1", "messages": [], "stream": True}


def stats(mock_url: str) -> dict[str, int]:
    return httpx.get(mock_url + "/_mock/stats").json()


def test_events_arrive_as_the_upstream_sends_them(proxy, client, mock_url):
    """A slow stream reaches the client event by event: the first event is
    in the client's hands while the upstream is still sending the rest (a
    buffering proxy would hand it over only once the upstream had ended)."""
    completed_before = stats(mock_url)["streams_completed"]
    completed_at_first_event = None
    lines = []
    with client.stream(
        "POST",
        proxy.url + CHAT,
        json=STREAM_BODY,
        headers={"X-Mock-Events": "4", "X-Mock-Event-Delay": "0.4"},
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                if completed_at_first_event is None:
                    completed_at_first_event = stats(mock_url)["streams_completed"]
                lines.append(line)
    assert lines[-1] == "data: [DONE]" and len(lines) >= 5
    assert completed_at_first_event == completed_before
    assert stats(mock_url)["streams_completed"] == completed_before + 1


def test_stream_headers(proxy):
    """Content-Type mirrored, request id set, no header twice, no upstream hop headers."""
    url = urlsplit(proxy.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.request(
        "POST", CHAT, body=json.dumps(STREAM_BODY), headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    names = [name.lower() for name, _ in response.getheaders()]
    body = response.read()
    connection.close()
    assert response.status == 200
    assert response.getheader("content-type") == "text/event-stream; charset=utf-8"
    assert response.getheader("x-request-id")
    for name in ("date", "server", "content-type", "x-request-id", "transfer-encoding"):
        assert names.count(name) <= 1, (name, names)
    assert "content-length" not in names
    assert body.endswith(b"data: [DONE]\n\n")


def test_client_disconnect_closes_upstream(proxy, mock_url, client):
    """A client leaving mid-stream makes the proxy close its upstream call."""
    before = stats(mock_url)["streams_cancelled"]
    rid = "disconnect-" + uuid.uuid4().hex
    with client.stream(
        "POST",
        proxy.url + CHAT,
        json=STREAM_BODY,
        headers={"X-Mock-Events": "50", "X-Mock-Event-Delay": "0.2", "X-Request-ID": rid},
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    # Leaving the block closed the client's connection.
    deadline = time.monotonic() + 5
    while stats(mock_url)["streams_cancelled"] == before:
        assert time.monotonic() < deadline, "upstream stream was never closed"
        time.sleep(0.05)
    proxy.wait_for_event("client_disconnected", id=rid)


def test_broken_upstream_stream_is_visible(proxy, client):
    """The upstream dropping mid-stream never looks like a clean end to the client."""
    rid = "broken-" + uuid.uuid4().hex
    seen = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream(
            "POST",
            proxy.url + CHAT,
            json=STREAM_BODY,
            headers={"X-Mock-Drop-After": "2", "X-Request-ID": rid},
        ) as response:
            for line in response.iter_lines():
                seen.append(line)
    data = [line for line in seen if line.startswith("data: ")]
    assert "data: [DONE]" not in data
    error = json.loads(data[-1][len("data: "):])["error"]
    assert error["type"] == "proxy_error" and error["request_id"] == rid
    event = proxy.wait_for_event("stream_broken", id=rid)
    assert event["level"] == "ERROR"


def test_stream_error_status_is_plain_json(proxy, client):
    """An upstream error on a streaming request comes back as its status and JSON body."""
    response = client.post(proxy.url + CHAT, json=STREAM_BODY,
                           headers={"X-Mock-Status": "429", "X-Mock-Header": "Retry-After: 30"})
    assert response.status_code == 429
    assert response.json()["error"]["message"] == "mock error 429"


def test_chunk_previews_logged(proxy, client):
    rid = "preview-" + uuid.uuid4().hex
    client.post(proxy.url + CHAT, json=STREAM_BODY, headers={"X-Request-ID": rid})
    proxy.wait_for_event("streaming_end", id=rid)
    start = proxy.wait_for_event("streaming_start", id=rid)
    assert start["streaming"] is True and start["status"] == 200
    chunks = [e for e in proxy.events("streaming_chunk") if e["id"] == rid]
    assert chunks
    for chunk in chunks:
        assert chunk["bytes"] > 0
        assert len(chunk["preview"].encode()) <= 16  # LOG_STREAM_MAX_BYTES of the fixture


def test_slow_reader_pauses_the_upstream(proxy):
    """Backpressure: while the client reads nothing, the proxy stops reading
    the upstream instead of buffering the whole stream."""
    import socket

    rid = "slow-" + uuid.uuid4().hex
    body = json.dumps(STREAM_BODY).encode()
    url = urlsplit(proxy.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname, url.port))
    sock.sendall(
        b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Mock-Events: 60000\r\nX-Mock-Event-Delay: 0\r\nX-Request-ID: " + rid.encode() +
        b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    proxy.wait_for_event("streaming_start", id=rid)
    time.sleep(1.5)
    assert not [e for e in proxy.events("streaming_end") if e["id"] == rid], \
        "the proxy read the whole upstream stream although the client read nothing"
    received = bytearray()
    sock.settimeout(30)
    while not received.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the end of the stream"
        received += chunk
    sock.close()
    assert b"data: [DONE]" in received
    end = proxy.wait_for_event("streaming_end", id=rid)
    assert end["bytes"] > 5_000_000


def test_broken_responses_stream_ends_with_an_error_event(proxy, client):
    """On the Responses API a broken stream ends with `event: error`, whose
    data carries type, code and message as the API's clients read them."""
    rid = "broken-resp-" + uuid.uuid4().hex
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", proxy.url + "/v1/responses",
                           json={"model": "gpt-4.1", "input": "hi", "stream": True},
                           headers={"X-Mock-Drop-After": "2", "X-Request-ID": rid}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
    events = [line for line in lines if line.startswith("event: ")]
    assert events[-1] == "event: error"
    last = json.loads([line for line in lines if line.startswith("data: ")][-1][len("data: "):])
    assert last["type"] == "error" and last["code"] == "proxy_error"
    assert "upstream request failed" in last["message"]
    assert last["error"]["request_id"] == rid
    assert not any('"type": "response.completed"' in line for line in lines)


def test_stream_without_upstream_content_type_gets_the_default(proxy, client):
    """A stream whose upstream sends no Content-Type reaches the client as
    text/event-stream; charset=utf-8, once."""
    with client.stream("POST", proxy.url + CHAT, json=STREAM_BODY,
                       headers={"X-Mock-No-Content-Type": "1"}) as response:
        assert response.headers.get_list("content-type") == ["text/event-stream; charset=utf-8"]
        assert list(response.iter_lines())[-2] == "data: [DONE]"
