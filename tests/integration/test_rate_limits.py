"""Rate limits and overload from the upstream: a short Retry-After is waited
out by the proxy; a long one, or one past the retries, reaches the client."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
import pytest
from support import ProxyProcess, run_proxy, upstream_saw

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4.1", "messages": []}


@pytest.fixture(scope="module")
def proxy(mock_url: str) -> Iterator[ProxyProcess]:
    with run_proxy(mock_url, MAX_RETRIES="2", RETRY_AFTER_MAX_SEC="3") as running:
        yield running


def limited_first(times: int, status: int) -> dict[str, str]:
    """Mock controls: the first C{times} answers to this request id are C{status}
    (add the wait with C{X-Mock-Header})."""
    return {"X-Request-ID": "rl-" + uuid.uuid4().hex, "X-Mock-Fail-First": str(times),
            "X-Mock-Fail-Status": str(status)}


@pytest.mark.parametrize("status, wait_header, wait", [
    (429, "Retry-After: 1", 1.0),
    (503, "retry-after-ms: 300", 0.3),
])
def test_short_retry_after_is_absorbed(proxy, mock_url, status, wait_header, wait):
    """A 429 or 503 asking for a wait within RETRY_AFTER_MAX_SEC is waited out
    and retried: the client sees only the success, the wait is logged."""
    headers = {**limited_first(1, status), "X-Mock-Header": wait_header}
    response = httpx.post(proxy.url + CHAT, json=BODY, headers=headers, timeout=30)
    assert response.status_code == 200
    rid = headers["X-Request-ID"]
    assert len(upstream_saw(mock_url, rid)) == 2
    event = proxy.wait_for_event("rate_limit_wait", id=rid)
    assert event["wait_sec"] == wait and event["retry"] == 1 and event["status"] == status
    assert event["level"] == "WARNING"


def test_retry_after_as_an_http_date_is_absorbed(proxy, mock_url):
    headers = {**limited_first(1, 429), "X-Mock-Header": "Retry-After: " + formatdate(usegmt=True)}
    assert httpx.post(proxy.url + CHAT, json=BODY, headers=headers, timeout=30).status_code == 200
    assert len(upstream_saw(mock_url, headers["X-Request-ID"])) == 2


def test_long_retry_after_reaches_the_client_intact(proxy, mock_url):
    """A wait over RETRY_AFTER_MAX_SEC is the client's to make: the 429 is
    passed on at once with its Retry-After."""
    headers = {**limited_first(1, 429), "X-Mock-Header": "Retry-After: 30"}
    response = httpx.post(proxy.url + CHAT, json=BODY, headers=headers, timeout=30)
    assert response.status_code == 429 and response.headers["retry-after"] == "30"
    assert len(upstream_saw(mock_url, headers["X-Request-ID"])) == 1


def test_retry_after_past_the_retries_reaches_the_client(proxy, mock_url):
    """When MAX_RETRIES waits have been spent, the last 429 is the answer."""
    headers = {**limited_first(5, 429), "X-Mock-Header": "Retry-After: 0"}
    response = httpx.post(proxy.url + CHAT, json=BODY, headers=headers, timeout=30)
    assert response.status_code == 429 and response.headers["retry-after"] == "0"
    assert len(upstream_saw(mock_url, headers["X-Request-ID"])) == 3


def test_503_without_retry_after_is_passed_on(proxy, mock_url):
    headers = limited_first(1, 503)
    response = httpx.post(proxy.url + CHAT, json=BODY, headers=headers, timeout=30)
    assert response.status_code == 503
    assert len(upstream_saw(mock_url, headers["X-Request-ID"])) == 1


def test_client_leaving_during_the_wait_cancels_it(proxy, mock_url):
    """A client that gives up while the proxy waits out a Retry-After ends
    the wait: no second request goes upstream."""
    rid = "rl-" + uuid.uuid4().hex
    address = urlsplit(proxy.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        body = json.dumps(BODY).encode()
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nX-Request-ID: %s\r\nX-Mock-Fail-First: 1\r\n"
                     b"X-Mock-Fail-Status: 429\r\nX-Mock-Header: Retry-After: 2\r\n\r\n%s"
                     % (CHAT.encode(), len(body), rid.encode(), body))
        proxy.wait_for_event("rate_limit_wait", id=rid)
    proxy.wait_for_event("client_disconnected", id=rid)
    # A margin past the 2 s wait (not a synchronisation): had the wait gone
    # on, its retry would have reached the mock by now.
    time.sleep(3)
    assert len(upstream_saw(mock_url, rid)) == 1
