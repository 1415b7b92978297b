"""The ends of requests (their answers' tokens and cost, their concurrency
slots given back) in the windows shared through Redis
(L{genaiproxy.limits.redis_store}), against a real redis-server: they go
with the client's next request, in its one script, or on their own a
moment later when no request comes, and at the stop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import wait_for
from support.redis_server import (
    RedisServer,
    in_reactor,
    replica,
    run_redis,
    scripts_run,
)

from genaiproxy.config import ClientLimits

LIMITS = ClientLimits(concurrent_requests=1, tokens_per_day=100)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with run_redis() as server:
        yield server


def test_a_request_is_one_script_its_end_goes_with_the_next(redis):
    """Requests one after another cost one script each: an answer's tokens
    and its concurrency slot go to Redis with the client's next request,
    which counts them before its verdict (the slot is free again, the
    tokens are in the day's window)."""
    windows = replica(redis, lease_sec=3000.0, settle_delay=3000.0)
    try:
        in_reactor(windows.admit, "one-script", ClientLimits(requests_per_minute=1000))
        redis.command("CONFIG", "RESETSTAT")
        limits = ClientLimits(concurrent_requests=1, tokens_per_day=1000)
        for _ in range(10):
            admitted = in_reactor(windows.admit, "one-script", limits)
            assert admitted.refused_by is None
            in_reactor(windows.spend, "one-script", limits, 100, 0.0)
            in_reactor(windows.release, "one-script", admitted.lease)
        assert in_reactor(windows.admit, "one-script", limits).refused_by == "tokens_per_day"
        assert scripts_run(redis) == 11
    finally:
        in_reactor(windows.disconnect)


def test_the_ends_no_request_takes_are_told_a_moment_later(redis):
    """A client that sends nothing more: its last answer's tokens and its
    slot still reach Redis, on their own a moment later, where another
    replica sees them (the slot free, the day's tokens used up)."""
    first, second = replica(redis), replica(redis)
    try:
        admitted = in_reactor(first.admit, "quiet", LIMITS)
        assert in_reactor(second.admit, "quiet", LIMITS).refused_by == "concurrent_requests"
        in_reactor(first.spend, "quiet", LIMITS, 100, 0.0)
        in_reactor(first.release, "quiet", admitted.lease)
        wait_for(lambda: in_reactor(second.admit, "quiet", LIMITS).refused_by
                 == "tokens_per_day")
    finally:
        for windows in (first, second):
            in_reactor(windows.disconnect)


def test_the_ends_are_told_at_the_stop(redis):
    """A replica that stops tells Redis the ends it had not told yet
    before it closes its connection: another replica finds the slot free
    and the day's tokens used up at once."""
    first, second = replica(redis, settle_delay=3000.0), replica(redis)
    try:
        admitted = in_reactor(first.admit, "stopping", LIMITS)
        in_reactor(first.spend, "stopping", LIMITS, 100, 0.0)
        in_reactor(first.release, "stopping", admitted.lease)
        in_reactor(first.disconnect)
        assert in_reactor(second.admit, "stopping", LIMITS).refused_by == "tokens_per_day"
        assert redis.command("EXISTS", "genai-proxy:limits:{stopping}:leases") == "0"
    finally:
        in_reactor(second.disconnect)


def test_a_slot_given_back_after_the_others_were_told_is_told_too(redis):
    """A request that ends after the ends before it were told (it ran
    longer) is told in its turn: both slots are free again for another
    replica, long before their leases would end."""
    limits = ClientLimits(concurrent_requests=2)
    leases = "genai-proxy:limits:{late}:leases"
    first, second = replica(redis), replica(redis)
    try:
        early, late = (in_reactor(first.admit, "late", limits) for _ in range(2))
        in_reactor(first.release, "late", early.lease)
        wait_for(lambda: redis.command("ZCARD", leases) == "1")
        in_reactor(first.release, "late", late.lease)
        wait_for(lambda: redis.command("ZCARD", leases) == "0")
        assert [in_reactor(second.admit, "late", limits).refused_by for _ in range(3)] == [
            None, None, "concurrent_requests"]
    finally:
        for windows in (first, second):
            in_reactor(windows.disconnect)
