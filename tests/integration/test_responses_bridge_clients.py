"""Codex and the openai SDK's Responses API in front of a gateway that
publishes only chat completions (issue 19): the daemon answers
/v1/responses through the upstream's /chat/completions.

The upstream is a mock started with ``--chat-only`` (404 on any
/responses path, as an API Management portal answers) whose model calls
``get_weather`` and ``get_time`` when a request offers them (and
``X-Mock-Reasoning`` adds reasoning); Codex gets a mock of its own whose
model calls ``exec_command``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from support import ProxyProcess, run_mock_upstream, run_proxy, upstream_saw
from support.clients import (
    CLIENTS,
    MODELS_YAML,
    TOKEN,
    client_env,
    installed,
    run_client,
)

from genaiproxy.mock.server import DEFAULT_REPLY

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module")
def chat_only() -> Iterator[str]:
    """A chat-only gateway whose model calls the tools above when offered."""
    with run_mock_upstream("--chat-only", "--event-delay", "0.01",
                           "--tool-call", 'get_weather={"city":"Oslo"}',
                           "--tool-call", "get_time") as (url, _):
        yield url


@pytest.fixture(scope="module")
def bridging(chat_only: str) -> Iterator[ProxyProcess]:
    """The daemon with RESPONSES_API=auto (its default) in front of it."""
    with run_proxy(chat_only, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as running:
        yield running


@pytest.fixture
def sdk(bridging: ProxyProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridging.url + "/v1", api_key=TOKEN, max_retries=0)


def chat_requests(chat_only: str, request_id: str) -> list[dict]:
    """The chat bodies the mock received for the request with that id."""
    return [json.loads(seen["body"]) for seen in upstream_saw(chat_only, request_id)
            if seen["path"].endswith("/chat/completions")]


def test_a_plain_response_comes_through_chat_completions(sdk, bridging, chat_only):
    """responses.create is answered with the mock's reply, its usage with a
    total, though the upstream has no /responses (the proxy says so once)."""
    raw = sdk.responses.with_raw_response.create(model="gpt-4.1", input="Say hello",
                                                  instructions="Be brief.")
    response = raw.parse()
    assert response.output_text == DEFAULT_REPLY
    assert response.status == "completed" and response.usage.total_tokens > 0
    [sent] = chat_requests(chat_only, raw.headers["x-request-id"])
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    bridging.wait_for(lambda: bridging.events("responses_bridged"), timeout=5)


def test_a_streamed_response_is_the_whole_event_sequence(sdk):
    """The SDK's stream helper reads the bridged events: the text as deltas,
    and a final response.completed whose text and usage it returns."""
    with sdk.responses.stream(model="gpt-4.1", input="Say hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.content_part.added" in kinds
    assert final.output_text == DEFAULT_REPLY and final.usage.total_tokens > 0


def test_a_function_call_and_its_output_make_the_round_trip(sdk, chat_only):
    """The model's call comes back as a function_call item; the client's
    function_call_output goes back as a tool message after the assistant
    message that holds the call, and the model's answer quotes it."""
    first = sdk.responses.create(model="gpt-4.1", input="Weather in Oslo?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    raw = sdk.responses.with_raw_response.create(
        model="gpt-4.1", tools=[WEATHER],
        input=[{"role": "user", "content": "Weather in Oslo?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name,
                "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "8 C, rain"}])
    assert raw.parse().output_text == "The tool said: 8 C, rain"
    [sent] = chat_requests(chat_only, raw.headers["x-request-id"])
    assistant, tool = sent["messages"][1:]
    assert [c["id"] for c in assistant["tool_calls"]] == [call.call_id]
    assert tool == {"role": "tool", "tool_call_id": call.call_id, "content": "8 C, rain"}


def test_parallel_calls_stay_in_one_assistant_message(sdk, chat_only):
    """Two calls in one answer come back as two items, streamed; their
    outputs go back as one assistant message holding both calls, then a
    tool message each."""
    with sdk.responses.stream(
            model="gpt-4.1", input="Weather and time?", tools=[WEATHER, TIME]) as stream:
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    items: list = [{"role": "user", "content": "Weather and time?"}]
    items += [{"type": "function_call", "call_id": c.call_id, "name": c.name,
               "arguments": c.arguments} for c in calls]
    items += [{"type": "function_call_output", "call_id": c.call_id, "output": f"out-{c.name}"}
              for c in calls]
    raw = sdk.responses.with_raw_response.create(model="gpt-4.1", tools=[WEATHER, TIME],
                                                  input=items)
    assert raw.parse().output_text == "The tool said: out-get_weather\nThe tool said: out-get_time"
    [sent] = chat_requests(chat_only, raw.headers["x-request-id"])
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["user", "assistant", "tool", "tool"]
    assert len(sent["messages"][1]["tool_calls"]) == 2


def test_reasoning_content_becomes_a_reasoning_item(sdk):
    """An upstream's reasoning_content comes back as a reasoning item with
    its summary, before the message, whole and streamed."""
    headers = {"X-Mock-Reasoning": "First, think."}
    whole = sdk.responses.create(model="gpt-4.1", input="Think", reasoning={"summary": "auto"},
                                 extra_headers=headers)
    assert [item.type for item in whole.output] == ["reasoning", "message"]
    assert whole.output[0].summary[0].text == "First, think."
    with sdk.responses.stream(model="gpt-4.1", input="Think", reasoning={"summary": "auto"},
                              extra_headers=headers) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.reasoning_summary_text.delta")
    assert deltas == "First, think."


def test_text_format_becomes_response_format(sdk, chat_only):
    """text.format json_schema reaches the upstream as response_format."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    raw = sdk.responses.with_raw_response.create(
        model="gpt-4.1", input="JSON please",
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema}})
    [sent] = chat_requests(chat_only, raw.headers["x-request-id"])
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "thing", "schema": schema}}


def test_errors_keep_their_kind(sdk):
    """An upstream 429 is the SDK's RateLimitError; a request the bridge
    cannot serve (previous_response_id) is a BadRequestError naming it."""
    with pytest.raises(openai.RateLimitError):
        sdk.responses.create(model="gpt-4.1", input="hi", extra_headers={"X-Mock-Status": "429"})
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="gpt-4.1", input="hi", previous_response_id="resp_1")
    assert refused.value.body["param"] == "previous_response_id"


def test_a_stream_cut_upstream_ends_failed_not_completed(sdk):
    """An upstream connection that breaks mid-stream ends the client's
    stream with response.failed, never response.completed."""
    with sdk.responses.stream(model="gpt-4.1", input="hi",
                              extra_headers={"X-Mock-Drop-After": "2"}) as stream:
        kinds = []
        with pytest.raises(openai.APIError):
            for event in stream:
                kinds.append(event.type)
    assert "response.completed" not in kinds


def test_an_upstream_error_event_ends_the_stream_failed_and_is_logged(sdk, bridging):
    """An upstream stream that ends cleanly but with an error event ends the
    client's stream with response.failed carrying the upstream's error, and
    its streaming_end is a WARNING that names that error."""
    raw = sdk.responses.with_raw_response.create(
        model="gpt-4.1", input="hi", stream=True, extra_headers={"X-Mock-Error-After": "2"})
    events = list(raw.parse())
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "server_error"
    assert "response.completed" not in [event.type for event in events]
    end = bridging.wait_for_event("streaming_end", id=raw.headers["x-request-id"])
    assert end["level"] == "WARNING"
    assert end["upstream_error"]["code"] == "server_error"
    assert "X-Mock-Error-After" in end["upstream_error"]["message"]


def test_an_upstream_error_event_then_a_cut_is_logged_with_both(sdk, bridging):
    """An upstream stream that sends an error event and then breaks: the
    client's stream ends with response.failed carrying the upstream's
    error, and stream_broken names that error beside the break."""
    raw = sdk.responses.with_raw_response.create(
        model="gpt-4.1", input="hi", stream=True,
        extra_headers={"X-Mock-Error-After": "2", "X-Mock-Drop-After": "9"})
    kinds = []
    with pytest.raises(openai.APIError):
        for event in raw.parse():
            kinds.append(event.type)
    assert "response.completed" not in kinds
    broken = bridging.wait_for_event("stream_broken", id=raw.headers["x-request-id"])
    assert broken["upstream_error"]["code"] == "server_error"


def test_codex_runs_a_tool_through_a_chat_only_gateway(tmp_path: Path):
    """codex exec, which speaks only the Responses API, in front of a gateway
    with no /responses: the model's exec_command call runs, its output goes
    back through the bridge, and the answer that quotes it is printed."""
    codex = installed(".bin/codex")
    with run_mock_upstream("--chat-only", "--event-delay", "0.01", "--tool-call",
                           'exec_command={"cmd":"echo bridged-ok"}') as (mock, _), \
            run_proxy(mock, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as proxy:
        codex_home = tmp_path / "codex-home"
        codex_home.mkdir()
        template = (CLIENTS / "codex.template.toml").read_text()
        (codex_home / "config.toml").write_text(
            template.replace("@PROXY_V1_URL@", proxy.url + "/v1"))
        work = tmp_path / "work"
        work.mkdir()
        env = client_env(tmp_path / "home", CODEX_HOME=str(codex_home), GENAI_PROXY_TOKEN=TOKEN)
        result = run_client([codex, "exec", "--strict-config", "--skip-git-repo-check",
                             "--ephemeral", "--dangerously-bypass-approvals-and-sandbox",
                             "--color", "never", "Run the command."], env, work, proxy)
        assert "The tool said:" in result.stdout and "bridged-ok" in result.stdout, result.stdout
        assert proxy.events("responses_bridged")
