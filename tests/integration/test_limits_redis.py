"""The windows shared through Redis (L{genaiproxy.limits.redis_store}),
against a real redis-server: the same verdicts as this process's windows
(L{genaiproxy.limits.MemoryWindows}) for the same requests at the same
times, the scripts found again after Redis forgot them, a password, a
database, TLS, and what is said while Redis is away.  The stores compared
with this process's windows, or shared by two replicas, wait for every
verdict (C{view_age=0}): what a store admits ahead of Redis's answer is
tested in test_limits_redis_view.py."""

from __future__ import annotations

import calendar
import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st
from support import wait_for
from support.limits_proxy import logged, named
from support.redis_server import (
    RedisServer,
    client_limits,
    end_step,
    in_reactor,
    run_redis,
)
from twisted.internet import reactor
from twisted.logger import formatEvent

from genaiproxy.config import ClientLimits, Config, ConfigError, load_config
from genaiproxy.limits import Admission, MemoryWindows
from genaiproxy.limits.redis_store import SETTLE_DELAY, RedisWindows, redis_windows
from genaiproxy.observe import ProxyMetrics

# The moments the sequences start at: a plain noon, the last seconds of a
# year (day, month and year roll together), of a leap February, of a
# 30-day month.
STARTS = [calendar.timegm(moment) for moment in (
    (2026, 12, 4, 12, 0, 0), (2026, 12, 31, 23, 59, 45), (2028, 2, 28, 23, 59, 50),
    (2028, 2, 29, 23, 59, 55), (2027, 4, 30, 23, 59, 58))]


