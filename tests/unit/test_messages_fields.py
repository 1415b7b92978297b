"""The other fields of an Anthropic Messages API request made a chat
completions request: sampling and stop, the token field, the effort and the
thinking budget, the output format, the user's digest, the stream, and the
fields accepted, ignored or refused (unit:
L{genaiproxy.api.messages.request})."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.messages_items import (
    CACHED,
    CHAT_TOKEN,
    USER_ID,
    chat_of,
    refused,
    request,
)

from genaiproxy.api.messages.request import chat_request_of, reasons, user_digest

# The other fields.

def test_sampling_and_stop() -> None:
    """stop_sequences is stop; temperature and top_p go as they are; top_k
    is dropped."""
    chat = chat_of(stop_sequences=["\n\nHuman:", "END"], temperature=0.2, top_p=0.9, top_k=40)
    assert chat["stop"] == ["\n\nHuman:", "END"]
    assert (chat["temperature"], chat["top_p"]) == (0.2, 0.9)
    assert "top_k" not in chat
    assert "stop" not in chat_of(stop_sequences=[])
    assert chat_request_of(request(stop_sequences=["END"])).stop_sequences == ("END",)


@pytest.mark.parametrize("model", ["gpt-5", "GPT-5.1-codex", "o3", "o4-mini", "o1"])
def test_reasoning_models_token_field(model: str) -> None:
    """The gpt-5 family and the o-series get max_completion_tokens,
    temperature 1 and no top_p, the only values they take."""
    chat = chat_of(model=model, max_tokens=500, temperature=0.3, top_p=0.5)
    assert (chat[CHAT_TOKEN], chat["temperature"]) == (500, 1)
    assert not {"max_tokens", "top_p"} & set(chat)


@pytest.mark.parametrize("model", ["gpt-4.1", "gpt-4o", "llama3.3", "omni", "gpt-oss-120b"])
def test_other_models_token_field(model: str) -> None:
    """Other models get max_tokens."""
    chat = chat_of(model=model, max_tokens=500)
    assert chat["max_tokens"] == 500 and CHAT_TOKEN not in chat


@pytest.mark.parametrize(("effort", "sent"), [
    ("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high"), ("max", "high"),
])
def test_effort(effort: str, sent: str) -> None:
    """output_config.effort is reasoning_effort, in chat's three levels."""
    assert chat_of(model="gpt-5", output_config={"effort": effort})["reasoning_effort"] == sent


@pytest.mark.parametrize(("budget", "sent"), [
    (1024, "low"), (4000, "low"), (4096, "medium"), (10000, "medium"), (16384, "high"),
    (31999, "high"),
])
def test_thinking_budget(budget: int, sent: str) -> None:
    """A thinking budget is an effort: under 4,096 tokens low, under 16,384
    medium, more high."""
    bridged = chat_request_of(request(model="o3", max_tokens=64000,
                                      thinking={"type": "enabled", "budget_tokens": budget}))
    assert (bridged.chat["reasoning_effort"], bridged.thinking) == (sent, True)


def test_effort_wins_over_budget() -> None:
    """An explicit effort wins over a budget; adaptive or disabled thinking
    alone asks nothing (the upstream's default)."""
    assert chat_of(model="gpt-5", thinking={"type": "enabled", "budget_tokens": 2000},
                   output_config={"effort": "high"})["reasoning_effort"] == "high"
    for kind in ("adaptive", "disabled", "between_tools"):
        assert "reasoning_effort" not in chat_of(model="gpt-5", thinking={"type": kind})
    assert chat_request_of(request(thinking={"type": "disabled"})).thinking is False
    assert chat_request_of(request(thinking={"type": "adaptive"})).thinking is True


@pytest.mark.parametrize("model", ["gpt-5-mini", "o4-mini", "gpt-oss-20b", "GPT-OSS:120b"])
def test_reasoning_models(model: str) -> None:
    """The gpt-5 family, the o-series and gpt-oss take reasoning_effort."""
    assert reasons(model)
    assert chat_of(model=model, output_config={"effort": "low"})["reasoning_effort"] == "low"


@pytest.mark.parametrize("model", ["gpt-4.1", "gpt-4o-mini", "claude-sonnet-4-5", "llama3.3",
                                   "qwen3-coder", "omni-moderation"])
