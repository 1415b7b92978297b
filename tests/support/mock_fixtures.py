"""Fixtures' workings and helpers shared by the mock upstream's tests
(test_mock_upstream.py: its HTTP controls; test_mock_apis.py: its APIs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai

from support import run_mock_upstream

CHAT = {"model": "gpt-5", "messages": [{"role": "user", "content": "Say hello"}]}
RESPONSE = {"model": "gpt-5", "input": "Say hello", "stream": True}


def running_mock() -> Iterator[str]:
    """One mock upstream for a module's tests; yields its URL."""
    with run_mock_upstream("--event-delay", "0.05") as (url, _):
        yield url


def reset_client(mock_url: str) -> Iterator[httpx.Client]:
    """An httpx client on the mock, with its log and counters reset."""
    with httpx.Client(base_url=mock_url, timeout=5.0) as client:
        client.delete("/_mock/requests").raise_for_status()
        yield client


def sdk_for(mock_url: str) -> Iterator[openai.OpenAI]:
    """The openai SDK pointed straight at the mock."""
    with httpx.Client(trust_env=False, timeout=5.0) as http_client:
        yield openai.OpenAI(
            base_url=f"{mock_url}/v1",
            api_key="sk-mock",
            max_retries=0,
            http_client=http_client,
        )


def sse_payloads(lines: list[str]) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in lines if line.startswith("data: ")]


def typed_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """An ``event:``/``data:`` SSE body as (event name, decoded data) pairs,
    checking that every event is exactly those two lines."""
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((event_line[len("event: "):], json.loads(data_line[len("data: "):])))
    return events
