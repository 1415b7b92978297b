"""The rest of /v1: model lookups, the Responses API, passthrough paths,
GENAI_API_VERSION, and client-visible error semantics."""

from __future__ import annotations

import uuid

import pytest
from support import raw_get, run_proxy, upstream_saw


def new_id() -> str:
    return "v1-" + uuid.uuid4().hex


def test_model_lookup_is_local(proxy, client, mock_url):
    rid = new_id()
    response = client.get(proxy.url + "/v1/models/gpt-5", headers={"X-Request-ID": rid})
    assert response.status_code == 200
    assert response.json() == {"id": "gpt-5", "object": "model", "owned_by": "genai",
                               "created": response.json()["created"]}
    assert upstream_saw(mock_url, rid) == []
    missing = client.get(proxy.url + "/v1/models/no-such-model")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "model_not_found" and "no-such-model" in error["message"]


def test_model_ids_with_slashes(mock_url, client):
    with run_proxy(mock_url, models="- id: org/model-a\n") as p:
        assert client.get(p.url + "/v1/models/org/model-a").json()["id"] == "org/model-a"


@pytest.fixture(scope="module")
def azure_classic(mock_url):
    with run_proxy(mock_url, GENAI_API_VERSION="2024-10-21") as p:
        yield p


def test_api_version_added(azure_classic, client, mock_url):
    rid = new_id()
    client.post(azure_classic.url + "/v1/chat/completions", json={"model": "gpt-4.1", "messages": []},
                headers={"X-Request-ID": rid})
    assert upstream_saw(mock_url, rid)[0]["query"] == "api-version=2024-10-21"
    rid = new_id()
    client.post(azure_classic.url + "/v1/chat/completions?x=1&api-version=2025-01-01",
                json={"model": "gpt-4.1", "messages": []}, headers={"X-Request-ID": rid})
    assert upstream_saw(mock_url, rid)[0]["query"] == "x=1&api-version=2025-01-01"
    assert azure_classic.wait_for_event("startup_config")["GENAI_API_VERSION"] == "2024-10-21"


@pytest.mark.parametrize("target", [
    "/v1/../admin", "/v1/%2e%2e/admin", "/v1/files/%2E%2E/%2E%2E/admin", "/v1/files%2F..%2Fadmin",
    "/v1//admin",
])
def test_passthrough_refuses_paths_leaving_v1(proxy, target):
    status, body = raw_get(proxy.url, target)
    assert status == 404, (target, status, body)


def test_large_upload_streamed_through_intact(proxy, client, mock_url):
    """A multi-megabyte upload reaches the upstream byte for byte (spooled by
    the server, streamed from disk), with its method, path and query."""
    import hashlib

    body = bytes(range(256)) * (5 * 4096)  # 5 MiB
    rid = new_id()
    response = client.post(
        proxy.url + "/v1/audio/transcriptions?language=nl", content=body,
        headers={"Content-Type": "application/octet-stream", "X-Request-ID": rid})
    assert response.status_code == 200
    echo = response.json()
    assert echo["path"] == "/v1/audio/transcriptions" and echo["query"] == "language=nl"
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    logged = proxy.wait_for_event("request", id=rid)
    assert logged["body_length"] == len(body) and "body" not in logged


def test_large_upload_is_sent_whole_again_on_retry(proxy, client):
    """When the upstream drops the first attempt, the retry streams the
    spooled upload again from its first byte."""
    import hashlib

    body = bytes(range(256)) * 4096  # 1 MiB: spooled to a file by the server
    rid = new_id()
    response = client.post(
        proxy.url + "/v1/files", content=body,
        headers={"Content-Type": "application/octet-stream", "X-Request-ID": rid,
                 "X-Mock-Fail-First": "1"})
    assert response.status_code == 200
    echo = response.json()
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert [e["retry"] for e in proxy.events("retry") if e["id"] == rid] == [1]


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/responses/resp_1/input_items?limit=5"), ("DELETE", "/v1/responses/resp_1"),
    ("POST", "/v1/moderations"), ("GET", "/v1/files"), ("POST", "/v1/images/generations"),
])
def test_other_v1_paths_forwarded(proxy, client, method, path):
    response = client.request(method, proxy.url + path, content=b"{}" if method == "POST" else None)
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == method and echo["path"] == path.split("?")[0]
    assert response.headers["x-upstream-status"] == "200"


