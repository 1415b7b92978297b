"""The offline estimate of a Messages request's input tokens (unit:
L{genaiproxy.api.messages.count}): above the real counts of the texts
measured, every part of a request counted, and no body that makes it
raise."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genaiproxy.api.messages.count import (
    IMAGE_TOKENS,
    MARGIN,
    REPLY_TOKENS,
    count_tokens,
    text_tokens,
)

# Texts with their token counts measured offline (o200k_base and
# cl100k_base from the gpt-tokenizer npm package 4.0.0).
MEASURED = [
    ("The proxy answers the Messages API itself and translates each request to a chat "
     "completion, so that Claude Code runs on the company's models through the same keys, "
     "network, logs and metrics as every other client.", 40, 41),
    ('def retry_after(headers: dict[str, str], default: float = 1.0) -> float:\n'
     '    """Seconds to wait, from Retry-After or retry-after-ms."""\n'
     '    value = headers.get("retry-after-ms")\n'
     '    if value is not None:\n'
     '        return float(value) / 1000\n'
     '    return float(headers.get("retry-after", default))\n', 75, 75),
    (json.dumps({"type": "object", "properties": {
        "command": {"type": "string", "description": "The command to execute"},
        "timeout": {"type": "number", "description": "Optional timeout in milliseconds (max 600000)"},
        "run_in_background": {"type": "boolean"}},
        "required": ["command"], "additionalProperties": False}), 75, 75),
    ("代理服务器把每个请求翻译成聊天补全请求，然后把回答翻译回来。", 20, 37),
    ("3f9a2c1e8b7d6f5a4c3b2a1f0e9d8c7b6a5f4e3d Fix retry on stale connections\n"
     "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678 Add the Messages bridge\n"
     "0fedcba9876543210fedcba9876543210fedcba9 Count tokens offline", 102, 99),
]


def only_text(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize(("text", "o200k", "cl100k"), MEASURED)
def test_the_estimate_is_above_the_openai_tokenizers(text, o200k, cl100k):
    """For English, code, a JSON schema and hex ids, the request's estimate
    is above what both OpenAI tokenizers count; for Chinese, above o200k
    (cl100k, an older one, splits CJK finer)."""
    estimate = count_tokens(only_text(text))
    assert estimate >= o200k
    if text.isascii():
        assert estimate >= cl100k


@pytest.mark.parametrize(("text", "pieces"), [
    ("", 0),
    ("hello world", 2),
    ("getElementById", 4),
    ("HTTPServer", 2),
    ("internationalization", 3),
    ("1234567", 3),
    ('{"a":', 3),
    ("привет", 3),
    ("你好", 2),
    ("line\n    indented", 4),
])
def test_text_pieces(text, pieces):
    """How text is cut: words of up to 8 letters, camel-case parts, groups
    of 3 digits, pairs of punctuation or two-byte letters, one CJK
    character, line ends and runs of blanks."""
    assert text_tokens(text) == pieces


def test_every_part_of_a_request_counts():
    """The system prompt (a string or text blocks: the same), the messages'
    text, tool calls' names and inputs, tool results, images and the
    tools' names, descriptions and schemas all add to the count; thinking
    (which the bridge does not send upstream) adds nothing."""
    base = {"messages": [{"role": "user", "content": "Hi"}]}
    counted = count_tokens(base)
    assert count_tokens({**base, "system": "Be brief."}) == count_tokens(
        {**base, "system": [{"type": "text", "text": "Be brief.",
                             "cache_control": {"type": "ephemeral"}}]}) > counted
    more: list[dict[str, Any]] = [
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls -l"}},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt"},
        {"type": "tool_result", "tool_use_id": "toolu_1",
         "content": [{"type": "text", "text": "ok"}]},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "A plain document."}},
    ]
    for block in more:
        grown = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                           block]}]}
        assert count_tokens(grown) > counted, block
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo" * 1000}}
    with_image = {"messages": [{"role": "user", "content": [image]}]}
    assert count_tokens(with_image) >= IMAGE_TOKENS * MARGIN
    thinking = {"messages": [{"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Long thoughts. " * 100, "signature": "sig"},
        {"type": "text", "text": "Hi"}]}]}
    assert count_tokens(thinking) == counted
    tool = {"name": "Bash", "description": "Run a command.",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}
    with_tool = count_tokens({**base, "tools": [tool]})
    assert with_tool > counted
    assert count_tokens({**base, "tools": [{**tool, "description": "Run it. " * 50}]}) > with_tool


def test_a_claude_code_sized_request_is_counted_quickly_and_high():
    """A request as big as a long Claude Code session's (a megabyte of
    code in tool results) counts above characters / 4, the usual rule of
    thumb, for code."""
    code = ('def handler(request):\n    return {"status": 200, "body": request.body}\n' * 14000)
    body = {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": code}]}]}
    assert count_tokens(body) > len(code) / 4


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["type", "text", "content", "source", "data", "input",
                                       "name", "role", "input_schema", "description"]),
                      children, max_size=4),
    max_leaves=20)


@given(st.dictionaries(st.sampled_from(["system", "messages", "tools", "model"]), json_values))
def test_any_body_gets_a_count(body):
    """Whatever a body holds (the request side refuses bad ones, but this
    must not break on them), the count is a whole number, at least the
    answer's priming."""
    counted = count_tokens(body)
    assert isinstance(counted, int) and counted >= math.ceil(REPLY_TOKENS * MARGIN)
