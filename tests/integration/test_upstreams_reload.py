"""Several upstreams (issue 12) across reloads of models.yaml, over real
sockets: upstreams added and removed while a stream is open, files with a
mistake that keep the last good one in service, and keys read from a file
and rotated."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from support import BASE_ENV, free_port, run_mock_upstream, run_proxy, upstream_saw

DEFAULT_KEY = ("Ocp-Apim-Subscription-Key", BASE_ENV["GENAI_API_KEY"])
X_KEY = ("X-Key", "sk-x-5e0b2f77c1-secret")
Y_KEY = ("Y-Key", "sk-y-90c4d13a6e-secret")
EU_KEY = ("Api-Key", "sk-eu-3a8f6b21d4-secret")
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def requiring(key: tuple[str, str]):
    return run_mock_upstream("--require-header", f"{key[0]}: {key[1]}", "--event-delay", "0.02")


def upstream(name: str, url: str, key: tuple[str, str], variable: str) -> str:
    return (f"  {name}:\n    base_url: {url}\n    subscription_name: {key[0]}\n"
            f"    api_key_env: {variable}\n")


def rewrite(proxy, text: str) -> None:
    """Replace models.yaml in one step and have the proxy read it now."""
    path = proxy.workdir / "models.yaml"
    spare = path.with_suffix(".new")
    spare.write_text(text)
    os.replace(spare, path)
    proxy.process.send_signal(signal.SIGHUP)


def chat(client, proxy, model: str):
    rid = "reload-" + uuid.uuid4().hex
    response = client.post(proxy.url + CHAT, json={"model": model, "messages": MESSAGES},
                           headers={"X-Request-ID": rid})
    return response, rid


def sent_model(url: str, rid: str) -> str:
    [seen] = upstream_saw(url, rid)
    return json.loads(seen["body"])["model"]


def accepted(url: str) -> int:
    """Connections the mock at C{url} accepted so far (this one included)."""
    return httpx.get(url + "/_mock/stats").json()["connections_accepted"]


def test_reload_swaps_upstreams_under_an_open_stream(client):
    """A reload that removes upstream x (and adds y) while a stream is open
    on x: the stream finishes whole, y's model goes to y from then on, and
    x's model, no longer in the file, goes to default unchanged."""
    with requiring(DEFAULT_KEY) as (default, _), requiring(X_KEY) as (x, _), \
            requiring(Y_KEY) as (y, _):
        first = ("upstreams:\n" + upstream("x", x, X_KEY, "X_KEY")
                 + "models:\n  - {id: x-model, upstream: x}\n")
        env = {"X_KEY": X_KEY[1], "Y_KEY": Y_KEY[1]}
        with run_proxy(default, models=first, **env) as proxy:
            rid = "reload-stream-" + uuid.uuid4().hex
            body = {"model": "x-model", "stream": True, "messages": MESSAGES}
            with client.stream("POST", proxy.url + CHAT, json=body, headers={
                    "X-Request-ID": rid, "X-Mock-Events": "10", "X-Mock-Event-Delay": "0.2"}) as stream:
                assert stream.status_code == 200
                lines = stream.iter_lines()
                seen = [next(line for line in lines if line.startswith("data: "))]
                rewrite(proxy, "upstreams:\n" + upstream("y", y, Y_KEY, "Y_KEY")
                        + "models:\n  - {id: y-model, upstream: y}\n")
                loaded = proxy.wait_for_event("models_loaded", upstreams=["y"])
                response, y_rid = chat(client, proxy, "y-model")
                assert response.status_code == 200 and sent_model(y, y_rid) == "y-model"
                response, x_rid = chat(client, proxy, "x-model")
                assert response.status_code == 200 and sent_model(default, x_rid) == "x-model"
                assert upstream_saw(x, x_rid) == [] and upstream_saw(y, x_rid) == []
                seen.extend(line for line in lines if line.startswith("data: "))
        assert seen[-1] == "data: [DONE]"
        assert sum('"content"' in line for line in seen) == 10
        end = next(e for e in proxy.events("streaming_end") if e["id"] == rid)
        assert end["upstream_name"] == "x"
        # The new file was in service before the stream ended.
        events = proxy.events()
        assert events.index(loaded) < events.index(end)
        names = [[u["name"] for u in e["upstreams"]] for e in proxy.events("upstreams_in_service")]
        assert names == [["default", "x"], ["default", "y"]]


