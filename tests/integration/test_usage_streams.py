"""Token usage of streamed answers, read as the stream passes, and
STREAM_USAGE: a chat stream asked for its usage on the client's behalf,
with the extra chunk taken back out of what the client gets."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
from support import ProxyProcess, run_proxy, upstream_saw
from support.metrics import TOKEN, scrape

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "one two three four five"}]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# What differs between two answers of the mock to the same request.
_PER_ANSWER = re.compile(rb'"(id|created)": ("[^"]*"|\d+)')


@pytest.fixture(scope="module")
def asking(mock_url: str) -> Iterator[ProxyProcess]:
    """A daemon with STREAM_USAGE at its default (on)."""
    with run_proxy(mock_url, AUTH_TOKEN=TOKEN, RETRY_BACKOFF_SEC="0.01") as running:
        yield running


@pytest.fixture(scope="module")
def not_asking(mock_url: str) -> Iterator[ProxyProcess]:
    """A daemon with STREAM_USAGE=false."""
    with run_proxy(mock_url, AUTH_TOKEN=TOKEN, STREAM_USAGE="false") as running:
        yield running


def raw_stream(proxy: ProxyProcess, body: dict, path: str = CHAT,
               **headers: str) -> tuple[bytes, str]:
    """The bytes of a streamed answer exactly as they came, and the request id."""
    rid = str(uuid.uuid4())
    with httpx.stream("POST", proxy.url + path, json=body, trust_env=False, timeout=30,
                      headers={**AUTH, "X-Request-ID": rid, **headers}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        return b"".join(answer.iter_raw()), rid


def same_apart_from_ids(stream: bytes) -> bytes:
    """C{stream} with the id and time the mock gives each answer blanked."""
    return _PER_ANSWER.sub(rb'"\1": "-"', stream)


def events_of(stream: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in stream.split(b"\n")
            if line.startswith(b"data: {")]


def chat_body(include_usage: bool | None) -> dict:
    body = {"model": "gpt-4.1", "stream": True, "messages": MESSAGES}
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    return body


def counted(usage: dict) -> dict[str, int]:
    """A chat usage object in the kinds the proxy counts."""
    return {"input": usage["prompt_tokens"], "output": usage["completion_tokens"]}


def tokens(proxy: ProxyProcess, model: str) -> dict[str, float]:
    """The tokens counted for C{model}, by kind."""
    return {dict(labels)["kind"]: value for (name, labels), value in scrape(proxy).items()
            if name == "genai_proxy_tokens_total" and dict(labels)["model"] == model}


def test_a_stream_that_asked_for_usage_is_passed_byte_for_byte(asking, not_asking):
    """When the client asked for usage itself, the stream it gets is the same
    with and without STREAM_USAGE, usage chunk included, and its usage is
    logged on streaming_end and counted."""
    with_proxy, rid = raw_stream(asking, chat_body(True))
    without_proxy, _ = raw_stream(not_asking, chat_body(True))
    assert same_apart_from_ids(with_proxy) == same_apart_from_ids(without_proxy)
    last = events_of(with_proxy)[-1]
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 5
    end = asking.wait_for_event("streaming_end", id=rid)
    assert end["usage"] == counted(last["usage"])
    assert end["model"] == "gpt-4.1" and end["client"] == "default"


def test_a_stream_that_did_not_ask_gets_no_usage_chunk(asking, not_asking, mock_url):
    """When the client did not ask, the upstream is asked for usage, yet the
    client's stream has no usage chunk and no "usage": null: it is the same,
    byte for byte, as the stream without STREAM_USAGE.  The usage it carried
    is logged and counted exactly."""
    reference, _ = raw_stream(asking, chat_body(True))
    reported = events_of(reference)[-1]["usage"]
    before = tokens(asking, "gpt-4.1")
    for asked in (None, False):
        with_proxy, rid = raw_stream(asking, chat_body(asked))
        without_proxy, _ = raw_stream(not_asking, chat_body(asked))
        assert same_apart_from_ids(with_proxy) == same_apart_from_ids(without_proxy)
        assert b'"usage"' not in with_proxy and with_proxy.endswith(b"data: [DONE]\n\n")
        assert asking.wait_for_event("streaming_end", id=rid)["usage"] == counted(reported)
        sent = asking.wait_for_event("request", id=rid)["body"]
        assert sent["stream_options"]["include_usage"] is True
    after = tokens(asking, "gpt-4.1")
    assert after["input"] - before.get("input", 0) == 2 * reported["prompt_tokens"]
    assert after["output"] - before.get("output", 0) == 2 * reported["completion_tokens"]


def test_without_stream_usage_a_stream_that_did_not_ask_reports_none(not_asking):
    """With STREAM_USAGE=false the request goes as the client sent it, and a
    stream without usage logs none."""
    _, rid = raw_stream(not_asking, chat_body(None))
    assert "stream_options" not in not_asking.wait_for_event("request", id=rid)["body"]
    assert "usage" not in not_asking.wait_for_event("streaming_end", id=rid)


def test_responses_and_legacy_streams_are_counted(asking):
    """A Responses stream's usage comes from its response.completed event, a
    legacy completions stream's from its usage chunk; both are logged on
    streaming_end and counted, exactly as the upstream reported them."""
    before = tokens(asking, "gpt-5-mini")
    body = {"model": "gpt-5-mini", "stream": True, "input": "one two three",
            "instructions": "long " * 40000}  # echoed: a completed event of 200 kB
    stream, rid = raw_stream(asking, body, "/v1/responses")
    completed = [event for event in events_of(stream) if event["type"] == "response.completed"]
    usage = completed[0]["response"]["usage"]
    expected = {"input": usage["input_tokens"], "output": usage["output_tokens"],
                "cached": usage["input_tokens_details"]["cached_tokens"],
                "reasoning": usage["output_tokens_details"]["reasoning_tokens"]}
    assert asking.wait_for_event("streaming_end", id=rid)["usage"] == expected
    legacy = {"model": "gpt-5-mini", "stream": True, "prompt": "four five",
              "stream_options": {"include_usage": True}}
    stream, legacy_rid = raw_stream(asking, legacy, "/v1/completions")
    legacy_usage = counted(events_of(stream)[-1]["usage"])
    assert asking.wait_for_event("streaming_end", id=legacy_rid)["usage"] == legacy_usage
    after = tokens(asking, "gpt-5-mini")
    for kind in ("input", "output"):
        assert after[kind] - before.get(kind, 0) == expected[kind] + legacy_usage[kind]


def test_an_upstream_that_refuses_stream_options_gets_the_client_body(asking, mock_url):
    """An upstream that rejects stream_options (an older Azure API version)
    is asked again without them, the gpt-5 rules still applied: the client
    gets its stream, and the event says why."""
    body = {**chat_body(None), "model": "gpt-5", "max_tokens": 9}
    stream, rid = raw_stream(asking, body, **{"X-Mock-No-Stream-Options": "1"})
    assert stream.endswith(b"data: [DONE]\n\n") and b'"usage"' not in stream
    asking.wait_for_event("stream_usage_refused", id=rid)
    assert "usage" not in asking.wait_for_event("streaming_end", id=rid)
    sent = [json.loads(seen["body"]) for seen in upstream_saw(mock_url, rid)]
    assert len(sent) == 2 and "stream_options" in sent[0]
    assert "stream_options" not in sent[1] and sent[1]["max_completion_tokens"] == 9


def test_the_python_sdk_sees_the_stream_it_asked_for(asking):
    """The openai Python SDK: without stream_options no chunk lacks choices
    and none has usage; with include_usage the last chunk has the usage."""
    sdk = openai.OpenAI(base_url=asking.url + "/v1", api_key=TOKEN, max_retries=0)
    plain = list(sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True))
    assert plain and all(chunk.choices and chunk.usage is None for chunk in plain)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in plain)
    assert text == "Hello from the mock upstream."
    asked = list(sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True,
                                             stream_options={"include_usage": True}))
    assert asked[-1].choices == [] and asked[-1].usage is not None
    assert asked[-1].usage.prompt_tokens == 5
    assert sum(1 for chunk in asked if not chunk.choices) == 1