def test_effort_dropped_for_other_models(model: str) -> None:
    """A model that does not reason gets no reasoning_effort."""
    assert not reasons(model)
    bridged = chat_request_of(request(model=model, output_config={"effort": "high"},
                                      thinking={"type": "enabled", "budget_tokens": 2048}))
    assert "reasoning_effort" not in bridged.chat
    assert bridged.reasoning_effort == "high"


@pytest.mark.parametrize(("fields", "start"), [
    ({"thinking": "on"}, "thinking:"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens:"),
    ({"thinking": {"type": "enabled", "budget_tokens": "2048"}}, "thinking.budget_tokens:"),
    ({"output_config": "high"}, "output_config:"),
    ({"output_config": {"effort": 3}}, "output_config.effort:"),
    ({"output_config": {"format": {"type": "regex"}}}, "output_config.format.type:"),
    ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema:"),
    ({"output_format": {"type": "json_schema", "schema": []}}, "output_format.schema:"),
])
def test_reasoning_and_output_refused(fields: dict[str, Any], start: str) -> None:
    assert refused(request(**fields)).startswith(start)


def test_unknown_effort_and_thinking_ignored() -> None:
    """An effort or a thinking type the bridge does not know yet is ignored
    and named, not refused."""
    bridged = chat_request_of(request(model="gpt-5", thinking={"type": "deliberate"},
                                      output_config={"effort": "extreme"}))
    assert "reasoning_effort" not in bridged.chat
    assert bridged.ignored == ("output_config.effort", "thinking.type")


def test_output_format() -> None:
    """output_config.format (or the beta's output_format), a JSON schema,
    is response_format."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    expected = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert chat_of(output_config={"format": {"type": "json_schema", "schema": schema}})[
        "response_format"] == expected
    assert chat_of(output_format={"type": "json_schema", "schema": schema})[
        "response_format"] == expected


def test_user_id_digest() -> None:
    """metadata.user_id is sent as a short stable digest, never as it is;
    other metadata keys are ignored and named."""
    bridged = chat_request_of(request(metadata={"user_id": USER_ID, "team": "x"}))
    assert bridged.chat["user"] == user_digest(USER_ID)
    assert len(bridged.chat["user"]) == 32
    assert chat_of(metadata={"user_id": USER_ID})["user"] == bridged.chat["user"]
    assert chat_of(metadata={"user_id": "other"})["user"] != bridged.chat["user"]
    assert USER_ID not in json.dumps(bridged.chat)
    assert bridged.ignored == ("metadata.team",)
    assert "user" not in chat_of(metadata={"user_id": ""})
    assert "user" not in chat_of(metadata={"user_id": None})
    assert user_digest("\ud800lone") != user_digest("lone")


def test_stream_asks_for_usage() -> None:
    """A streamed request asks the upstream for its usage; a plain one
    sends no stream fields."""
    streamed = chat_request_of(request(stream=True))
    assert streamed.stream is True
    assert (streamed.chat["stream"], streamed.chat["stream_options"]) == (
        True, {"include_usage": True})
    plain = chat_request_of(request(stream=False))
    assert plain.stream is False
    assert not {"stream", "stream_options"} & set(plain.chat)


def test_accepted_fields() -> None:
    """Anthropic's own fields are accepted and send nothing."""
    fields = {"top_k": 5, "context_management": {"edits": []}, "cache_control": CACHED,
              "service_tier": "standard_only", "container": "container_1",
              "diagnostics": {"previous_message_id": "msg_1"}, "inference_geo": "us",
              "speed": "fast", "user_profile_id": "up_1", "workspace_id": "wrkspc_1"}
    bridged = chat_request_of(request(**fields))
    assert set(bridged.chat) == {"model", "messages", "max_tokens"}
    assert bridged.ignored == ()


def test_unknown_fields_ignored() -> None:
    """Unknown top-level fields are ignored and named for the log."""
    bridged = chat_request_of(request(zeta=1, alpha={}))
    assert bridged.ignored == ("alpha", "zeta")
    assert set(bridged.chat) == {"model", "messages", "max_tokens"}
