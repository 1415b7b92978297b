"""The clients' limits in the request path, in memory
(L{genaiproxy.testing.MemoryProxy}): 429 and 403 in each route's shape,
OpenAI's rate-limit headers, the allowlist on requests and on /v1/models,
the log event and the metrics, and reloads that keep the counts."""

from __future__ import annotations

import json
import os

import pytest
from support.limits_proxy import Upstream, bearer, limited_proxy, logged, named

from genaiproxy.testing import MemoryProxy

CHAT = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}
RPM_3 = "  default:\n    requests_per_minute: 3"


def test_over_the_minute_the_answer_is_429_with_the_headers_and_retry_after(tmp_path):
    """requests_per_minute 3: three answers with remaining 2, 1, 0; the
    fourth a 429 rate_limit_exceeded naming the client, the limit and when
    it resets, with Retry-After, never sent upstream."""
    proxy, upstream, _ = limited_proxy(tmp_path, RPM_3)
    answers = [proxy.request("POST", "/v1/chat/completions", json=CHAT,
                             headers=bearer("tok-alice")) for _ in range(4)]
    assert [a.code for a in answers] == [200, 200, 200, 429]
    assert [a.header("x-ratelimit-remaining-requests") for a in answers] == ["2", "1", "0", "0"]
    assert {a.header("x-ratelimit-limit-requests") for a in answers} == {"3"}
    assert answers[0].header("x-ratelimit-reset-requests") == "20s"
    refused = answers[3]
    assert refused.header("retry-after") == "20"
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "'alice'" in error["message"] and "requests_per_minute" in error["message"]
    assert "resets in 20 s" in error["message"]
    assert len(upstream.calls) == 3


def test_the_limits_headers_replace_the_shared_keys(tmp_path):
    """A limited client sees its own x-ratelimit-* headers, not those the
    upstream gives for the key everyone shares."""
    proxy, _, _ = limited_proxy(tmp_path, RPM_3)
    answer = proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    assert answer.headers.getRawHeaders(b"x-ratelimit-limit-requests") == [b"3"]
    assert answer.headers.getRawHeaders(b"x-ratelimit-remaining-requests") == [b"2"]


@pytest.mark.parametrize("path, body, headers", [
    ("/v1/chat/completions", CHAT, {}),
    ("/v1/responses", {"model": "gpt-5", "input": "hi"}, {}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}, {}),
    ("/v1/completions", {"model": "gpt-5", "prompt": "hi"}, {}),
])
def test_every_route_that_goes_upstream_answers_openais_429(tmp_path, path, body, headers):
    """Chat, Responses, embeddings, completions: the same 429 shape."""
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    requests_per_minute: 0")
    answer = proxy.request("POST", path, json=body, headers=bearer("tok-alice"))
    assert answer.code == 429 and answer.header("retry-after") == "60"
    assert set(answer.json()["error"]) >= {"message", "type", "code"}


def test_the_messages_api_gets_anthropics_429(tmp_path):
    """/v1/messages: Anthropic's error shape, rate_limit_error, Retry-After."""
    proxy, upstream, _ = limited_proxy(tmp_path, "  default:\n    requests_per_minute: 0")
    answer = proxy.request("POST", "/v1/messages", json={
        "model": "gpt-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": ["tok-alice"], "anthropic-version": ["2023-06-01"]})
    assert answer.code == 429 and answer.header("retry-after") == "60"
    document = answer.json()
    assert document["type"] == "error" and document["error"]["type"] == "rate_limit_error"
    assert "requests_per_minute" in document["error"]["message"] and not upstream.calls


def test_used_up_tokens_of_the_day_are_insufficient_quota(tmp_path):
    """tokens_per_day 150: the first answer's 100 tokens leave room, the
    second takes the day past it (and completes), the third is refused
    with insufficient_quota until midnight UTC."""
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    tokens_per_day: 150")
    codes = [proxy.request("POST", "/v1/chat/completions", json=CHAT,
                           headers=bearer("tok-alice")) for _ in range(3)]
    assert [a.code for a in codes] == [200, 200, 429]
    error = codes[2].json()["error"]
    assert error["code"] == "insufficient_quota" == error["type"]
    assert "tokens_per_day" in error["message"] and "used 200" in error["message"]
    assert 1 <= int(codes[2].header("retry-after") or 0) <= 86400


def test_a_budget_is_spent_at_the_models_price(tmp_path):
    """budget_per_day: each answer costs its usage at gpt-5's price (60
    input, 40 output tokens: 0.000475); the cost and what is left of the
    budget are on /metrics; the budget used up refuses the next request."""
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    budget_per_day: 0.0009")
    first = proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    second = proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    third = proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    assert (first.code, second.code, third.code) == (200, 200, 429)
    assert third.json()["error"]["code"] == "insufficient_quota"
    metrics = proxy.request("GET", "/metrics", headers=bearer("tok-alice")).body.decode()
    assert 'genai_proxy_cost_total{client="alice",model="gpt-5"} 0.00095' in metrics
    assert 'genai_proxy_budget_remaining{client="alice",window="day"} 0.0' in metrics
    assert 'genai_proxy_limited_total{client="alice",limit="budget_per_day"} 1.0' in metrics


def test_the_budget_left_on_metrics_starts_again_with_the_day(tmp_path):
    """What is left of a budget is read when /metrics is: once the day
    turns (midnight UTC) it is the whole day's budget again, before the
    client sends another request; the month's stays spent."""
    proxy, _, _ = limited_proxy(
        tmp_path, "  default:\n    budget_per_day: 0.001\n    budget_per_month: 0.01")
    proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))

    def left() -> str:
        return proxy.request("GET", "/metrics", headers=bearer("tok-alice")).body.decode()

    assert 'genai_proxy_budget_remaining{client="alice",window="day"} 0.000525' in left()
    proxy.advance(86400 - proxy.clock.seconds() % 86400)
    metrics = left()
    assert 'genai_proxy_budget_remaining{client="alice",window="day"} 0.001' in metrics
    assert 'genai_proxy_budget_remaining{client="alice",window="month"} 0.009525' in metrics


