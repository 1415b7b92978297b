"""What a client may send, and how slowly: answered early, in JSON, and closed.

Each test drives the daemon over a raw socket, the way a broken or hostile
client would, and checks the answer the proxy gives before (or instead of)
reading what it refuses.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from support import ProxyProcess, run_proxy, upstream_saw, wait_for


def connect(proxy: ProxyProcess) -> socket.socket:
    address = urlsplit(proxy.url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer (status, headers, body by Content-Length) from C{sock}."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer's body"
        body += chunk
    return status, headers, body


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def assert_json_error(body: bytes, code: str) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["type"]
    return error


@pytest.fixture(scope="module")
def limited(mock_url: str) -> Iterator[ProxyProcess]:
    """The daemon with small limits, so that tests stay quick."""
    with run_proxy(mock_url, MAX_REQUEST_BODY_MB="1", HEADER_TIMEOUT="1", REQUEST_TIMEOUT="1",
                   KEEPALIVE_TIMEOUT="2", MAX_HEADER_LINE_BYTES="4096",
                   MAX_HEADER_BYTES="16384", MAX_HEADER_COUNT="20") as running:
        yield running


def test_declared_body_over_the_limit_is_answered_before_it_is_sent(limited, mock_url):
    """A Content-Length over MAX_REQUEST_BODY_MB gets its 413 as soon as the
    head is in (no byte of the body sent), then the connection closes."""
    rid = str(uuid.uuid4())
    with connect(limited) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n"
                     b"X-Request-ID: " + rid.encode() + b"\r\n\r\n")
        status, headers, body = read_answer(sock)
        assert status == 413 and headers["connection"] == "close"
        assert headers["x-request-id"] == rid
        assert_json_error(body, "request_too_large")
        assert wait_for(lambda: closed_by_peer(sock))
    assert upstream_saw(mock_url, rid) == []


def test_expect_continue_over_the_limit_gets_413_not_100(limited):
    """A client that asks before sending (Expect: 100-continue) is told 413,
    never invited to send the body."""
    with connect(limited) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        status, _, body = read_answer(sock)
        assert status == 413
        assert_json_error(body, "request_too_large")


def test_chunked_body_is_answered_the_moment_it_passes_the_limit(limited, mock_url):
    """A chunked upload is answered 413 once it passes the limit, while the
    client has not finished (nor ended) it; the upstream sees nothing."""
    rid = str(uuid.uuid4())
    with connect(limited) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"X-Request-ID: " + rid.encode() + b"\r\n\r\n")
        for _ in range(11):  # 1.1 MB, no terminating chunk
            sock.sendall(b"186a0\r\n" + b"x" * 100_000 + b"\r\n")
        status, _, body = read_answer(sock)
        assert status == 413
        assert_json_error(body, "request_too_large")
    assert upstream_saw(mock_url, rid) == []


def test_big_upload_after_its_413_still_gets_the_answer(limited):
    """A client that sends its whole (refused) body before reading, as most
    do, still reads the 413: the proxy drains instead of resetting."""
    response = httpx.post(limited.url + "/v1/files", content=b"x" * 8_000_000, timeout=30)
    assert response.status_code == 413


@pytest.mark.parametrize("head, status, code", [
    (b"GET /v1/models HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431,
     "request_header_too_large"),
    (b"GET /v1/models?" + b"q" * 100_000 + b" HTTP/1.1\r\n\r\n", 414, "request_line_too_long"),
    (b"GET /v1/models HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 3000)
                                               for i in range(6)) + b"\r\n", 431,
     "request_header_too_large"),
    (b"GET /v1/models HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(21)) + b"\r\n",
     431, "too_many_headers"),
    (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
    (b"GET /v1/models HTTP/1.1\r\nNo colon here\r\n\r\n", 400, "bad_request"),
], ids=["header-line", "request-line", "header-block", "header-count", "request-line-garbage",
        "header-garbage"])
def test_oversized_or_malformed_heads_get_a_json_answer(limited, head, status, code):
    """Heads over a limit get 431 (414 for the request line), malformed ones
    400: always a JSON error and a closed connection, never a silent reset."""
    with connect(limited) as sock:
        sock.sendall(head)
        got, headers, body = read_answer(sock)
        assert got == status and headers["content-type"] == "application/json"
        assert_json_error(body, code)
        assert wait_for(lambda: closed_by_peer(sock))
    limited.wait_for_event("request_refused", status=status, reason=code)


def test_heads_within_the_limits_are_served(limited):
    """The limits leave ordinary requests alone: 19 headers (httpx adds 5)
    of 12 KB in all."""
    headers = {f"x-h{i}": "v" * 800 for i in range(14)}
    assert httpx.get(limited.url + "/v1/models", headers=headers).status_code == 200


def test_trickled_head_is_cut_at_the_header_timeout(limited):
    """A head sent a byte at a time gets 408 once HEADER_TIMEOUT has passed
    since its first byte, although bytes keep coming (the idle timer alone
    would restart on each)."""
    stop = threading.Event()
    with connect(limited) as sock:
        def trickle() -> None:
            for byte in b"GET /v1/models HTTP/1.1\r\nX-Slow: " + b"s" * 1000:
                if stop.wait(0.05):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            status, _, body = read_answer(sock)
        finally:
            stop.set()
            sender.join()
        assert status == 408
        assert_json_error(body, "request_header_timeout")


def test_stalled_upload_is_ended(limited):
    """A body that stops arriving for REQUEST_TIMEOUT gets 408 and the
    connection is closed."""
    with connect(limited) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        status, _, body = read_answer(sock)
        assert status == 408
        assert_json_error(body, "request_body_timeout")
        assert wait_for(lambda: closed_by_peer(sock))


def test_idle_keepalive_connection_is_closed(limited):
    """After its answer, a keep-alive connection left idle for
    KEEPALIVE_TIMEOUT is closed by the proxy."""
    with connect(limited) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock)[0] == 200
        started = time.monotonic()
        assert wait_for(lambda: closed_by_peer(sock))
        # Not at once: it stayed open for reuse first.
        assert time.monotonic() - started > 0.5


def test_slow_reader_of_a_long_stream_is_not_cut(limited):
    """A stream that outlasts every client timeout, read slowly, arrives
    whole: the timeouts govern what the client sends, not what it reads."""
    events, last = 0, ""
    with httpx.stream("POST", limited.url + "/v1/chat/completions",
                      json={"model": "gpt-5", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]},
                      headers={"X-Mock-Events": "40", "X-Mock-Event-Delay": "0.1"},
                      timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events, last = events + 1, line
                time.sleep(0.02)
    assert events >= 40 and last == "data: [DONE]"


def test_connections_past_the_cap_are_closed_and_logged_once(mock_url):
    """Past MAX_CLIENT_CONNECTIONS new connections are closed at once, those
    open keep working, and the episode is logged once (and its end once)."""
    with run_proxy(mock_url, MAX_CLIENT_CONNECTIONS="4") as proxy:
        held = [connect(proxy) for _ in range(4)]
        for sock in held:  # each has been accepted and counted
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(sock)[0] == 200
        for _ in range(3):
            with connect(proxy) as extra:
                assert wait_for(lambda s=extra: closed_by_peer(s))
        held[0].sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(held[0])[0] == 200
        for sock in held:
            sock.close()
        cleared = proxy.wait_for_event("client_connections_limit_cleared")
        assert cleared["refused"] == 3 and cleared["limit"] == 4
        assert len(proxy.events("client_connections_limit_reached")) == 1
        assert httpx.get(proxy.url + "/livez").status_code == 200
