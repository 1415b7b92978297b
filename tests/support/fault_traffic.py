"""The traffic of the fault run (tests/integration/test_fault_run.py): the
kinds of request it mixes (fault_requests.py, fault_raw.py), what each may
get back, and the seeded plan that runs them.
"""

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from support.fault_raw import (
    raw_bad_line,
    raw_half_head,
    raw_idle_keepalive,
    raw_long_header,
    raw_long_line,
    raw_partial_body,
    raw_pipelined,
)
from support.fault_requests import (
    BODY_LIMIT,
    CONCURRENCY,
    KEEPALIVE_SEC,
    TOKENS,
    UPSTREAM_STATUSES,
    Context,
    Outcome,
    Runner,
    Step,
    chat,
    download,
    embeddings,
    hang,
    hang_leave,
    models,
    no_token,
    oversize_chunked,
    oversize_declared,
    rate_limit_leave,
    rate_limit_then_ok,
    rate_limited,
    reset_always,
    reset_then_ok,
    responses,
    stream_chat,
    stream_drop,
    stream_gzip,
    stream_leave,
    stream_quiet,
    stream_responses,
    upload,
    upstream_status,
    wrong_token,
)


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
