"""Several upstreams behind one proxy (issue 12), over real sockets: routing
by model, aliases, each upstream's own key, fallbacks, /v1/models and
/health.  Every upstream is a running mock that answers 401 to a request
without its own key (``--require-header``); reloads and load errors are in
test_upstreams_reload.py."""

from __future__ import annotations

import contextlib
import json
import uuid
from types import SimpleNamespace

import httpx
import pytest
from support import BASE_ENV, free_port, run_mock_upstream, run_proxy, upstream_saw

DEFAULT_KEY = BASE_ENV["GENAI_API_KEY"]
EU_KEY = "sk-eu-7d1e0c5a9b-secret"
DOWN_KEY = "sk-down-41f2aa70c3-secret"
KEYS = {  # upstream -> (its header, its key)
    "default": ("Ocp-Apim-Subscription-Key", DEFAULT_KEY),
    "eu": ("Api-Key", EU_KEY),
    "down": ("X-Down-Key", DOWN_KEY),
}
CHAT = "/v1/chat/completions"

MODELS = """\
upstreams:
  eu:
    base_url: {eu}
    subscription_name: Api-Key
    api_key_env: GENAI_API_KEY_EU
  local:                  # like Ollama: no key
    base_url: {local}
    subscription_name: ""
  down:                   # answers 503 to everything under /v1
    base_url: {down}
    subscription_name: X-Down-Key
    api_key_env: GENAI_API_KEY_DOWN
  closed:                 # nothing listens there
    base_url: http://127.0.0.1:{closed}
    max_retries: 0
  slow:                   # never answers under /v1
    base_url: {slow}
    request_timeout: 0.5
    max_retries: 0
models:
  - id: gpt-5
  - id: eu-model
    upstream: eu
  - id: llama3.2
    upstream: local
    owned_by: ollama
  - id: fast
    upstream: local
    upstream_model: gpt-5-mini
  - id: gpt-5-cheap
    upstream: local
    upstream_model: llama3.2:1b
  - id: gpt-5@eu
    upstream: eu
    upstream_model: gpt-5
    hidden: true
  - id: flaky
    upstream: down
    upstream_model: gpt-5
    fallbacks: [gpt-5@eu]
  - id: refused
    upstream: closed
    fallbacks: [llama3.2]
  - id: stuck
    upstream: slow
    fallbacks: gpt-5@eu
  - id: doomed
    upstream: down
    fallbacks: [dead-end]
  - id: dead-end
    upstream: closed
    hidden: true
  - id: breaks
    upstream: eu
    fallbacks: [llama3.2]
"""
VISIBLE = ["gpt-5", "eu-model", "llama3.2", "fast", "gpt-5-cheap", "flaky", "refused", "stuck",
           "doomed", "breaks"]


def required(upstream: str) -> tuple[str, ...]:
    """The mock option under which it wants the key of C{upstream}."""
    header, key = KEYS[upstream]
    return ("--require-header", f"{header}: {key}")


@pytest.fixture(scope="module")
def farm():
    """The proxy in front of five upstreams (one a closed port) and the
    URLs of the running ones by name."""
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, options in (("default", required("default")), ("eu", required("eu")),
                              ("local", ()), ("down", (*required("down"), "--fail-status", "503")),
                              ("slow", ("--hang",))):
            urls[name], _ = stack.enter_context(run_mock_upstream("--event-delay", "0.02", *options))
        models = MODELS.format(closed=free_port(), **urls)
        proxy = stack.enter_context(run_proxy(urls["default"], models=models,
                                              GENAI_API_KEY_EU=EU_KEY, GENAI_API_KEY_DOWN=DOWN_KEY))
        yield SimpleNamespace(proxy=proxy, urls=urls)


def new_id() -> str:
    return "several-" + uuid.uuid4().hex


def post(farm, client, path, body):
    """POST C{body} through the proxy; return (response, request id)."""
    rid = new_id()
    response = client.post(farm.proxy.url + path, json=body, headers={"X-Request-ID": rid})
    return response, rid


def only_at(farm, upstream, rid):
    """The one request C{rid} that reached C{upstream}, after checking that
    no other running upstream got it."""
    for name, url in farm.urls.items():
        if name != upstream:
            assert upstream_saw(url, rid) == [], f"{rid} reached {name}"
    [seen] = upstream_saw(farm.urls[upstream], rid)
    return seen


