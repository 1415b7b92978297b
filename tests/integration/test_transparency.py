"""What treq would do by default and a transparent proxy must not, over real
sockets: keep cookies, follow redirects, hand on an encoding it removed, hold
a body in memory."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import httpx
from support import run_proxy, upstream_saw

CHAT = "/v1/chat/completions"
MIB = 1 << 20


def new_id() -> str:
    return "test-" + uuid.uuid4().hex


def test_set_cookie_reaches_its_client_and_is_never_sent_upstream(proxy, client, mock_url):
    """The upstream's Set-Cookie is passed to the client it answered; a later
    request from another client carries no cookie upstream."""
    first = client.post(proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []},
                        headers={"X-Mock-Header": "Set-Cookie: affinity=node-7; Path=/"})
    assert first.status_code == 200
    assert first.headers["set-cookie"] == "affinity=node-7; Path=/"
    rid = new_id()
    with httpx.Client(timeout=30) as other:
        second = other.post(proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []},
                            headers={"X-Request-ID": rid})
    assert second.status_code == 200
    [seen] = upstream_saw(mock_url, rid)
    assert "cookie" not in seen["headers"]


def test_redirect_is_passed_back_not_followed(proxy, client, mock_url):
    """A 3xx reaches the client with its status and Location; the upstream
    sees one request."""
    rid = new_id()
    response = client.post(proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []}, headers={
        "X-Request-ID": rid, "X-Mock-Status": "302",
        "X-Mock-Header": "Location: " + mock_url + "/v1/elsewhere"})
    assert response.status_code == 302
    assert response.headers["location"] == mock_url + "/v1/elsewhere"
    assert len(upstream_saw(mock_url, rid)) == 1


def test_gzip_answer_reaches_the_client_decoded(proxy, client):
    """A gzip-encoded upstream answer arrives decoded, with a Content-Length
    that matches it and no Content-Encoding."""
    response = client.post(proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []},
                           headers={"X-Mock-Gzip": "1", "Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json()["object"] == "chat.completion"


def test_gzip_stream_reaches_the_client_decoded_event_by_event(proxy, client):
    """A gzip-encoded stream is decoded as it passes, and ends with [DONE]."""
    with client.stream("POST", proxy.url + CHAT,
                       json={"model": "gpt-4.1", "messages": [], "stream": True},
                       headers={"X-Mock-Gzip": "1", "Accept-Encoding": "identity"}) as response:
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith('data: {"id"') for e in events[:-1])


def _peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_large_download_is_never_held_in_memory(mock_url):
    """A 64 MiB answer passes through without the proxy's peak memory growing
    by anything like its size (treq's default would keep every chunk)."""
    with run_proxy(mock_url) as proxy, httpx.Client(timeout=60) as client:
        warm = client.get(proxy.url + "/v1/files/f/content", headers={"X-Mock-Body-Bytes": "1000"})
        assert warm.status_code == 200
        before = _peak_rss(proxy.process.pid)
        received = 0
        with client.stream("GET", proxy.url + "/v1/files/f/content",
                           headers={"X-Mock-Body-Bytes": str(64 * MIB)}) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += len(chunk)
        growth = _peak_rss(proxy.process.pid) - before
    assert received == 64 * MIB
    assert growth < 24 * MIB, f"peak RSS grew by {growth / MIB:.1f} MiB"


def test_upstream_connections_are_kept_alive_and_reused(mock_url):
    """Sequential requests share one pooled upstream connection; concurrent
    streams each get their own, and reuse them afterwards."""
    def accepted() -> int:
        return int(httpx.get(mock_url + "/_mock/stats").json()["connections_accepted"])

    with run_proxy(mock_url) as proxy, httpx.Client(timeout=30) as client:
        before = accepted()
        for _ in range(20):
            assert client.post(proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []}).status_code == 200
        # The stats call itself is one connection; the 20 requests one more.
        assert accepted() - before == 2

        def four_streams(http: httpx.Client) -> None:
            streams = [http.stream("POST", proxy.url + CHAT, headers={"X-Mock-Event-Delay": "0.2"},
                                     json={"model": "gpt-4.1", "messages": [], "stream": True})
                       for _ in range(4)]
            with contextlib.ExitStack() as stack:
                responses = [stack.enter_context(s) for s in streams]
                for response in responses:
                    assert response.read().endswith(b"data: [DONE]\n\n")

        before = accepted()
        four_streams(client)
        opened = accepted() - before - 1
        before = accepted()
        four_streams(client)
        reopened = accepted() - before - 1
    # Four at once: the pooled connection and three new ones; then none new.
    assert opened == 3
    assert reopened == 0
