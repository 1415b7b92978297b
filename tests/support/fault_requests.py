"""The requests of the fault run (tests/integration/test_fault_run.py)
made with an HTTP client: what the run is set up with, a planned request
(L{Step}) and what every request uses (L{Context}), and each kind of request,
a coroutine that gives its outcome.  The raw-socket kinds are in
fault_raw.py; the table of kinds and the plan that runs them in
fault_traffic.py.
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from support import BASE_ENV

SEED = 1234
REQUESTS = 2500
CONCURRENCY = 48
KEY = BASE_ENV["GENAI_API_KEY"]
TOKENS = {"alice-laptop": "fault-alice-7f3a9c51", "ci-runner": "fault-ci-2b8e41d0"}
WRONG_TOKEN = "fault-wrong-0d9e77aa"
BODY_LIMIT = 1_000_000  # MAX_REQUEST_BODY_MB=1
KEEPALIVE_SEC = 3.0
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
UPSTREAM_STATUSES = (400, 401, 403, 404, 422, 500, 502, 503)
# Events that report a failure the run provokes on purpose; any other event
# at ERROR or above is a crash.
EXPECTED_ERROR_EVENTS = {"final_error", "stream_broken"}


class Unexpected(Exception):
    """A request's outcome that its kind does not allow."""


@dataclass(frozen=True)
class Step:
    """One planned request: its kind, its number, and a parameter drawn for it."""

    kind: str
    index: int
    token: str
    param: int = 0
    stream: bool = False

    @property
    def rid(self) -> str:
        return f"fault-{self.index}-{self.kind}"


@dataclass
class Context:
    """What every request of the run uses."""

    client: httpx.AsyncClient
    url: str
    port: int


Outcome = int | str
Runner = Callable[[Context, Step], Awaitable[Outcome]]


# Helpers for requests.


def headers_for(step: Step, **extra: str) -> dict[str, str]:
    headers = {"X-Request-ID": step.rid, "Authorization": f"Bearer {step.token}"}
    headers.update(extra)
    return headers


def chat_body(stream: bool = False, model: str = "gpt-4.1") -> dict[str, Any]:
    return {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "fault run"}]}