BODIES = {
    CHAT: {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"input": "hi"},
    "/v1/embeddings": {"input": "hi"},
    "/v1/completions": {"prompt": "hi"},
}


@pytest.mark.parametrize("path", list(BODIES))
def test_routing_by_model(farm, client, path):
    """The body's model picks the upstream for every JSON API: a model of
    the file goes to its upstream, with that upstream's key; a model not in
    the file goes to default with its name unchanged.  Each answer is the
    upstream's (a mock without the right key would have answered 401)."""
    for model, upstream in (("eu-model", "eu"), ("llama3.2", "local"),
                            ("not-in-the-file", "default"), ("gpt-5", "default")):
        response, rid = post(farm, client, path, {"model": model, **BODIES[path]})
        assert response.status_code == 200, (model, response.text)
        seen = only_at(farm, upstream, rid)
        assert seen["path"] == path and json.loads(seen["body"])["model"] == model
        request = farm.proxy.wait_for_event("request", id=rid)
        assert request["upstream_name"] == upstream and request["upstream"].startswith(
            farm.urls[upstream])
        assert farm.proxy.wait_for_event("response", id=rid)["upstream_name"] == upstream


def test_other_v1_paths_go_to_default(farm, client):
    """Any other /v1 path (here /v1/files) goes to default, even when its
    body names a model routed elsewhere."""
    response, rid = post(farm, client, "/v1/files", {"model": "eu-model"})
    assert response.status_code == 200 and response.json()["object"] == "mock.echo"
    assert only_at(farm, "default", rid)["path"] == "/v1/files"
    rid = new_id()
    assert client.get(farm.proxy.url + "/v1/files/file-1", headers={"X-Request-ID": rid}).is_success
    assert only_at(farm, "default", rid)["path"] == "/v1/files/file-1"


def test_alias_is_rewritten_for_the_upstream(farm, client):
    """An alias reaches its upstream under upstream_model; the answer's model
    is what the upstream wrote; the gpt-5 rules follow the name sent."""
    response, rid = post(farm, client, CHAT, {"model": "fast", "max_tokens": 50, "temperature": 0.2,
                                              **BODIES[CHAT]})
    assert response.status_code == 200
    assert response.json()["model"] == "gpt-5-mini"
    sent = json.loads(only_at(farm, "local", rid)["body"])
    assert sent["model"] == "gpt-5-mini" and sent["max_completion_tokens"] == 50
    assert "max_tokens" not in sent and sent["temperature"] == 1
    # A gpt-5 name on the client's side, another model upstream: no gpt-5 rules.
    response, rid = post(farm, client, CHAT, {"model": "gpt-5-cheap", "max_tokens": 50,
                                              "temperature": 0.2, **BODIES[CHAT]})
    assert response.json()["model"] == "llama3.2:1b"
    sent = json.loads(only_at(farm, "local", rid)["body"])
    assert sent == {"model": "llama3.2:1b", "max_tokens": 50, "temperature": 0.2, **BODIES[CHAT]}
    # A hidden entry is routable, and renames too.
    response, rid = post(farm, client, "/v1/responses", {"model": "gpt-5@eu", "input": "hi"})
    assert response.status_code == 200 and response.json()["model"] == "gpt-5"
    assert json.loads(only_at(farm, "eu", rid)["body"])["model"] == "gpt-5"


def test_alias_kept_when_the_usage_question_is_refused(farm, client):
    """An upstream that refuses the stream_options the proxy added is asked
    again without them, still under upstream_model and the gpt-5 rules."""
    rid = new_id()
    body = {"model": "fast", "stream": True, "max_tokens": 50, **BODIES[CHAT]}
    with client.stream("POST", farm.proxy.url + CHAT, json=body, headers={
            "X-Request-ID": rid, "X-Mock-No-Stream-Options": "1"}) as response:
        assert response.status_code == 200
        assert [line for line in response.iter_lines() if line][-1] == "data: [DONE]"
    farm.proxy.wait_for_event("stream_usage_refused", id=rid)
    asked, again = (json.loads(seen["body"]) for seen in upstream_saw(farm.urls["local"], rid))
    assert asked["stream_options"] == {"include_usage": True}
    assert again == {"model": "gpt-5-mini", "stream": True, "max_completion_tokens": 50,
                     **BODIES[CHAT]}


