"""The traffic of the fault run (tests/test_fault_run.py): the kinds of
request it mixes, what each may get back, and the seeded plan that runs them.
"""


import asyncio
import json
import random
import time
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


# Raw sockets: what no HTTP library sends.


async def raw(ctx: Context, data: bytes, close_after_send: bool = False,
              timeout: float = 15.0) -> Outcome:
    """Send C{data}; return the status of the answer read until the proxy
    closes, or C{closed} when we close first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ctx.port)
    try:
        writer.write(data)
        await writer.drain()
        if close_after_send:
            return "closed"
        answer = await asyncio.wait_for(reader.read(), timeout)  # until EOF
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head:
        raise Unexpected("connection closed without an answer")
    status = int(head.split(b" ", 2)[1])
    return check_error(status, body) if status >= 400 else status


def raw_head(step: Step, method: bytes = b"POST", path: bytes = b"/v1/files",
             extra: bytes = b"") -> bytes:
    return (method + b" " + path + b" HTTP/1.1\r\nHost: fault\r\n"
            + b"X-Request-ID: " + step.rid.encode() + b"\r\n"
            + b"Authorization: Bearer " + step.token.encode() + b"\r\n" + extra)


async def raw_bad_line(ctx: Context, step: Step) -> Outcome:
    return await raw(ctx, b"NOT HTTP AT ALL\r\n\r\n")


async def raw_long_header(ctx: Context, step: Step) -> Outcome:
    return await raw(ctx, raw_head(step, b"GET", b"/v1/models",
                                   b"X-Big: " + b"h" * 9000 + b"\r\n\r\n"))


async def raw_long_line(ctx: Context, step: Step) -> Outcome:
    return await raw(ctx, b"GET /v1/models?" + b"q" * 9000 + b" HTTP/1.1\r\n\r\n")


async def raw_half_head(ctx: Context, step: Step) -> Outcome:
    """Half a head: closed by us at once, or (C{stream}) left until HEADER_TIMEOUT."""
    return await raw(ctx, raw_head(step)[:40], close_after_send=not step.stream)


async def raw_partial_body(ctx: Context, step: Step) -> Outcome:
    """A body the proxy spools to a file: cut off by us, or (C{stream})
    stalled until REQUEST_TIMEOUT."""
    head = raw_head(step, extra=b"Content-Length: 300000\r\n\r\n")
    return await raw(ctx, head + b"p" * 120_000, close_after_send=not step.stream)


async def raw_idle_keepalive(ctx: Context, step: Step) -> Outcome:
    """One answer, then an idle connection the proxy must close itself."""
    started = time.monotonic()
    status = await raw(ctx, b"GET /livez HTTP/1.1\r\nHost: fault\r\n\r\n",
                       timeout=KEEPALIVE_SEC + 15)
    return "closed_idle" if status == 200 and time.monotonic() - started > 1 else status


async def raw_pipelined(ctx: Context, step: Step) -> Outcome:
    """Three streams asked for at once on one connection: all three read, or
    (C{stream}) the connection dropped after the first bytes."""
    body = json.dumps(chat_body(True)).encode()
    one = raw_head(step, path=CHAT.encode(), extra=b"Content-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
    reader, writer = await asyncio.open_connection("127.0.0.1", ctx.port)
    data = b""
    try:
        writer.write(one * 3)
        while data.count(b"data: [DONE]") < 3:
            piece = await asyncio.wait_for(reader.read(65536), 15)
            if not piece or step.stream:
                break
            data += piece
    finally:
        writer.close()
    return "left" if step.stream else data.count(b"data: [DONE]")


@dataclass(frozen=True)
class Kind:
    """A kind of request: how often, how to draw its parameter, what it may give."""

    weight: float
    run: Runner
    expected: frozenset[Outcome]
    draw: Callable[[random.Random], tuple[int, bool]] = lambda rng: (0, rng.random() < 0.5)


def _fixed(*outcomes: Outcome) -> frozenset[Outcome]:
    return frozenset(outcomes)


KINDS: dict[str, Kind] = {
    "chat": Kind(14, chat, _fixed(200)),
    "responses": Kind(5, responses, _fixed(200)),
    "embeddings": Kind(6, embeddings, _fixed(200)),
    "models": Kind(3, models, _fixed(200)),
    "stream_chat": Kind(10, stream_chat, _fixed("complete"),
                        lambda rng: (rng.randint(1, 8), False)),
    "stream_responses": Kind(4, stream_responses, _fixed("complete")),
    "stream_gzip": Kind(3, stream_gzip, _fixed("complete", "left")),
    "stream_leave": Kind(8, stream_leave, _fixed("left")),
    "stream_drop": Kind(5, stream_drop, _fixed("broken"),
                        lambda rng: (rng.randint(2, 5), rng.random() < 0.3)),
    "stream_quiet": Kind(0.6, stream_quiet, _fixed("broken")),
    # The expected status is the one drawn (see expected_for).
    "upstream_status": Kind(8, upstream_status, _fixed(*UPSTREAM_STATUSES),
                            lambda rng: (rng.choice(UPSTREAM_STATUSES), rng.random() < 0.3)),
    "rate_limited": Kind(3, rate_limited, _fixed(429)),
    "rate_limit_then_ok": Kind(3, rate_limit_then_ok, _fixed(200)),
    "reset_then_ok": Kind(5, reset_then_ok, _fixed(200)),
    "reset_always": Kind(2, reset_always, _fixed(502)),
    "hang": Kind(1.5, hang, _fixed(502, 504)),
    "hang_leave": Kind(2, hang_leave, _fixed("gave_up")),
    "rate_limit_leave": Kind(1, rate_limit_leave, _fixed("gave_up")),
    "upload": Kind(4, upload, _fixed(200),
                   lambda rng: (rng.randint(150_000, BODY_LIMIT), rng.random() < 0.3)),
    "download": Kind(3, download, _fixed(200, "left"),
                     lambda rng: (rng.randint(1, 8) << 20, rng.random() < 0.5)),
    "oversize_declared": Kind(2, oversize_declared, _fixed(413)),
    "oversize_chunked": Kind(2, oversize_chunked, _fixed(413)),
    "no_token": Kind(2, no_token, _fixed(401)),
    "wrong_token": Kind(2, wrong_token, _fixed(401)),
    "raw_bad_line": Kind(1, raw_bad_line, _fixed(400)),
    "raw_long_header": Kind(1, raw_long_header, _fixed(431)),
    "raw_long_line": Kind(0.7, raw_long_line, _fixed(414)),
    "raw_half_head": Kind(1.2, raw_half_head, _fixed("closed", 408),
                          lambda rng: (0, rng.random() < 0.3)),
    "raw_partial_body": Kind(1.2, raw_partial_body, _fixed("closed", 408),
                             lambda rng: (0, rng.random() < 0.3)),
    "raw_idle_keepalive": Kind(0.4, raw_idle_keepalive, _fixed("closed_idle")),
    "raw_pipelined": Kind(1, raw_pipelined, _fixed(3, "left")),
}


def expected_for(step: Step) -> frozenset[Outcome]:
    """The outcomes C{step} may have: its kind's, narrowed by what was drawn."""
    if step.kind == "upstream_status":
        return _fixed(step.param)
    if step.kind in ("download", "raw_pipelined", "stream_gzip"):
        left = _fixed("left")
        return left if step.stream else KINDS[step.kind].expected - left
    if step.kind in ("raw_half_head", "raw_partial_body"):
        return _fixed(408 if step.stream else "closed")
    return KINDS[step.kind].expected


