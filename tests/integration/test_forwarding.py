"""The daemon's endpoints and what reaches the upstream, over real sockets."""

from __future__ import annotations

import json
import uuid

import pytest
from support import BASE_ENV, run_proxy, upstream_saw

KEY = BASE_ENV["GENAI_API_KEY"]
CHAT = "/v1/chat/completions"


def new_id() -> str:
    return "test-" + uuid.uuid4().hex


def test_metadata(proxy, client):
    """GET / names the proxy, its version and upstream, and nothing secret."""
    response = client.get(proxy.url + "/")
    assert response.status_code == 200
    document = response.json()
    assert document["name"] == "genai-proxy"
    assert document["version"]
    assert document["upstream"].startswith("http://127.0.0.1:")
    assert KEY not in response.text


def test_health_probes_upstream_root(proxy, client, mock_url):
    """GET /health asks the upstream's root, with the key, and relays its text."""
    rid = new_id()
    response = client.get(proxy.url + "/health", headers={"X-Request-ID": rid})
    assert response.status_code == 200
    assert response.text == "mock upstream ok"
    [seen] = upstream_saw(mock_url, rid)
    assert seen["path"] == "/"
    assert seen["headers"]["ocp-apim-subscription-key"] == [KEY]


def test_v1_health_is_forwarded(proxy, client, mock_url):
    rid = new_id()
    response = client.get(proxy.url + "/v1/health", headers={"X-Request-ID": rid})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert upstream_saw(mock_url, rid)[0]["path"] == "/v1/health"


def test_models_are_local(proxy, client, mock_url):
    """/v1/models comes from models.yaml, with defaults, and never calls upstream."""
    rid = new_id()
    response = client.get(proxy.url + "/v1/models", headers={"X-Request-ID": rid})
    assert response.status_code == 200
    document = response.json()
    assert document["object"] == "list"
    assert [m["id"] for m in document["data"]] == ["gpt-4.1", "gpt-5"]
    gpt5 = document["data"][1]
    assert gpt5["object"] == "model" and gpt5["owned_by"] == "genai"
    assert isinstance(gpt5["created"], int)
    assert upstream_saw(mock_url, rid) == []


