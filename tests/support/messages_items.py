"""Anthropic Messages API requests, messages and content blocks for the
Messages bridge's unit tests (tests/unit/test_messages_request.py,
test_messages_blocks.py and test_messages_fields.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from genaiproxy.api.messages.request import MessagesRequestError, chat_request_of

# A small PNG's bytes in base64 (the bridge does not decode them).
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
# The metadata.user_id Claude Code 2.1.328 sends (captured on loopback).
USER_ID = json.dumps({"device_id": "65f9ab2c8ebc2927b7e444df4d4371844cecd380276dc67256fd9306819a0e0d",
                      "account_uuid": "", "session_id": "7b75b227-368a-494f-953b-3929dfebcf28"},
                     separators=(",", ":"))
# Anthropic's prompt-cache mark, on a block, a tool or the request.
CACHED = {"cache_control": {"type": "ephemeral"}}
# The token field of the gpt-5 family and the o-series in chat.
CHAT_TOKEN = "max_completion_tokens"


def request(**fields: Any) -> dict[str, Any]:
    """A Messages request: gpt-4.1, max_tokens 1024, one user message, and
    C{fields}."""
    return {"model": "gpt-4.1", "max_tokens": 1024, "messages": [user("Hi")], **fields}


def chat_of(**fields: Any) -> dict[str, Any]:
    """The chat body for the request of C{fields}."""
    return chat_request_of(request(**fields)).chat


def messages_of(*messages: dict[str, Any], **fields: Any) -> list[dict[str, Any]]:
    """The chat messages for the Messages C{messages}."""
    return chat_request_of(request(messages=list(messages), **fields)).chat["messages"]


def refused(body: object) -> str:
    """The message of the 400 the request C{body} gets (it must get one)."""
    with pytest.raises(MessagesRequestError) as caught:
        chat_request_of(body)
    return caught.value.message


def user(*content: Any) -> dict[str, Any]:
    """A user message: one string, or blocks (a string among them is a text block)."""
    return _message("user", content)


def assistant(*content: Any) -> dict[str, Any]:
    """An assistant message: one string, or blocks."""
    return _message("assistant", content)


def system(*content: Any) -> dict[str, Any]:
    """A system message inside C{messages}, as Claude Code sends one."""
    return _message("system", content)


def _message(role: str, content: tuple[Any, ...]) -> dict[str, Any]:
    if len(content) == 1 and isinstance(content[0], str):
        return {"role": role, "content": content[0]}
    return {"role": role, "content": [text(c) if isinstance(c, str) else c for c in content]}


def text(value: str, **extra: Any) -> dict[str, Any]:
    """A text block."""
    return {"type": "text", "text": value, **extra}


def image(data: str = PNG, media_type: str = "image/png") -> dict[str, Any]:
    """An image block of base64 data."""
    return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                        "data": data}}


def tool_use(call_id: str, name: str = "Bash", **input_: Any) -> dict[str, Any]:
    """A tool_use block of an assistant message."""
    return {"type": "tool_use", "id": call_id, "name": name, "input": input_}


def tool_result(call_id: str, content: Any = "done", **extra: Any) -> dict[str, Any]:
    """The tool_result block answering C{call_id}."""
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


def thinking(words: str = "Let me see.") -> dict[str, Any]:
    """A thinking block, signed for Anthropic's models."""
    return {"type": "thinking", "thinking": words, "signature": "EqQBCkYIAxgCKkD..."}


def tool(name: str, description: str = "", /, **properties: Any) -> dict[str, Any]:
    """A client tool as Claude Code declares one (no type, an input_schema)."""
    return {"name": name, "description": description or f"Run {name}.",
            "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema",
                             "type": "object", "properties": properties,
                             "required": sorted(properties), "additionalProperties": False}}


def function(declared: dict[str, Any]) -> dict[str, Any]:
    """The chat function a client tool C{declared} becomes."""
    return {"type": "function", "function": {
        "name": declared["name"], "description": declared["description"],
        "parameters": declared["input_schema"]}}


def call(call_id: str, name: str = "Bash", arguments: str = "{}") -> dict[str, Any]:
    """A chat tool call, as the assistant message's tool_calls hold it."""
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}
