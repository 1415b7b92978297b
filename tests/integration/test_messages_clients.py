"""Claude Code and the anthropic SDK through the daemon, in front of a
gateway that publishes only chat completions (issue 20): /v1/messages is
answered through the upstream's /chat/completions.

The upstream is a mock started with ``--chat-only`` whose model calls
``get_weather`` (the SDK's tests) or ``Bash`` (Claude Code's) when a
request offers it, and quotes a tool's output back when it gets one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from support import ProxyProcess, run_mock_upstream, run_proxy, upstream_saw
from support.clients import MODELS_YAML, TOKEN, claude_argv, claude_env, run_client

from genaiproxy.mock.server import DEFAULT_REPLY

WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def chat_only() -> Iterator[str]:
    with run_mock_upstream("--chat-only", "--event-delay", "0.01",
                           "--tool-call", 'get_weather={"city":"Oslo"}') as (url, _):
        yield url


@pytest.fixture(scope="module")
def proxy(chat_only: str) -> Iterator[ProxyProcess]:
    with run_proxy(chat_only, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as running:
        yield running


@pytest.fixture(params=["x-api-key", "bearer"])
def sdk(request, proxy: ProxyProcess) -> anthropic.Anthropic:
    """The SDK sending the token either way it may."""
    if request.param == "bearer":
        return anthropic.Anthropic(base_url=proxy.url, auth_token=TOKEN, api_key=None,
                                   max_retries=0)
    return anthropic.Anthropic(base_url=proxy.url, api_key=TOKEN, max_retries=0)


def test_a_plain_message(sdk, proxy, chat_only):
    """messages.create gets the mock's reply, end_turn and the usage; the
    request went to the upstream's /chat/completions."""
    raw = sdk.messages.with_raw_response.create(model="gpt-4.1", max_tokens=100, messages=HELLO)
    message = raw.parse()
    assert message.content[0].text == DEFAULT_REPLY
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    [seen] = upstream_saw(chat_only, raw.headers["request-id"])
    assert seen["path"] == "/v1/chat/completions"


def test_a_streamed_message_and_the_final_message(sdk):
    """The SDK's MessageStream reads the bridged events: the text as it
    comes, and get_final_message() the whole message."""
    with sdk.messages.stream(model="gpt-4.1", max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == DEFAULT_REPLY == final.content[0].text
    assert final.stop_reason == "end_turn"


def test_a_tool_use_and_its_result_make_the_round_trip(sdk, chat_only):
    """The model's call is a tool_use block; the client's tool_result goes
    back as a tool message right after the assistant's call, and the model's
    answer quotes it."""
    first = sdk.messages.create(model="gpt-4.1", max_tokens=100, tools=[WEATHER],
                                messages=[{"role": "user", "content": "Weather in Oslo?"}])
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Oslo"}
    raw = sdk.messages.with_raw_response.create(
        model="gpt-4.1", max_tokens=100, tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Oslo?"},
                  {"role": "assistant", "content": [use.model_dump()]},
                  {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": use.id, "content": "8 C, rain"}]}])
    assert raw.parse().content[0].text == "The tool said: 8 C, rain"
    [seen] = upstream_saw(chat_only, raw.headers["request-id"])
    sent = json.loads(seen["body"])
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    assert sent["messages"][2]["tool_call_id"] == use.id


def test_thinking_comes_back_as_a_thinking_block(sdk):
    """An upstream's reasoning_content is a thinking block before the text."""
    message = sdk.messages.create(model="gpt-4.1", max_tokens=2000, messages=HELLO,
                                  thinking={"type": "enabled", "budget_tokens": 1024},
                                  extra_headers={"X-Mock-Reasoning": "Let me think."})
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Let me think."


def test_an_image_goes_as_an_image_url(sdk, chat_only):
    """A base64 image block reaches the upstream as a data URL."""
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    raw = sdk.messages.with_raw_response.create(
        model="gpt-4.1", max_tokens=50,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}},
            {"type": "text", "text": "What is this?"}]}])
    [seen] = upstream_saw(chat_only, raw.headers["request-id"])
    parts = json.loads(seen["body"])["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64," + pixel}}