def plan(count: int, seed: int) -> list[Step]:
    """The run's requests, drawn from a fixed seed."""
    rng = random.Random(seed)
    names = list(KINDS)
    weights = [KINDS[name].weight for name in names]
    tokens = list(TOKENS.values())
    steps = []
    for index, kind in enumerate(rng.choices(names, weights, k=count)):
        param, flag = KINDS[kind].draw(rng)
        steps.append(Step(kind, index, rng.choice(tokens), param, flag))
    return steps


async def run_step(ctx: Context, step: Step) -> str | None:
    """Run one request; a description of what went wrong, or None."""
    try:
        outcome = await KINDS[step.kind].run(ctx, step)
    except Exception as e:  # any surprise is a finding, reported with its step
        return f"{step}: {type(e).__name__}: {e}"
    if outcome not in expected_for(step):
        return f"{step}: got {outcome!r}, expected one of {sorted(map(str, expected_for(step)))}"
    return None


async def run_all(url: str, steps: list[Step]) -> list[str]:
    """Run C{steps} with at most CONCURRENCY at a time; the problems found."""
    queue: asyncio.Queue[Step] = asyncio.Queue()
    for step in steps:
        queue.put_nowait(step)
    problems: list[str] = []
    # The client drops its idle connections before the proxy's keep-alive
    # timeout, so that no request is sent on a connection being closed.
    limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=KEEPALIVE_SEC / 2)
    async with httpx.AsyncClient(trust_env=False, timeout=30, limits=limits) as client:
        ctx = Context(client, url, int(url.rsplit(":", 1)[1]))

        async def worker() -> None:
            while not queue.empty():
                problem = await run_step(ctx, queue.get_nowait())
                if problem is not None:
                    problems.append(problem)

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), 300)
    return problems


# The daemon's open descriptors.


