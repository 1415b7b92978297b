"""The rest of /v1: model lookups, the Responses API, passthrough paths,
GENAI_API_VERSION, and client-visible error semantics."""

from __future__ import annotations

import uuid

import pytest

from conftest import upstream_saw
from support import run_proxy


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
    from test_access import raw_get

    status, body = raw_get(proxy.url, target)
    assert status == 404, (target, status, body)