def test_no_key_goes_to_another_upstream(farm, client):
    """Every request an upstream received carries its own key and no other
    upstream's header or key; the keyless upstream gets no key header; no
    key is ever in the proxy's log."""
    for model in ("eu-model", "llama3.2", "gpt-5", "flaky", "doomed"):
        post(farm, client, CHAT, {"model": model, **BODIES[CHAT]})
    client.get(farm.proxy.url + "/health")
    for name, url in farm.urls.items():
        received = httpx.get(url + "/_mock/requests").json()
        assert received, name
        for seen in received:
            headers = seen["headers"]
            for other, (header, key) in KEYS.items():
                values = [v for vs in headers.values() for v in vs]
                if other == name:
                    assert headers[header.lower()] == [key]
                else:
                    assert header.lower() not in headers and key not in values, (name, seen)
    log = "\n".join(farm.proxy.lines)
    for _, key in KEYS.values():
        assert key not in log


def test_fallback_on_503(farm, client):
    """A 503 from the first upstream sends the request (plain or streamed) on
    to the fallback under its own name and key; the hop is logged and the
    answer says which upstreams were tried."""
    response, rid = post(farm, client, CHAT, {"model": "flaky", **BODIES[CHAT]})
    assert response.status_code == 200
    assert response.headers["x-upstreams-tried"] == "down (status 503), eu"
    assert json.loads(upstream_saw(farm.urls["down"], rid)[0]["body"])["model"] == "gpt-5"
    [seen] = upstream_saw(farm.urls["eu"], rid)
    assert json.loads(seen["body"])["model"] == "gpt-5"
    event = farm.proxy.wait_for_event("fallback", id=rid)
    assert event["model"] == "gpt-5@eu" and event["reason"] == "status 503"
    assert event["upstream_name"] == "eu" and event["tried"] == ["down (status 503)"]
    assert farm.proxy.wait_for_event("response", id=rid)["upstream_name"] == "eu"
    # The hop that failed is counted, though the client never saw it.
    metrics = client.get(farm.proxy.url + "/metrics").text
    assert 'genai_proxy_upstream_failures_total{kind="status_503",upstream="down"}' in metrics

    rid = new_id()
    with client.stream("POST", farm.proxy.url + CHAT, headers={"X-Request-ID": rid},
                       json={"model": "flaky", "stream": True, **BODIES[CHAT]}) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["x-upstreams-tried"] == "down (status 503), eu"
        assert [line for line in streamed.iter_lines() if line][-1] == "data: [DONE]"
    assert farm.proxy.wait_for_event("streaming_end", id=rid)["upstream_name"] == "eu"


def test_fallback_on_connection_refused(farm, client):
    """An upstream whose port is closed: the request goes to the fallback."""
    response, rid = post(farm, client, "/v1/embeddings", {"model": "refused", "input": "hi"})
    assert response.status_code == 200
    assert response.headers["x-upstreams-tried"] == "closed (connect_error), local"
    assert json.loads(only_at(farm, "local", rid)["body"])["model"] == "llama3.2"
    event = farm.proxy.wait_for_event("fallback", id=rid)
    assert event["reason"] == "connect_error" and event["upstream_name"] == "local"


def test_fallback_on_timeout(farm, client):
    """An upstream that never answers times out (its own request_timeout)
    and the request goes to the fallback."""
    response, rid = post(farm, client, CHAT, {"model": "stuck", **BODIES[CHAT]})
    assert response.status_code == 200
    assert response.headers["x-upstreams-tried"] == "slow (read_timeout), eu"
    assert len(upstream_saw(farm.urls["slow"], rid)) == 1  # max_retries: 0
    assert json.loads(upstream_saw(farm.urls["eu"], rid)[0]["body"])["model"] == "gpt-5"
    assert farm.proxy.wait_for_event("fallback", id=rid)["reason"] == "read_timeout"


def test_every_hop_failing_names_every_upstream(farm, client):
    """When the last fallback fails too, the 502 names each upstream tried
    and why."""
    response, rid = post(farm, client, CHAT, {"model": "doomed", **BODIES[CHAT]})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert message.endswith("; upstreams tried: down (status 503), closed (connect_error)")
    assert response.headers["x-upstreams-tried"] == "down (status 503), closed"
    final = farm.proxy.wait_for_event("final_error", id=rid)
    assert final["error"]["message"] == message


