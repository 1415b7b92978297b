"""Responses API request items and bodies for the request bridge's unit
tests (tests/unit/test_responses_request.py, test_responses_tools.py,
test_responses_input.py)."""

from __future__ import annotations

from typing import Any

import pytest

from genaiproxy.api.responses.request import BridgeRequestError, chat_request_of


def chat_of(**fields: Any) -> dict[str, Any]:
    """The chat body for a request of C{fields} (model gpt-4.1 by default)."""
    return chat_request_of({"model": "gpt-4.1", "input": "Hi", **fields}).chat


def refused(body: dict[str, Any]) -> BridgeRequestError:
    """The error a request gets (it must get one)."""
    with pytest.raises(BridgeRequestError) as caught:
        chat_request_of({"model": "gpt-4.1", "input": "Hi", **body})
    return caught.value


def messages_of(items: list[Any], model: str = "gpt-4.1") -> list[dict[str, Any]]:
    """The chat messages for the input C{items}."""
    return chat_request_of({"model": model, "input": items}).chat["messages"]


def function(name: str, **extra: Any) -> dict[str, Any]:
    """A function tool as Codex declares one."""
    return {"type": "function", "name": name, "description": f"Run {name}.",
            "parameters": {"type": "object", "properties": {}}, "strict": False, **extra}


def call(call_id: str, name: str = "exec_command", arguments: str = "{}",
         **extra: Any) -> dict[str, Any]:
    """A C{function_call} item of the client's history."""
    return {"type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, **extra}


def output(call_id: str, out: Any = "done") -> dict[str, Any]:
    """The C{function_call_output} item for C{call_id}."""
    return {"type": "function_call_output", "call_id": call_id, "output": out}


def user(text: str) -> dict[str, Any]:
    """A user C{message} item of one text part."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