GOOD = "models:\n  - {id: eu-model, upstream: eu}\n  - {id: gpt-5}\n"
# Each mistake, as a file after the good upstreams section, and what the
# proxy says of it.
BAD_FILES = {
    "inline key": (
        "  inline: {base_url: 'http://127.0.0.1:9', subscription_name: Api-Key,"
        " api_key: sk-inline-77b1c9e0f2-secret}\n" + GOOD,
        "upstream 'inline': a key must not be written in models.yaml (api_key)"),
    "unknown upstream": (GOOD.replace("upstream: eu", "upstream: us"),
                         "model 'eu-model': upstream 'us' is not defined under 'upstreams'"),
    "upstreams as a list": (GOOD.replace("upstream: eu", "upstream: [eu]"),
                            "model 'eu-model': upstream must be the name of one upstream"),
    "duplicate id": (GOOD + "  - {id: eu-model}\n", "model id 'eu-model' appears twice"),
    "fallback cycle": (GOOD.replace("{id: gpt-5}", "{id: gpt-5, fallbacks: [a]}")
                       + "  - {id: a, fallbacks: [b]}\n  - {id: b, fallbacks: [a]}\n",
                       "fallback cycle: a -> b -> a"),
    "unset variable": (
        "  unset: {base_url: 'http://127.0.0.1:9', subscription_name: Api-Key,"
        " api_key_env: NOT_SET_ANYWHERE}\n" + GOOD,
        "upstream 'unset': api_key_env names 'NOT_SET_ANYWHERE', which is not set"),
    "unknown fallback": (GOOD.replace("{id: gpt-5}", "{id: gpt-5, fallbacks: [nowhere]}"),
                         "model 'gpt-5': fallback 'nowhere' is not a model id of this file"),
}