def test_no_fallback_once_a_stream_started(farm, client):
    """A stream the upstream breaks mid-way stays broken for the client: the
    fallback never gets the request."""
    rid = new_id()
    seen = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", farm.proxy.url + CHAT,
                           headers={"X-Request-ID": rid, "X-Mock-Drop-After": "2"},
                           json={"model": "breaks", "stream": True, **BODIES[CHAT]}) as response:
            assert response.status_code == 200
            seen.extend(response.iter_lines())
    assert "data: [DONE]" not in seen
    assert farm.proxy.wait_for_event("stream_broken", id=rid)["upstream_name"] == "eu"
    assert upstream_saw(farm.urls["local"], rid) == []
    assert all(event["id"] != rid for event in farm.proxy.events("fallback"))


def test_models_lists_visible_models_only(farm, client):
    """/v1/models lists the visible models without their routing keys; a
    hidden one still answers on /v1/models/{id}."""
    data = client.get(farm.proxy.url + "/v1/models").json()["data"]
    assert [m["id"] for m in data] == VISIBLE
    for model in data:
        assert not {"upstream", "upstream_model", "hidden", "fallbacks"} & model.keys(), model
    assert data[2]["owned_by"] == "ollama"
    hidden = client.get(farm.proxy.url + "/v1/models/gpt-5@eu")
    assert hidden.status_code == 200
    assert hidden.json() == {"id": "gpt-5@eu", "object": "model", "owned_by": "genai",
                             "created": hidden.json()["created"]}


def test_health_names_a_failing_upstream(farm, client):
    """/health probes every upstream and answers 502 when one is down,
    naming each (the closed port with its error)."""
    response = client.get(farm.proxy.url + "/health")
    assert response.status_code == 502
    document = response.json()
    assert document["status"] == "failing"
    entries = {entry["name"]: entry for entry in document["upstreams"]}
    assert list(entries) == ["default", "eu", "local", "down", "closed", "slow"]
    assert entries["closed"]["ok"] is False and entries["closed"]["error"]["type"] == "connect_error"
    for name in ("default", "eu", "local", "down", "slow"):
        assert entries[name]["ok"] is True and entries[name]["status"] == 200, entries[name]
        assert entries[name]["url"] == farm.urls[name]


def test_health_of_upstreams_that_all_answer(client):
    """/health answers 200 with one entry per upstream when all answer, each
    probed with its own key."""
    with run_mock_upstream(*required("default")) as (default, _), \
            run_mock_upstream(*required("eu")) as (eu, _), run_mock_upstream() as (local, _):
        models = (f"upstreams:\n  eu: {{base_url: '{eu}', subscription_name: Api-Key,"
                  f" api_key_env: GENAI_API_KEY_EU}}\n  local: {{base_url: '{local}'}}\n"
                  "models: [{id: a, upstream: eu}]\n")
        with run_proxy(default, models=models, GENAI_API_KEY_EU=EU_KEY) as proxy:
            response = client.get(proxy.url + "/health")
        assert response.status_code == 200
        document = response.json()
        assert document["status"] == "ok"
        assert [(e["name"], e["url"], e["status"], e["ok"]) for e in document["upstreams"]] == [
            ("default", default, 200, True), ("eu", eu, 200, True), ("local", local, 200, True)]
        [probe] = httpx.get(eu + "/_mock/requests").json()
        assert probe["path"] == "/" and probe["headers"]["api-key"] == [EU_KEY]
        assert "api-key" not in httpx.get(local + "/_mock/requests").json()[0]["headers"]


def test_mock_requires_its_header(client):
    """The mock's --require-header: a request under /v1 without that exact
    value is refused with an OpenAI-style 401; the root is not guarded."""
    with run_mock_upstream(*required("eu")) as (url, _):
        chat = {"model": "m", **BODIES[CHAT]}
        assert client.post(url + CHAT, json=chat, headers={"Api-Key": EU_KEY}).status_code == 200
        for headers in ({}, {"Api-Key": EU_KEY + "x"}, {"Other": EU_KEY}):
            refused = client.post(url + CHAT, json=chat, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
        assert client.get(url + "/").status_code == 200
