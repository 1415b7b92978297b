"""Admitting ahead of Redis's answer (L{genaiproxy.limits.redis_view}),
against a real redis-server: the admission script tells the room a
client's windows have left, a client's next request goes before its
script is answered (which still runs), and on one replica the requests let
through are exactly those this process's windows
(L{genaiproxy.limits.MemoryWindows}) let through."""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import wait_for
from support.redis_server import (
    RedisServer,
    client_limits,
    end_step,
    in_reactor,
    replica,
    run_redis,
    scripts_run,
)

from genaiproxy.config import ClientLimits
from genaiproxy.limits import Admission, MemoryWindows
from genaiproxy.limits.redis_scripts import ADMIT, limits_arg
from genaiproxy.limits.redis_store import RedisWindows

NOON = calendar.timegm((2026, 12, 4, 12, 0, 0))


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with run_redis() as server:
        yield server


def test_the_admission_script_tells_the_room_left_in_every_window(redis):
    """Let through, ADMIT's answer ends with the concurrency slots free
    after the request, the tokens left today and the budget left today
    and this month; refused, with '-' for each."""
    key = "genai-proxy:limits:{room}"
    limits = limits_arg(ClientLimits(concurrent_requests=3, tokens_per_day=1000,
                                     budget_per_day=2.5, budget_per_month=10.0))

    def admit(lease: str) -> list[str]:
        return redis.command("EVAL", ADMIT.text, "1", key, repr(float(NOON)), limits,
                             f"{lease} 60", "", "").split()

    assert admit("first")[8:] == ["2", "1000", "2.5", "10"]
    redis.command("HSET", f"{key}:day:2026-12-04", "tokens", "300", "cost", "1")
    redis.command("SET", f"{key}:month:2026-12", "4")
    assert admit("second")[8:] == ["1", "700", "1.5", "6"]
    assert admit("third")[8:] == ["0", "700", "1.5", "6"]
    refused = admit("fourth")
    assert refused[0] == "concurrent_requests" and refused[8:] == ["-", "-", "-", "-"]


def test_a_clients_next_request_goes_before_its_script_is_answered(redis):
    """Once Redis let a client's request through with room to spare, its
    next request is let through at once (the Deferred has fired before
    Redis could answer), and its script still runs in Redis, counting it:
    a third request, on a replica that waits for Redis, sees both taken."""
    windows, waiting = replica(redis), replica(redis, view_age=0.0)
    name = f"ahead-{uuid.uuid4().hex}"
    limits = ClientLimits(requests_per_minute=10)
    try:
        redis.command("CONFIG", "RESETSTAT")

        def two_requests() -> Any:
            def second(first: Admission) -> tuple[Admission, bool, Admission]:
                following = windows.admit(name, limits)
                return first, following.called, following.result

            return windows.admit(name, limits).addCallback(second)

        first, at_once, second = in_reactor(two_requests)
        assert first.requests.remaining == 9
        assert at_once and second.refused_by is None and second.requests.remaining == 8
        wait_for(lambda: scripts_run(redis, "evalsha") == 2)
        assert in_reactor(waiting.admit, name, limits).requests.remaining == 7
    finally:
        for store in (windows, waiting):
            in_reactor(store.disconnect)


steps = st.lists(st.tuples(
    st.sampled_from(["admit", "admit", "admit", "spend", "release"]),
    st.integers(min_value=0, max_value=1500),
    st.sampled_from([0.0, 0.001, 0.0033, 0.01]),
), max_size=24)


@pytest.fixture(scope="module")
def acting_on_views(redis: RedisServer) -> Iterator[RedisWindows]:
    """A replica whose views stay young (a minute), counting at noon."""
    windows = replica(redis, view_age=60.0, now=lambda: float(NOON))
    yield windows
    in_reactor(windows.disconnect)


@settings(max_examples=200)
@given(client_limits, steps)
def test_on_one_replica_the_view_lets_through_what_redis_would(acting_on_views, limits,
                                                               sequence):
    """A replica acting on its views, alone on its Redis: whatever the
    requests, answers and ends, each request gets the verdict of this
    process's windows at the same time, with the same remaining requests
    (a limit of N lets exactly N through, never N + 1) and tokens, whether
    it went ahead of Redis's answer or waited for it.  (Remaining tokens
    may differ by one either way: a view counts whole tokens from Redis's
    floored sum, and Redis and this process sum a token's share of a minute
    in floats, in different orders.)"""
    windows, memory = acting_on_views, MemoryWindows()
    name = f"one-replica-{uuid.uuid4().hex}"
    open_leases: list[Admission] = []
    for action, tokens, cost in sequence:
        if action == "admit":
            expected = memory.admit(name, limits, NOON)
            found = in_reactor(windows.admit, name, limits)
            assert found.refused_by == expected.refused_by
            assert (found.requests and found.requests.remaining) == (
                expected.requests and expected.requests.remaining)
            if expected.tokens is not None:
                assert abs(found.tokens.remaining - expected.tokens.remaining) <= 1
            if found.refused_by is None:
                open_leases.append(found)
        else:
            end_step(windows, memory, name, limits, action, tokens, cost, NOON, open_leases)