def test_passthrough_needs_the_token(mock_url, client):
    with run_proxy(mock_url, AUTH_TOKEN="tok") as guarded:
        assert client.post(guarded.url + "/v1/embeddings", json={}).status_code == 401


def test_gpt5_responses_normalized(proxy, client, mock_url):
    import json

    rid = new_id()
    client.post(proxy.url + "/v1/responses", headers={"X-Request-ID": rid},
                json={"model": "gpt-5", "input": "x", "max_tokens": 50, "temperature": 0.1})
    body = json.loads(upstream_saw(mock_url, rid)[0]["body"])
    assert body["max_output_tokens"] == 50 and "max_tokens" not in body and body["temperature"] == 1


def test_responses_stream_bytes_unchanged(proxy, client, mock_url):
    """SSE events (event: and data: lines) reach the client byte for byte."""
    import httpx

    body = {"model": "gpt-4.1", "input": "x", "stream": True}
    direct = httpx.post(mock_url + "/v1/responses", json=body).content
    proxied = client.post(proxy.url + "/v1/responses", json=body).content

    def without_varying_fields(raw: bytes) -> bytes:
        import re
        return re.sub(rb'"(id|item_id|created_at|completed_at)": ?("[^"]*"|\d+)', b"", raw)

    assert b"event: response.completed\n" in proxied
    assert without_varying_fields(proxied) == without_varying_fields(direct)


def test_body_over_the_limit_is_413(mock_url, client):
    """Bodies over MAX_REQUEST_BODY_MB are neither kept nor forwarded."""
    with run_proxy(mock_url, MAX_REQUEST_BODY_MB="1") as p:
        rid = new_id()
        response = client.post(p.url + "/v1/audio/transcriptions", content=b"x" * 1_500_000,
                               headers={"X-Request-ID": rid})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
        assert upstream_saw(mock_url, rid) == []

        def chunks():
            for _ in range(15):
                yield b"y" * 100_000

        # Without a Content-Length (chunked upload) the limit holds as well.
        chunked = client.post(p.url + "/v1/files", content=chunks(), headers={"X-Request-ID": rid})
        assert chunked.status_code == 413
        small = client.post(p.url + "/v1/files", content=b"z" * 900_000)
        assert small.status_code == 200 and small.json()["body_bytes"] == 900_000


def test_small_json_answer_on_other_paths_is_read_whole(proxy, client):
    """A small JSON answer on a passthrough path (embeddings, moderations,
    files, ...) is read whole: it reaches the client with its length, and is
    logged as a response with its body."""
    rid = new_id()
    response = client.post(proxy.url + "/v1/moderations", json={"input": "hi"},
                           headers={"X-Request-ID": rid})
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    assert "transfer-encoding" not in response.headers
    logged = proxy.wait_for_event("response", id=rid)
    assert logged["body"]["object"] == "mock.echo"
    assert not [e for e in proxy.events("streaming_start") if e["id"] == rid]


def test_empty_patch_announces_its_empty_body(proxy, client, mock_url):
    """A PATCH without a body reaches the upstream with Content-Length: 0,
    as POST and PUT do."""
    rid = new_id()
    assert client.patch(proxy.url + "/v1/files/f1", headers={"X-Request-ID": rid}).status_code == 200
    [seen] = upstream_saw(mock_url, rid)
    assert seen["method"] == "PATCH" and seen["headers"]["content-length"] == ["0"]