def test_a_budget_a_reload_takes_away_is_nan_on_metrics(tmp_path):
    """A reload of models.yaml without the day's budget leaves no figure
    for it: NaN (the month's, still there, stays)."""
    proxy, _, models = limited_proxy(
        tmp_path, "  default:\n    budget_per_day: 0.001\n    budget_per_month: 0.01")
    proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    models.write_text(models.read_text().replace("    budget_per_day: 0.001\n", ""))
    os.utime(models, ns=(1, 1))
    proxy.catalog.refresh()
    metrics = proxy.request("GET", "/metrics", headers=bearer("tok-alice")).body.decode()
    assert 'genai_proxy_budget_remaining{client="alice",window="day"} NaN' in metrics
    assert 'genai_proxy_budget_remaining{client="alice",window="month"} 0.009525' in metrics


def test_a_model_outside_the_clients_list_is_403_and_not_listed(tmp_path):
    """ci-runner may use two models: another gets 403 model_not_allowed;
    /v1/models lists only its two, and /v1/models/gpt-5 is not found for
    it; alice (no list) sees and uses all three."""
    proxy, upstream, _ = limited_proxy(
        tmp_path, "  clients:\n    ci-runner:\n      models: [gpt-4.1-mini, "
        "text-embedding-3-small]")
    refused = proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-ci"))
    assert refused.code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    assert "'gpt-5'" in refused.json()["error"]["message"] and not upstream.calls
    allowed = proxy.request("POST", "/v1/chat/completions", json={**CHAT, "model": "gpt-4.1-mini"},
                            headers=bearer("tok-ci"))
    assert allowed.code == 200
    listed = proxy.request("GET", "/v1/models", headers=bearer("tok-ci")).json()["data"]
    assert [m["id"] for m in listed] == ["gpt-4.1-mini", "text-embedding-3-small"]
    assert proxy.request("GET", "/v1/models/gpt-5", headers=bearer("tok-ci")).code == 404
    everyone = proxy.request("GET", "/v1/models", headers=bearer("tok-alice")).json()["data"]
    assert len(everyone) == 3


def test_a_refusal_is_logged_as_limited_and_is_no_upstream_failure(tmp_path):
    """The limited event (WARNING): client, limit, window, never the token;
    the upstream failure counter and the retry counter stay untouched."""
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    requests_per_minute: 0")
    with logged() as events:
        proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    [event] = named(events, "limited")
    assert (event["client"], event["limit"], event["window"]) == (
        "alice", "requests_per_minute", "minute")
    assert event["log_level"].name == "warn"
    assert "tok-alice" not in repr(events)
    metrics = proxy.request("GET", "/metrics", headers=bearer("tok-alice")).body.decode()
    assert "genai_proxy_upstream_failures_total{" not in metrics
    assert "genai_proxy_retries_total{" not in metrics


def test_a_reload_that_changes_the_limits_keeps_the_counts(tmp_path):
    """The day's tokens counted under the old limits count under the new:
    a lower limit refuses at once."""
    proxy, _, models = limited_proxy(tmp_path, "  default:\n    tokens_per_day: 1000")
    assert proxy.request("POST", "/v1/chat/completions", json=CHAT,
                         headers=bearer("tok-alice")).code == 200
    models.write_text(models.read_text().replace("1000", "100"))
    os.utime(models, ns=(1, 1))
    proxy.catalog.refresh()
    answer = proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    assert answer.code == 429 and "tokens_per_day" in answer.json()["error"]["message"]


def test_without_a_limits_section_nothing_changes(tmp_path):
    """No limits: no rate-limit headers of the proxy's (the upstream's pass
    as before), no 429 however many requests."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: gpt-5\n")
    proxy = MemoryProxy(Upstream(), models_path=str(models))
    answers = [proxy.request("POST", "/v1/chat/completions", json=CHAT) for _ in range(5)]
    assert {a.code for a in answers} == {200}
    assert answers[-1].header("x-ratelimit-limit-requests") == "10000"
    assert json.loads(answers[-1].body)["object"] == "chat.completion"


def test_the_status_page_shows_each_clients_use(tmp_path):
    """/status: a line per limited client and limit, with what it used."""
    proxy, _, _ = limited_proxy(tmp_path, RPM_3 + "\n  clients:\n    ci-runner:\n"
                                "      tokens_per_day: 1000")
    proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    page = proxy.request("GET", "/status", headers=bearer("tok-alice")).body.decode()
    limits = page[page.index('id="limits-section"'):]
    assert "<td>alice</td>" in limits and "requests_per_minute" in limits
    assert "<td>ci-runner</td>" in limits and "tokens_per_day" in limits


def test_only_requests_that_go_upstream_count(tmp_path):
    """/v1/models, /health, /status and /metrics take nothing of a client's
    requests_per_minute: after many of them, its one request goes."""
    proxy, _, _ = limited_proxy(tmp_path, "  default:\n    requests_per_minute: 1")
    for path in ("/v1/models", "/v1/models/gpt-5", "/status", "/metrics", "/health") * 3:
        assert proxy.request("GET", path, headers=bearer("tok-alice")).code != 429
    answer = proxy.request("POST", "/v1/chat/completions", json=CHAT, headers=bearer("tok-alice"))
    assert answer.code == 200 and answer.header("x-ratelimit-remaining-requests") == "0"
