"""An in-memory proxy with models.yaml's limits, for the tests of the limits
in the request path (tests/unit/test_limits_proxy.py and
test_limits_streams.py): an upstream that answers every route with its
usage (and can hold a stream open), the proxy in front of it, and the log
events it wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from genaiproxy.testing import MemoryProxy

USAGE = {"prompt_tokens": 60, "completion_tokens": 40, "total_tokens": 100}
MODELS = """\
limits:
{limits}
models:
  - id: gpt-5
    price: {{input: 1.25, output: 10.0, cached_input: 0.125}}
  - id: gpt-4.1-mini
  - id: text-embedding-3-small
"""
TOKENS = "alice: tok-alice\nci-runner: tok-ci\n"


def bearer(token: str) -> dict[str, list[str]]:
    return {"Authorization": [f"Bearer {token}"]}


class Upstream(Resource):
    """Answers chat (whole or streamed, with the usage), embeddings and
    Responses requests, each with the shared key's own rate-limit headers;
    holds streams open while C{hold} is set."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []
        self.hold = False
        self.held: list[Request] = []

    def render_GET(self, request: Request) -> bytes:
        """Its root, as a health probe reads it."""
        request.setHeader(b"content-type", b"application/json")
        return b'{"status": "ok"}'

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        body = json.loads(request.content.read() or b"{}")
        self.calls.append(request.path)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-ratelimit-limit-requests", b"10000")
        request.setHeader(b"x-ratelimit-remaining-requests", b"9999")
        if request.path.endswith(b"/embeddings"):
            return json.dumps({"object": "list", "data": [], "usage": {
                "prompt_tokens": 100, "total_tokens": 100}}).encode()
        if request.path.endswith(b"/responses"):
            return json.dumps({"object": "response", "status": "completed", "output": [],
                               "usage": {"input_tokens": 60, "output_tokens": 40,
                                         "total_tokens": 100}}).encode()
        if not body.get("stream"):
            return json.dumps({"object": "chat.completion", "model": body.get("model"),
                               "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                   "role": "assistant", "content": "Hi."}}],
                               "usage": USAGE}).encode()
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(b'data: {"choices":[{"index":0,"delta":{"content":"Hi."}}]}\n\n')
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        self.end(request)
        return NOT_DONE_YET

    @staticmethod
    def end(request: Request) -> None:
        """Finish a stream: its finish reason, its usage chunk, [DONE]."""
        request.write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
        request.write(b'data: {"choices":[],"usage":' + json.dumps(USAGE).encode() + b"}\n\n")
        request.write(b"data: [DONE]\n\n")
        request.finish()


def limited_proxy(tmp_path: Path, limits: str, upstream: Upstream | None = None,
                  **environ: str) -> tuple[MemoryProxy, Upstream, Path]:
    """A proxy whose models.yaml has C{limits} (the YAML under C{limits:},
    indented), the clients of L{TOKENS}; its upstream; its models.yaml."""
    upstream = upstream or Upstream()
    models = tmp_path / "models.yaml"
    models.write_text(MODELS.format(limits=limits))
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    proxy = MemoryProxy(upstream, {"AUTH_TOKENS_FILE": str(tokens), **environ},
                        models_path=str(models))
    return proxy, upstream, models


@contextmanager
def logged() -> Iterator[list[dict[str, Any]]]:
    """The log events written meanwhile."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [event for event in events if event.get("log_format") == name]
