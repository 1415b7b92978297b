"""The clients' limits in the daemon, in front of the mock upstream: the
openai SDK raising RateLimitError and honouring Retry-After, and the day's
windows kept across a restart in the state file."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from support import run_proxy

TOKENS = "alice: tok-alice-0123456789\n"
MODELS = "limits:\n{limits}\nmodels:\n  - id: gpt-4.1\n"
CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}


def _files(tmp_path: Path) -> dict[str, str]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    return {"AUTH_TOKENS_FILE": str(tokens)}


def test_the_openai_sdk_raises_rate_limit_error_and_honours_retry_after(mock_url, tmp_path):
    """Over requests_per_minute, the SDK without retries raises
    RateLimitError with the proxy's code; with retries it waits the
    Retry-After (1 s at 60 a minute) and its request then goes through."""
    limits = "  default:\n    requests_per_minute: 60"
    with run_proxy(mock_url, MODELS.format(limits=limits), **_files(tmp_path)) as proxy:
        sdk = openai.OpenAI(base_url=proxy.url + "/v1", api_key="tok-alice-0123456789",
                            max_retries=0)
        for _ in range(60):
            sdk.chat.completions.create(**CHAT)
        with pytest.raises(openai.RateLimitError) as raised:
            sdk.chat.completions.create(**CHAT)
        assert raised.value.code == "rate_limit_exceeded"
        assert raised.value.response.headers["retry-after"] == "1"
        assert raised.value.response.headers["x-ratelimit-remaining-requests"] == "0"
        patient = sdk.with_options(max_retries=2)
        answer = patient.chat.completions.with_raw_response.create(**CHAT)
        assert answer.http_response.status_code == 200
        assert len(proxy.events("limited")) == 2  # the SDK's first try was refused too
        assert "tok-alice" not in "\n".join(proxy.lines)


def test_the_days_tokens_survive_a_restart(mock_url, tmp_path):
    """tokens_per_day 1: the first answer uses the day up; after a restart
    (the state file written at the stop, read at the start) the next
    request is still refused."""
    limits = "  default:\n    tokens_per_day: 1"
    state = tmp_path / "limits.json"
    settings = {**_files(tmp_path), "LIMITS_STATE_FILE": str(state)}
    headers = {"Authorization": "Bearer tok-alice-0123456789"}
    with run_proxy(mock_url, MODELS.format(limits=limits), **settings) as proxy:
        assert httpx.post(proxy.url + "/v1/chat/completions", json=CHAT,
                          headers=headers).status_code == 200
    saved = json.loads(state.read_text())
    assert saved["clients"]["alice"]["day_tokens"] > 0
    with run_proxy(mock_url, MODELS.format(limits=limits), **settings) as proxy:
        proxy.wait_for_event("limits_state_loaded", clients=1)
        refused = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "insufficient_quota"


def test_an_unreadable_state_file_starts_from_zero(mock_url, tmp_path):
    """A state file that is not JSON: an ERROR, and the proxy serves."""
    limits = "  default:\n    tokens_per_day: 1000"
    state = tmp_path / "limits.json"
    state.write_text("{not json")
    with run_proxy(mock_url, MODELS.format(limits=limits), LIMITS_STATE_FILE=str(state),
                   **_files(tmp_path)) as proxy:
        event = proxy.wait_for_event("limits_state_unreadable")
        assert event["level"] == "ERROR" and event["path"] == str(state)
        assert httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, headers={
            "Authorization": "Bearer tok-alice-0123456789"}).status_code == 200