class Clock:
    """The time both stores count with in a sequence."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def metrics() -> ProxyMetrics:
    return ProxyMetrics("test", lambda: 0.0)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with run_redis() as server:
        yield server


@pytest.fixture(scope="module", params=[SETTLE_DELAY, 0.0],
                ids=["ends-with-the-next-request", "ends-told-at-once"])
def shared(redis: RedisServer, request: pytest.FixtureRequest
           ) -> Iterator[tuple[RedisWindows, Clock]]:
    """Windows in the module's Redis, counting with a clock the test sets
    (each request waits for Redis's verdict); the ends of requests go with
    the client's next request (mostly), or in scripts of their own at once."""
    clock = Clock(STARTS[0])
    windows = RedisWindows(redis.url, metrics(), reactor, settle_delay=request.param, now=clock,
                           view_age=0.0)
    in_reactor(windows.connect)
    yield windows, clock
    in_reactor(windows.disconnect)


def wait_until(check: Any, timeout: float = 20.0) -> None:
    """Poll C{check} (read in the reactor's thread) until it is true."""
    deadline = time.monotonic() + timeout
    while not in_reactor(check):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def redis_config(**settings: str) -> Config:
    """The proxy's configuration with C{settings} (the Redis ones) over a
    minimal valid one."""
    return load_config({"GENAI_BASE_URL": "http://127.0.0.1:9", "GENAI_API_KEY": "k",
                        "GENAI_SUBSCRIPTION_NAME": "X-Key", **settings})


def same(admission: Admission) -> Admission:
    """What both stores must agree on: all but the shared lease."""
    return dataclasses.replace(admission, lease=None, shared=False)


steps = st.lists(st.tuples(
    st.sampled_from(["admit", "admit", "spend", "release"]),
    st.floats(min_value=0, max_value=2.5, allow_nan=False),
    st.integers(min_value=0, max_value=1500),
    st.sampled_from([0.0, 0.001, 0.0033, 0.01]),
), max_size=24)


@settings(max_examples=60)
@given(client_limits, st.sampled_from(STARTS), steps)
def test_redis_gives_the_verdicts_of_the_windows_in_process(shared, limits, start, sequence):
    """The same requests, answers and ends at the same times get the same
    verdict from Redis as from this process's windows (though an answer's
    tokens and a slot given back reach Redis later, each is counted at its
    own time, before the next verdict): which limit refuses,
    its window, the Retry-After, what it holds, and the requests and tokens
    windows' limit, remaining and reset, across minutes, days, months and
    years (the sequences stay within a minute, so no lease expires)."""
    windows, clock = shared
    memory = MemoryWindows()
    name = f"contract-{uuid.uuid4().hex}"
    clock.now = start
    open_leases: list[Admission] = []
    for action, wait, tokens, cost in sequence:
        clock.now += wait
        if action == "admit":
            expected = memory.admit(name, limits, clock.now)
            found = in_reactor(windows.admit, name, limits)
            assert same(found) == expected, (clock.now, limits)
            assert found.shared
            if found.refused_by is None:
                open_leases.append(found)
        else:
            end_step(windows, memory, name, limits, action, tokens, cost, clock.now, open_leases)


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("limits", [ClientLimits(tokens_per_day=0), ClientLimits(budget_per_day=0),
                                    ClientLimits(budget_per_month=0)])
def test_day_and_month_refusals_wait_for_the_same_next_day_and_month(shared, limits, start):
    """A used-up day or month window is refused by Redis with the
    Retry-After of this process's windows: to the next midnight or first
    of the month in UTC, at the end of a year, of a leap February, of a
    30-day month."""
    windows, clock = shared
    for offset in (0.0, 14.999, 15.5):
        clock.now = start + offset
        expected = MemoryWindows().admit("calendar", limits, clock.now)
        assert same(in_reactor(windows.admit, "calendar", limits)) == expected


def test_a_limit_of_three_is_three_across_two_stores_on_one_redis(redis):
    """Two stores on one Redis (two replicas, each waiting for Redis's
    verdicts) share a client's window: a limit of 3 a minute lets three
    requests through between them, with remaining 2, 1, 0, and refuses the
    fourth."""
    first = RedisWindows(redis.url, metrics(), reactor, view_age=0.0)
    second = RedisWindows(redis.url, metrics(), reactor, view_age=0.0)
    for windows in (first, second):
        in_reactor(windows.connect)
    try:
        limits = ClientLimits(requests_per_minute=3)
        seen = [in_reactor(windows.admit, "two-replicas", limits)
                for windows in (first, second, first, second)]
        assert [a.refused_by for a in seen] == [None, None, None, "requests_per_minute"]
        assert [a.requests.remaining for a in seen] == [2, 1, 0, 0]
        assert 19 < seen[3].retry_after <= 20
    finally:
        for windows in (first, second):
            in_reactor(windows.disconnect)


def test_the_scripts_are_sent_again_once_redis_forgot_them(redis, shared):
    """After SCRIPT FLUSH (as after a restart) the next request still gets
    its verdict, and an answer's tokens that no request carries are still
    counted: each script is sent whole when Redis does not know its
    digest, and Redis stays available."""
    windows, clock = shared
    name = f"flushed-{uuid.uuid4().hex}"
    limits = ClientLimits(requests_per_minute=1)
    assert in_reactor(windows.admit, name, limits).refused_by is None
    redis.command("SCRIPT", "FLUSH")
    assert in_reactor(windows.admit, name, limits).refused_by == "requests_per_minute"
    redis.command("SCRIPT", "FLUSH")
    daily = ClientLimits(tokens_per_day=7)
    in_reactor(windows.spend, name, daily, 7, 0.0)  # told on its own (no request follows)
    wait_for(lambda: redis.command("KEYS", f"genai-proxy:limits:{{{name}}}:day:*"))
    assert in_reactor(windows.admit, name, daily).refused_by == "tokens_per_day"
    assert windows.available


def test_keys_carry_their_window_and_expire_by_themselves(redis):
    """Every key a client's requests write has an expiry: the minute
    windows about two minutes, the day's two days, the month's 62 days,
    the leases their own time."""
    windows = RedisWindows(redis.url, metrics(), reactor, lease_sec=30.0, view_age=0.0)
    in_reactor(windows.connect)
    try:
        limits = ClientLimits(requests_per_minute=10, tokens_per_minute=1000,
                              concurrent_requests=2, budget_per_month=5.0)
        admitted = in_reactor(windows.admit, "expiring", limits)
        in_reactor(windows.spend, "expiring", limits, 100, 0.5)
        in_reactor(windows.admit, "expiring", limits)  # which counts the answer first
        keys = redis.command("KEYS", "genai-proxy:limits:{expiring}:*").split("\n")
        ttl = {key.rsplit(":", 1)[-1] if ":day:" not in key and ":month:" not in key
               else key.split(":")[-2]: int(redis.command("TTL", key)) for key in keys}
        assert 120 < ttl["rpm"] <= 132 and 120 < ttl["tpm"] <= 186  # (two requests)
        assert 2 * 86400 - 5 < ttl["day"] <= 2 * 86400
        assert 62 * 86400 - 5 < ttl["month"] <= 62 * 86400
        assert 0 < ttl["leases"] <= 30
        in_reactor(windows.release, "expiring", admitted.lease)
        wait_for(lambda: redis.command("ZCARD", "genai-proxy:limits:{expiring}:leases") == "1")
    finally:
        in_reactor(windows.disconnect)


def test_a_password_from_its_file_and_the_database_of_the_url(tmp_path):
    """LIMITS_REDIS_PASSWORD_FILE holds the password Redis asks for, and
    the URL's path picks the database the windows are kept in."""
    with run_redis(password="s3cret-redis-pass") as server:
        (tmp_path / "redis-password").write_text("s3cret-redis-pass\n")
        config = redis_config(LIMITS_REDIS_URL=server.url + "/3",
                              LIMITS_REDIS_PASSWORD_FILE=str(tmp_path / "redis-password"))
        windows = redis_windows(config, metrics(), reactor)
        in_reactor(windows.connect)
        try:
            limits = ClientLimits(requests_per_minute=5)
            assert in_reactor(windows.admit, "in-db-3", limits).requests.remaining == 4
            assert server.command("EXISTS", "genai-proxy:limits:{in-db-3}:rpm", db=3) == "1"
            assert server.command("EXISTS", "genai-proxy:limits:{in-db-3}:rpm") == "0"
        finally:
            in_reactor(windows.disconnect)
        # A wrong password: Redis is unavailable, and the log says so (never
        # the password).
        with logged() as events:
            wrong = RedisWindows(server.url, metrics(), reactor, password="not-it")
            in_reactor(wrong.connect)
            try:
                wait_until(lambda: not wrong.available)
            finally:
                in_reactor(wrong.disconnect)
        down = named(events, "limits_store_unavailable")
        assert len(down) == 1 and "could not auth" in down[0]["reason"]
        assert not [event for event in events if "not-it" in formatEvent(event)]


def test_rediss_checks_the_server_against_genai_ca_bundle(tmp_path):
    """rediss:// speaks TLS, trusting GENAI_CA_BUNDLE's CA besides the
    system's: a server certificate of a private CA is accepted."""
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    certificate.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with run_redis(tls=(tmp_path / "cert.pem", tmp_path / "key.pem")) as server:
        config = redis_config(LIMITS_REDIS_URL=server.url,
                              GENAI_CA_BUNDLE=str(tmp_path / "ca.pem"))
        windows = redis_windows(config, metrics(), reactor)
        in_reactor(windows.connect)
        try:
            limits = ClientLimits(requests_per_minute=2)
            assert in_reactor(windows.admit, "over-tls", limits).requests.remaining == 1
        finally:
            in_reactor(windows.disconnect)


def gauge(seen: ProxyMetrics) -> Any:
    return seen.registry.get_sample_value("genai_proxy_limits_store_unavailable")


def test_an_outage_is_said_once_and_its_end_too():
    """Redis stopped: the store is unavailable, limits_store_unavailable is
    logged once however many requests come, and the gauge is 1; Redis
    started again: it is available by itself, limits_store_available is
    logged, the gauge is 0."""
    with run_redis() as server:
        seen = metrics()
        windows = RedisWindows(server.url, seen, reactor)
        in_reactor(windows.connect)
        try:
            limits = ClientLimits(requests_per_minute=100)
            assert in_reactor(windows.admit, "outage", limits).refused_by is None
            with logged() as events:
                server.stop()
                wait_until(lambda: not windows.available)
                for _ in range(3):
                    with pytest.raises(Exception):  # noqa: B017 (whichever failure)
                        in_reactor(windows.admit, "outage", limits)
                assert gauge(seen) == 1
                server.start()
                wait_until(lambda: windows.available)
                assert in_reactor(windows.admit, "outage", limits).refused_by is None
            down = named(events, "limits_store_unavailable")
            assert len(down) == 1 and down[0]["url"] == server.url
            assert len(named(events, "limits_store_available")) == 1
            assert gauge(seen) == 0
        finally:
            in_reactor(windows.disconnect)


def test_the_password_file_must_be_readable(tmp_path: Path):
    """A password file that cannot be read is a configuration error."""
    config = redis_config(LIMITS_REDIS_URL="redis://127.0.0.1:1",
                          LIMITS_REDIS_PASSWORD_FILE=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="LIMITS_REDIS_PASSWORD_FILE"):
        redis_windows(config, metrics(), reactor)