def test_unknown_path_is_json_404(proxy, client):
    # (Unknown paths under /v1/ are forwarded: see test_v1_api.)
    for path in ("/nope", "/v2/models", "/v1", "/v1/", "/health/extra"):
        response = client.get(proxy.url + path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error"


def test_wrong_method_is_json_405(proxy, client):
    for method, path in (("DELETE", "/v1/models"), ("GET", CHAT), ("POST", "/health"), ("PUT", "/")):
        response = client.request(method, proxy.url + path)
        assert response.status_code == 405, (method, path)
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert response.headers["allow"]


def test_headers_sent_upstream(proxy, client, mock_url):
    """The key is injected once; client credentials and hop-by-hop headers are not
    forwarded; other client headers are."""
    rid = new_id()
    response = client.post(
        proxy.url + CHAT,
        json={"model": "gpt-4.1", "messages": []},
        headers={
            "X-Request-ID": rid,
            "Authorization": "Bearer client-token",
            "Ocp-Apim-Subscription-Key": "client-supplied-key",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "per-hop",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "X-Custom": "kept",
            "User-Agent": "test-agent/1",
        },
    )
    assert response.status_code == 200
    [seen] = upstream_saw(mock_url, rid)
    headers = seen["headers"]
    assert headers["ocp-apim-subscription-key"] == [KEY]
    for dropped in ("authorization", "proxy-authorization", "x-hop", "keep-alive", "te"):
        assert dropped not in headers, dropped
    assert headers["x-custom"] == ["kept"]
    assert headers["user-agent"] == ["test-agent/1"]


def test_query_string_and_base_path(mock_url, client):
    """The upstream URL is base + path + query, with single slashes."""
    with run_proxy(mock_url + "/genai/") as prefixed:
        rid = new_id()
        response = client.post(
            prefixed.url + CHAT + "?api-version=2024-10-21&x=a%20b",
            json={"model": "gpt-4.1", "messages": []},
            headers={"X-Request-ID": rid},
        )
        assert response.status_code == 200
        [seen] = upstream_saw(mock_url, rid)
        assert seen["path"] == "/genai/v1/chat/completions"
        assert seen["query"] == "api-version=2024-10-21&x=a%20b"


def test_gpt5_request_is_normalized(proxy, client, mock_url):
    rid = new_id()
    client.post(
        proxy.url + CHAT,
        json={"model": "GPT-5-mini", "messages": [], "max_tokens": 77, "temperature": 0.2},
        headers={"X-Request-ID": rid},
    )
    [seen] = upstream_saw(mock_url, rid)
    body = json.loads(seen["body"])
    assert body["max_completion_tokens"] == 77
    assert "max_tokens" not in body
    assert body["temperature"] == 1


def test_gpt5_stream_asks_for_event_stream(proxy, client, mock_url):
    rid = new_id()
    with client.stream(
        "POST",
        proxy.url + CHAT,
        json={"model": "gpt-5", "messages": [], "stream": True, "max_output_tokens": 5},
        headers={"X-Request-ID": rid, "Accept": "application/json"},
    ) as response:
        response.read()
    [seen] = upstream_saw(mock_url, rid)
    assert seen["headers"]["accept"] == ["text/event-stream"]
    assert json.loads(seen["body"])["max_completion_tokens"] == 5


def test_other_models_pass_byte_for_byte(proxy, client, mock_url):
    rid = new_id()
    raw = b'{ "messages":[],  "model" : "gpt-4.1", "max_tokens": 9, "temperature": 0.3 }'
    client.post(
        proxy.url + CHAT,
        content=raw,
        headers={"X-Request-ID": rid, "Content-Type": "application/json"},
    )
    [seen] = upstream_saw(mock_url, rid)
    assert seen["body"].encode() == raw


def test_non_streaming_answer_passes_through(proxy, client):
    rid = new_id()
    response = client.post(
        proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []}, headers={"X-Request-ID": rid}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-upstream-status"] == "200"
    assert response.headers["x-request-id"] == rid
    assert response.json()["object"] == "chat.completion"


def test_upstream_error_status_passes_through(proxy, client):
    """An error status is passed on with its headers; a 429 asking for a
    wait over RETRY_AFTER_MAX_SEC keeps its Retry-After for the client."""
    response = client.post(
        proxy.url + CHAT,
        json={"model": "gpt-4.1", "messages": []},
        headers={"X-Mock-Status": "429", "X-Mock-Header": "Retry-After: 30"},
    )
    assert response.status_code == 429
    assert response.headers["x-upstream-status"] == "429"
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"]["message"] == "mock error 429"


def test_non_json_answer_keeps_its_type(proxy, client):
    response = client.post(
        proxy.url + CHAT,
        json={"model": "gpt-4.1", "messages": []},
        headers={"X-Mock-Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text


def test_request_id_reused_in_any_case(proxy, client, mock_url):
    """A client's X-Request-ID, whatever its header case, is the id everywhere."""
    rid = new_id()
    response = client.post(
        proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []}, headers={"x-ReQuEsT-iD": rid}
    )
    assert response.headers["x-request-id"] == rid
    assert upstream_saw(mock_url, rid)
    proxy.wait_for_event("response", id=rid)
    assert proxy.events("request") and [e for e in proxy.events("request") if e["id"] == rid]


def test_request_id_generated(proxy, client):
    first = client.get(proxy.url + "/v1/models").headers["x-request-id"]
    second = client.get(proxy.url + "/v1/models").headers["x-request-id"]
    assert first != second
    assert uuid.UUID(first) and uuid.UUID(second)


@pytest.mark.parametrize("credentials", [None, ("alice", "pw-s3cret")])
def test_http_upstream_through_https_proxy(mock_url, client, credentials):
    """With HTTPS_PROXY set, an http upstream is reached through the proxy
    (absolute-URI form; here the mock plays the forward proxy and records
    it). Credentials in the proxy's URL go with every request as
    Proxy-Authorization (Basic), and the password appears in no log line."""
    import base64

    proxy_url = mock_url
    if credentials:
        proxy_url = mock_url.replace("http://", f"http://{credentials[0]}:{credentials[1]}@")
    with run_proxy("http://upstream.invalid:9/genai", HTTPS_PROXY=proxy_url) as proxied:
        rid = new_id()
        response = client.post(proxied.url + CHAT, json={"model": "gpt-4.1", "messages": []},
                               headers={"X-Request-ID": rid})
        assert response.status_code == 200
        [seen] = upstream_saw(mock_url, rid)
        assert seen["path"] == "http://upstream.invalid:9/genai/v1/chat/completions"
        assert seen["headers"]["ocp-apim-subscription-key"] == [KEY]
        assert proxied.wait_for_event("startup_config")["PROXY_ENABLED"] is True
        if credentials is None:
            assert "proxy-authorization" not in seen["headers"]
            return
        expected = "Basic " + base64.b64encode(":".join(credentials).encode()).decode("ascii")
        assert seen["headers"]["proxy-authorization"] == [expected]
        proxied.wait_for_event("response", id=rid)
        assert not [line for line in proxied.lines if credentials[1] in line or expected in line]


def test_malformed_request_id_replaced_everywhere(proxy, client, mock_url):
    """A client id the proxy will not use is not sent upstream either: the
    upstream, the answer and the logs share one id."""
    response = client.post(proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []},
                           headers={"X-Request-ID": "x" * 300})
    rid = response.headers["x-request-id"]
    assert rid != "x" * 300
    [seen] = upstream_saw(mock_url, rid)
    assert seen["headers"]["x-request-id"] == [rid]


def test_deeply_nested_json_is_forwarded_not_a_crash(proxy, client):
    body = b'{"model": "gpt-4.1", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post(proxy.url + CHAT, content=body, headers={"Content-Type": "application/json"})
    # The upstream's own verdict comes back; the proxy itself did not choke.
    assert response.status_code == 400
    assert response.headers["x-upstream-status"] == "400"
    assert response.json()["error"]["message"]


def test_open_health_paths_carry_no_query_or_body(proxy, client, mock_url):
    rid = new_id()
    client.request("GET", proxy.url + "/v1/health?secret=1", content=b"payload",
                   headers={"X-Request-ID": rid})
    [seen] = upstream_saw(mock_url, rid)
    assert seen["query"] == "" and seen["body"] == ""


def test_head_keeps_the_upstream_length(proxy, client):
    response = client.head(proxy.url + "/health")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len("mock upstream ok"))