@pytest.fixture(scope="module")
def guarded():
    """A proxy whose models.yaml routes eu-model to the eu upstream; yields
    (proxy, its upstreams section, eu's URL)."""
    with requiring(DEFAULT_KEY) as (default, _), requiring(EU_KEY) as (eu, _):
        section = "upstreams:\n" + upstream("eu", eu, EU_KEY, "EU_KEY")
        with run_proxy(default, models=section + GOOD, EU_KEY=EU_KEY[1]) as proxy:
            proxy.wait_for_event("models_loaded")
            yield proxy, section, eu


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_load_error_keeps_the_last_good_file(guarded, client, case):
    """A file with a mistake is refused whole (models_reload_failed says
    why, without any key) and the last good routing stays in service."""
    proxy, section, eu = guarded
    text, expected = BAD_FILES[case]
    rewrite(proxy, section + text)
    failed = proxy.wait_for(lambda: [e for e in proxy.events("models_reload_failed")
                                     if expected in e["error"]])
    assert failed[0]["models_kept"] == 2
    response, rid = chat(client, proxy, "eu-model")
    assert response.status_code == 200 and sent_model(eu, rid) == "eu-model"
    models = client.get(proxy.url + "/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["eu-model", "gpt-5"]
    assert "sk-inline-77b1c9e0f2" not in "\n".join(proxy.lines)


def test_api_key_file_is_read_and_rotated(client, tmp_path: Path):
    """api_key_file: the key is read from the file, and a new key written
    there is sent from the next request on, by the same client
    (credentials_reloaded), also when SIGHUP reads models.yaml again;
    neither key is logged."""
    key_file = tmp_path / "eu.key"
    key_file.write_text("sk-file-1111aaaa-secret\n")
    with run_mock_upstream() as (default, _), run_mock_upstream() as (eu, _):
        models = (f"upstreams:\n  eu: {{base_url: '{eu}', subscription_name: Api-Key,"
                  f" api_key_file: '{key_file}'}}\nmodels: [{{id: eu-model, upstream: eu}}]\n")
        with run_proxy(default, models=models) as proxy:
            _, rid = chat(client, proxy, "eu-model")
            assert upstream_saw(eu, rid)[0]["headers"]["api-key"] == ["sk-file-1111aaaa-secret"]
            before = accepted(eu)
            spare = tmp_path / "eu.key.new"
            spare.write_text("sk-file-2222bbbb-secret\n")
            os.replace(spare, key_file)
            proxy.process.send_signal(signal.SIGHUP)
            event = proxy.wait_for_event("credentials_reloaded")
            assert event["setting"] == "api_key_file of upstream eu"
            _, rid = chat(client, proxy, "eu-model")
            after = accepted(eu)
            assert upstream_saw(eu, rid)[0]["headers"]["api-key"] == ["sk-file-2222bbbb-secret"]
            # The upstream's client (and its pooled connection) was kept:
            # the only new connection is the test's own for the count.
            assert after == before + 1
            log = "\n".join(proxy.lines)
            assert "sk-file-1111aaaa" not in log and "sk-file-2222bbbb" not in log


def test_a_fallback_whose_upstream_was_removed_is_passed_over(client):
    """A reload removes the upstream of a request's fallback while its first
    upstream keeps it waiting: when the first one times out, the removed
    fallback is passed over (not sent to another upstream under its name),
    and the 502 names only what was tried."""
    with run_mock_upstream("--hang") as (slow, _), requiring(DEFAULT_KEY) as (default, _), \
            requiring(X_KEY) as (x, _):
        first = ("upstreams:\n  slow:\n    base_url: " + slow + "\n    request_timeout: 2\n"
                 "    max_retries: 0\n" + upstream("x", x, X_KEY, "X_KEY")
                 + "models:\n  - {id: stuck, upstream: slow, fallbacks: [x-model]}\n"
                 "  - {id: x-model, upstream: x}\n")
        with run_proxy(default, models=first, X_KEY=X_KEY[1]) as proxy:
            proxy.wait_for_event("models_loaded")
            rid = "reload-passed-over-" + uuid.uuid4().hex
            answer: list[httpx.Response] = []
            asking = threading.Thread(target=lambda: answer.append(client.post(
                proxy.url + CHAT, json={"model": "stuck", "messages": MESSAGES},
                headers={"X-Request-ID": rid}, timeout=30)))
            asking.start()
            proxy.wait_for_event("request", id=rid)
            rewrite(proxy, "upstreams:\n  slow:\n    base_url: " + slow + "\n    request_timeout: 2\n"
                    "    max_retries: 0\nmodels:\n  - {id: stuck, upstream: slow}\n")
            proxy.wait_for_event("models_loaded", models=1)
            asking.join(30)
            assert answer[0].status_code == 502
            assert upstream_saw(x, rid) == [] and upstream_saw(default, rid) == []
            assert "upstreams tried" not in answer[0].json()["error"]["message"]


def test_health_shows_addresses_only_to_a_client_with_a_token(client):
    """With tokens required, /health stays open to probes (status and, per
    upstream, name and ok), but the upstreams' URLs and errors are only for
    a client that gives its token."""
    with requiring(DEFAULT_KEY) as (default, _):
        closed = f"http://127.0.0.1:{free_port()}"
        models = f"upstreams:\n  gone:\n    base_url: {closed}\nmodels:\n  - {{id: g, upstream: gone}}\n"
        with run_proxy(default, models=models, AUTH_TOKEN="health-token-9") as proxy:
            proxy.wait_for_event("models_loaded")
            bare = client.get(proxy.url + "/health")
            assert bare.status_code == 502
            assert bare.json()["upstreams"] == [{"name": "default", "ok": True, "status": 200},
                                                {"name": "gone", "ok": False}]
            told = client.get(proxy.url + "/health",
                              headers={"Authorization": "Bearer health-token-9"}).json()
            gone = told["upstreams"][1]
            assert gone["url"] == closed and gone["error"]["type"] == "connect_error"