def test_count_tokens(sdk):
    """count_tokens answers an estimate without the upstream."""
    counted = sdk.messages.count_tokens(model="gpt-4.1", messages=HELLO)
    assert counted.input_tokens > 0


@pytest.mark.parametrize(("status", "error"), [
    (400, anthropic.BadRequestError), (401, anthropic.AuthenticationError),
    (403, anthropic.PermissionDeniedError), (404, anthropic.NotFoundError),
    (429, anthropic.RateLimitError), (500, anthropic.InternalServerError),
    (503, anthropic.InternalServerError),
])
def test_each_error_status_is_the_sdks_error(sdk, status, error):
    """An upstream error reaches the SDK as the exception of its status,
    with Anthropic's error shape."""
    with pytest.raises(error) as raised:
        sdk.messages.create(model="gpt-4.1", max_tokens=10, messages=HELLO,
                            extra_headers={"X-Mock-Status": str(status)})
    assert raised.value.body["type"] == "error"


def test_a_stream_cut_upstream_ends_with_an_error_event(sdk):
    """A stream that breaks upstream ends with an error event, which the SDK
    raises, never with message_stop."""
    with pytest.raises(anthropic.APIStatusError):
        with sdk.messages.stream(model="gpt-4.1", max_tokens=100, messages=HELLO,
                                 extra_headers={"X-Mock-Drop-After": "2"}) as stream:
            for _ in stream:
                pass


def test_an_upstream_error_event_ends_with_an_error_event_and_is_logged(sdk, proxy):
    """An upstream stream that ends cleanly but with an error event ends the
    client's stream with an error event, which the SDK raises, and its
    streaming_end is a WARNING that names the upstream's error."""
    raw = sdk.messages.with_raw_response.create(
        model="gpt-4.1", max_tokens=100, messages=HELLO, stream=True,
        extra_headers={"X-Mock-Error-After": "2"})
    with pytest.raises(anthropic.APIStatusError):
        for _ in raw.parse():
            pass
    end = proxy.wait_for_event("streaming_end", id=raw.headers["request-id"])
    assert end["level"] == "WARNING"
    assert end["upstream_error"]["code"] == "server_error"


def test_claude_code_runs_bash_through_a_chat_only_gateway(tmp_path: Path):
    """claude -p in front of a gateway with no Messages API: the model's Bash
    call runs, its output goes back through the bridge, and the answer that
    quotes it is printed."""
    with run_mock_upstream("--chat-only", "--event-delay", "0.01", "--tool-call",
                           'Bash={"command":"echo bridged-ok","description":"Say it"}') as (
            mock, _), run_proxy(mock, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as proxy:
        work = tmp_path / "work"
        work.mkdir()
        env = claude_env(tmp_path / "home", proxy.url, CLAUDE_CODE_MAX_RETRIES="0")
        result = run_client(claude_argv("Run the command."), env, work, proxy)
        assert "The tool said:" in result.stdout and "bridged-ok" in result.stdout, result.stdout
        assert [e for e in proxy.events("request") if e.get("path") == "/v1/messages"]


def test_claude_code_with_only_what_configure_wrote(tmp_path: Path):
    """After genai-proxy configure claude-code, Claude Code with nothing but
    GENAI_PROXY_TOKEN in its environment works through the proxy."""
    from support import BIN

    with run_mock_upstream("--chat-only", "--event-delay", "0.01", "--tool-call",
                           'Bash={"command":"echo configured-ok"}') as (mock, _), \
            run_proxy(mock, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as proxy:
        home = tmp_path / "home"
        env = claude_env(home, None, CLAUDE_CODE_MAX_RETRIES="0")
        (tmp_path / "models.yaml").write_text(MODELS_YAML)
        subprocess.run([str(BIN / "genai-proxy"), "configure", "claude-code",
                        "--listen", proxy.url.replace("http://127.0.0.1:", "tcp:")
                        + ":interface=127.0.0.1", "--models", str(tmp_path / "models.yaml")],
                       env=env, check=True, capture_output=True, text=True, timeout=60)
        work = tmp_path / "work"
        work.mkdir()
        result = run_client(claude_argv("Run the command."), env, work, proxy)
        assert "configured-ok" in result.stdout, result.stdout
