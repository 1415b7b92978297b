"""Bearer-token access and CORS, against the real daemon."""

from __future__ import annotations

import pytest
from support import raw_get, run_proxy, upstream_saw

TOKEN = "s3cret-token-for-tests"
ORIGIN = "http://app.example:3000"


@pytest.fixture(scope="module")
def guarded(mock_url):
    """A proxy with AUTH_TOKEN and ALLOWED_ORIGINS set."""
    with run_proxy(
        mock_url, models="- id: gpt-4.1\n", AUTH_TOKEN=TOKEN, ALLOWED_ORIGINS=ORIGIN + ", http://other.example"
    ) as p:
        yield p


def test_token_required(guarded, client):
    response = client.get(guarded.url + "/v1/models")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    wrong = client.get(guarded.url + "/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    not_bearer = client.get(guarded.url + "/v1/models", headers={"Authorization": TOKEN})
    assert not_bearer.status_code == 401
    right = client.get(guarded.url + "/v1/models", headers={"Authorization": "Bearer " + TOKEN})
    assert right.status_code == 200
    assert right.json()["data"][0]["id"] == "gpt-4.1"


def test_every_other_path_is_guarded(guarded, client):
    for method, path in (("GET", "/"), ("POST", "/v1/chat/completions"), ("GET", "/nope")):
        assert client.request(method, guarded.url + path).status_code == 401, path


def test_health_is_open(guarded, client):
    assert client.get(guarded.url + "/health").status_code == 200
    assert client.get(guarded.url + "/v1/health").status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "//v1/models",
        "/v1/models/",
        "/v1//models",
        "/v1/%6Dodels",
        "/%76%31/models",
        "/health/../v1/models",
        "/v1/health/../models",
        "/health/%2e%2e/v1/models",
        "/./v1/models",
        "/v1/models?/health",
        "/v1/models#/health",
        "/HEALTH/../v1/models",
    ],
)
def test_path_tricks_do_not_bypass_the_token(guarded, target):
    """Without the token no spelling of a guarded path gets past the check
    (not even to a 404, which would reveal what exists)."""
    status, body = raw_get(guarded.url, target)
    assert status == 401 and b"gpt-4.1" not in body, (target, status, body)


def test_preflight_answered_locally_without_token(guarded, client):
    response = client.options(
        guarded.url + "/v1/chat/completions",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "authorization, content-type"


def test_allowed_origin_echoed_on_answers(guarded, client):
    response = client.get(
        guarded.url + "/v1/models", headers={"Origin": ORIGIN, "Authorization": "Bearer " + TOKEN}
    )
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    # Even a refusal carries CORS headers, so the browser can show the error.
    refused = client.get(guarded.url + "/v1/models", headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN


def test_other_origins_get_no_cors_headers(guarded, client):
    response = client.get(
        guarded.url + "/health", headers={"Origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        guarded.url + "/v1/models",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


def test_no_cors_without_allowed_origins(proxy, client):
    """CORS is off unless ALLOWED_ORIGINS is set, and pages from this machine
    still work (same-origin requests carry no CORS headers back)."""
    response = client.get(proxy.url + "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.startswith("access-control-")]
    preflight = client.options(
        proxy.url + "/v1/models", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://attacker.example:8111"])
def test_foreign_pages_cannot_spend_the_key(proxy, client, mock_url, origin):
    """Without a token, a web page elsewhere (or one using DNS rebinding to pose
    as this host) must not get a request through, even one needing no preflight."""
    import uuid

    rid = "origin-" + uuid.uuid4().hex
    response = client.post(
        proxy.url + "/v1/chat/completions",
        content=b'{"model": "gpt-4.1", "messages": []}',
        headers={"Origin": origin, "Content-Type": "text/plain", "X-Request-ID": rid,
                 "Host": "attacker.example:8111"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert upstream_saw(mock_url, rid) == []


@pytest.mark.parametrize("origin, loopback", [
    (b"http://localhost:3000", True), (b"https://127.0.0.1", True), (b"http://[::1]:8080", True),
    (b"http://localhost.evil.example", False), (b"http://127.0.0.1.nip.io", False),
    (b"vscode-webview://x", False), (b"null", False),
])
def test_loopback_origins(origin, loopback):
    from genaiproxy.server.site import is_loopback_origin

    assert is_loopback_origin(origin) is loopback


def test_upstream_vary_merged_with_ours(guarded, client):
    response = client.get(guarded.url + "/v1/health", headers={
        "Origin": ORIGIN, "X-Mock-Header": "Vary: Accept-Encoding"})
    vary = {v.strip() for v in response.headers["vary"].split(",")}
    assert vary == {"Origin", "Accept-Encoding"}