def check_error(status: int, body: bytes) -> int:
    """An error answer must be OpenAI-shaped JSON with a message."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        raise Unexpected(f"{status} without a JSON error: {body[:200]!r}") from None
    if not isinstance(message, str) or not message:
        raise Unexpected(f"{status} with an empty error message: {body[:200]!r}")
    return status


async def send(ctx: Context, method: str, path: str, headers: dict[str, str],
               **kwargs: Any) -> int:
    response = await ctx.client.request(method, ctx.url + path, headers=headers, **kwargs)
    if response.status_code >= 400:
        return check_error(response.status_code, response.content)
    return response.status_code


async def read_stream(ctx: Context, path: str, headers: dict[str, str],
                      body: dict[str, Any], leave_early: bool = False) -> Outcome:
    """Stream an answer; C{complete} when it ended with its terminal event,
    C{broken} when the proxy cut it after an error event, C{left} when the
    client closed it after the first event; an error status otherwise."""
    lines: list[str] = []
    try:
        async with ctx.client.stream("POST", ctx.url + path, json=body,
                                     headers=headers) as response:
            if response.status_code != 200:
                return check_error(response.status_code, await response.aread())
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    lines.append(line)
                    if leave_early:
                        return "left"  # leaving the block closes the connection
    except httpx.RemoteProtocolError:
        if lines and "proxy_error" in lines[-1]:
            return "broken"
        raise Unexpected(f"stream cut without an error event after {lines[-1:]}") from None
    if lines and (lines[-1] == "data: [DONE]" or '"response.completed"' in lines[-1]):
        return "complete"
    raise Unexpected(f"stream ended without its terminal event: {lines[-1:]}")


# The kinds of request, each with the outcomes it may have.


async def chat(ctx: Context, step: Step) -> Outcome:
    return await send(ctx, "POST", CHAT, headers_for(step), json=chat_body())


async def responses(ctx: Context, step: Step) -> Outcome:
    return await send(ctx, "POST", RESPONSES, headers_for(step),
                      json={"model": "gpt-5", "input": "fault run", "max_tokens": 50})


async def embeddings(ctx: Context, step: Step) -> Outcome:
    return await send(ctx, "POST", "/v1/embeddings", headers_for(step),
                      json={"model": "text-embedding-3-small", "input": ["a", "b"]})


async def models(ctx: Context, step: Step) -> Outcome:
    return await send(ctx, "GET", "/v1/models", headers_for(step))


async def stream_chat(ctx: Context, step: Step) -> Outcome:
    events = {"X-Mock-Events": str(step.param)}
    return await read_stream(ctx, CHAT, headers_for(step, **events), chat_body(True))


async def stream_responses(ctx: Context, step: Step) -> Outcome:
    return await read_stream(ctx, RESPONSES, headers_for(step),
                             {"model": "gpt-5", "input": "fault run", "stream": True})


# 1000 events 50 ms apart: an upstream stream the proxy failed to cancel
# when its client left would still be running when the run is checked.
LONG_STREAM = {"X-Mock-Events": "1000", "X-Mock-Event-Delay": "0.05"}


async def stream_gzip(ctx: Context, step: Step) -> Outcome:
    """A gzipped stream (decoded by the proxy), read whole or (C{stream}) left."""
    headers = headers_for(step, **{"X-Mock-Gzip": "1"}, **(LONG_STREAM if step.stream else {}))
    return await read_stream(ctx, CHAT, headers, chat_body(True), leave_early=step.stream)


async def stream_leave(ctx: Context, step: Step) -> Outcome:
    return await read_stream(ctx, CHAT, headers_for(step, **LONG_STREAM), chat_body(True),
                             leave_early=True)


async def stream_drop(ctx: Context, step: Step) -> Outcome:
    drop = {"X-Mock-Events": "6", "X-Mock-Drop-After": str(step.param)}
    path, body = (RESPONSES, {"model": "gpt-4.1", "input": "x", "stream": True}) \
        if step.stream else (CHAT, chat_body(True))
    return await read_stream(ctx, path, headers_for(step, **drop), body)


async def stream_quiet(ctx: Context, step: Step) -> Outcome:
    quiet = {"X-Mock-Events": "3", "X-Mock-Event-Delay": "3"}  # silent > REQUEST_TIMEOUT
    return await read_stream(ctx, CHAT, headers_for(step, **quiet), chat_body(True))


async def upstream_status(ctx: Context, step: Step) -> Outcome:
    headers = headers_for(step, **{"X-Mock-Status": str(step.param)})
    if step.stream:
        return await read_stream(ctx, CHAT, headers, chat_body(True))
    return await send(ctx, "POST", CHAT, headers, json=chat_body())


async def rate_limited(ctx: Context, step: Step) -> Outcome:
    headers = headers_for(step, **{"X-Mock-Status": "429", "X-Mock-Header": "Retry-After: 0"})
    return await send(ctx, "POST", CHAT, headers, json=chat_body())


async def rate_limit_then_ok(ctx: Context, step: Step) -> Outcome:
    headers = headers_for(step, **{"X-Mock-Fail-First": "1", "X-Mock-Fail-Status": "429",
                                   "X-Mock-Header": "Retry-After: 0"})
    return await send(ctx, "POST", CHAT, headers, json=chat_body())


async def reset_then_ok(ctx: Context, step: Step) -> Outcome:
    fail = {"X-Mock-Fail-First": "1"}
    if step.stream:
        fail["X-Mock-Fail-Mid-Body"] = "1"
    return await send(ctx, "POST", CHAT, headers_for(step, **fail), json=chat_body())


async def reset_always(ctx: Context, step: Step) -> Outcome:
    headers = headers_for(step, **{"X-Mock-Drop-After": "0"})
    return await send(ctx, "POST", CHAT, headers, json=chat_body())


async def hang(ctx: Context, step: Step) -> Outcome:
    return await send(ctx, "POST", CHAT, headers_for(step, **{"X-Mock-Hang": "1"}),
                      json=chat_body(step.stream))


async def give_up(ctx: Context, path: str, headers: dict[str, str], **kwargs: Any) -> Outcome:
    """A client that stops waiting for its answer after a moment."""
    try:
        await ctx.client.post(ctx.url + path, headers=headers, timeout=0.4, **kwargs)
    except httpx.TimeoutException:
        return "gave_up"
    return "answered"


async def hang_leave(ctx: Context, step: Step) -> Outcome:
    """Gives up on a hanging upstream; with C{stream}, with an upload spooled
    to a file on its way upstream."""
    headers = headers_for(step, **{"X-Mock-Hang": "1"})
    if step.stream:
        return await give_up(ctx, "/v1/files", headers, content=b"h" * 600_000)
    return await give_up(ctx, CHAT, headers, json=chat_body())


async def rate_limit_leave(ctx: Context, step: Step) -> Outcome:
    """Gives up while the proxy waits out a 429's Retry-After (1 s)."""
    return await give_up(ctx, CHAT, headers_for(step, **{"X-Mock-Status": "429"}),
                         json=chat_body(step.stream))


async def upload(ctx: Context, step: Step) -> Outcome:
    """An upload large enough to be spooled to a file (maybe after a reset)."""
    extra = {"X-Mock-Fail-First": "1"} if step.stream else {}
    size = step.param
    response = await ctx.client.post(ctx.url + "/v1/files", content=b"u" * size,
                                     headers=headers_for(step, **extra))
    if response.status_code != 200:
        return check_error(response.status_code, response.content)
    if response.json().get("body_bytes") != size:
        raise Unexpected(f"upload arrived as {response.text[:200]}")
    return 200


async def download(ctx: Context, step: Step) -> Outcome:
    """A large answer passed through; with C{stream} the client leaves after
    its first piece."""
    headers = headers_for(step, **{"X-Mock-Body-Bytes": str(step.param)})
    async with ctx.client.stream("GET", ctx.url + "/v1/files/file-1/content",
                                 headers=headers) as response:
        if response.status_code != 200:
            return check_error(response.status_code, await response.aread())
        received = 0
        async for piece in response.aiter_bytes():
            received += len(piece)
            if step.stream:
                return "left"
    return 200 if received == step.param else f"short:{received}"


async def oversize_declared(ctx: Context, step: Step) -> Outcome:
    return await send(ctx, "POST", "/v1/files", headers_for(step),
                      content=b"o" * (BODY_LIMIT + 200_000))


async def oversize_chunked(ctx: Context, step: Step) -> Outcome:
    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(20):  # 1.3 MB in 64 KiB chunks
            yield b"c" * 65536

    return await send(ctx, "POST", "/v1/files", headers_for(step), content=pieces())


async def no_token(ctx: Context, step: Step) -> Outcome:
    return await send(ctx, "POST", CHAT, {"X-Request-ID": step.rid}, json=chat_body())


async def wrong_token(ctx: Context, step: Step) -> Outcome:
    headers = {"X-Request-ID": step.rid, "Authorization": f"Bearer {WRONG_TOKEN}"}
    return await send(ctx, "POST", CHAT, headers, json=chat_body(step.stream))