def test_upstream_hop_headers_not_returned(proxy, client):
    """Hop-by-hop headers and CORS decisions of the upstream stay with the
    upstream; end-to-end headers pass.  (Headers the upstream names in its
    own Connection header are not removed: Twisted's client keeps that header
    to itself; see docs/reference/endpoints.md.)"""
    response = client.get(proxy.url + "/v1/health", headers=[
        ("X-Mock-Header", "Keep-Alive: timeout=5"), ("X-Mock-Header", "Proxy-Authenticate: Basic"),
        ("X-Mock-Header", "Upgrade: h2c"), ("X-Mock-Header", "Trailer: X-Checksum"),
        ("X-Mock-Header", "X-Kept: yes"), ("X-Mock-Header", "Access-Control-Allow-Origin: *")])
    assert response.status_code == 200
    for hop in ("keep-alive", "proxy-authenticate", "upgrade", "trailer", "access-control-allow-origin"):
        assert hop not in response.headers
    assert "content-encoding" not in response.headers
    assert response.headers["x-kept"] == "yes"


def test_upstream_request_id_kept_aside(proxy, client):
    """The proxy's id stays in X-Request-ID; the upstream's own goes in
    X-Upstream-Request-ID."""
    rid = new_id()
    response = client.get(proxy.url + "/v1/health", headers={
        "X-Request-ID": rid, "X-Mock-Header": "x-request-id: req_upstream_42"})
    assert response.headers["x-request-id"] == rid
    assert response.headers["x-upstream-request-id"] == "req_upstream_42"
