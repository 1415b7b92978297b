"""Several proxies (replicas) sharing their clients' limits through a real
redis-server (LIMITS_REDIS_URL): one limit across all of them, what
requests get while Redis is away (LIMITS_REDIS_FAILURE open or closed) and
once it is back, and the concurrency slots of a replica that was killed.

A replica acts on Redis's last answer for a client for VIEW_AGE seconds
(L{genaiproxy.limits.redis_view}), so that what the other replicas took
reaches it that much later: the tests that share a limit between replicas
send each request more than VIEW_AGE after the one before."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
from support import ProxyProcess, run_proxy, wait_for
from support.redis_server import RedisServer, run_redis

from genaiproxy.limits.redis_view import VIEW_AGE

MODELS = """\
limits:
  default:
{limits}
models:
  - id: gpt-4.1
"""


@contextlib.contextmanager
def replicas(mock_url: str, redis: RedisServer, limits: str, count: int = 2,
             **settings: str) -> Iterator[list[ProxyProcess]]:
    """C{count} proxies with the same models.yaml C{limits} (the YAML under
    C{default:}), all pointed at C{redis}."""
    models = MODELS.format(limits="\n".join(f"    {line}" for line in limits.splitlines()))
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(run_proxy(mock_url, models=models,
                                             LIMITS_REDIS_URL=redis.url,
                                             LIMITS_STATE_FILE="limits.json", **settings))
               for _ in range(count)]


def chat(proxy: ProxyProcess, **headers: str) -> httpx.Response:
    return httpx.post(proxy.url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})


def in_turn(proxies: tuple[ProxyProcess, ...]) -> list[httpx.Response]:
    """One request to each of C{proxies} in turn, each when what the
    replica last heard from Redis is older than VIEW_AGE (so that it waits
    for Redis's verdict, which counts what the others took)."""
    answers = []
    for proxy in proxies:
        time.sleep(2 * VIEW_AGE)
        answers.append(chat(proxy))
    return answers


def test_one_replica_lets_exactly_its_limit_through(mock_url):
    """requests_per_minute: 5 on one replica, the requests one right after
    the other (most let through ahead of Redis's answer, on its last
    one): five are answered with remaining 4 to 0, the sixth and seventh
    get 429."""
    with run_redis() as redis, replicas(mock_url, redis, "requests_per_minute: 5",
                                        count=1) as (proxy,):
        answers = [chat(proxy) for _ in range(7)]
        assert [answer.status_code for answer in answers] == [200] * 5 + [429] * 2
        assert [answer.headers["x-ratelimit-remaining-requests"] for answer in answers] == [
            "4", "3", "2", "1", "0", "0", "0"]


def test_two_proxies_enforce_one_limit(mock_url):
    """requests_per_minute: 3 with two replicas on one Redis: three requests
    across both are answered (remaining 2, 1, 0), the fourth gets 429
    whichever replica it reaches."""
    with run_redis() as redis, replicas(mock_url, redis, "requests_per_minute: 3") as (a, b):
        answers = in_turn((a, b, a, b))
        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
        assert [answer.headers["x-ratelimit-remaining-requests"] for answer in answers] == [
            "2", "1", "0", "0"]
        assert answers[3].json()["error"]["code"] == "rate_limit_exceeded"
        assert int(answers[3].headers["retry-after"]) >= 1


def test_open_serves_while_redis_is_away_and_shares_again_once_back(mock_url):
    """LIMITS_REDIS_FAILURE=open (the default): with Redis stopped each
    proxy serves, enforcing the limit by itself, and logs
    limits_store_unavailable once for the outage; Redis started again,
    they find it by themselves and share the limit again."""
    with run_redis() as redis, replicas(mock_url, redis, "requests_per_minute: 3") as (a, b):
        assert chat(a).status_code == 200
        redis.stop()
        for proxy in (a, b):
            proxy.wait_for_event("limits_store_unavailable")
        # Each process's own window: 3 for a, and b still has its 3.
        assert [chat(a).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert [chat(b).status_code for _ in range(2)] == [200, 200]
        for proxy in (a, b):
            down = proxy.events("limits_store_unavailable")
            assert len(down) == 1 and down[0]["level"] == "ERROR"
            assert down[0]["url"] == redis.url
        redis.start()
        for proxy in (a, b):
            proxy.wait_for_event("limits_store_available", timeout=20)
        # A new Redis (nothing kept): one window of 3 across both again.
        assert [answer.status_code for answer in in_turn((b, a, b, a))] == [
            200, 200, 200, 429]
        assert all(len(proxy.events("limits_store_unavailable")) == 1 for proxy in (a, b))


def test_closed_refuses_with_503_while_redis_is_away(mock_url):
    """LIMITS_REDIS_FAILURE=closed: with Redis stopped, requests get 503
    with Retry-After; Redis started again, they are served again."""
    with run_redis() as redis, replicas(mock_url, redis, "requests_per_minute: 30", count=1,
                                        LIMITS_REDIS_FAILURE="closed") as (proxy,):
        assert chat(proxy).status_code == 200
        redis.stop()
        proxy.wait_for_event("limits_store_unavailable")
        refused = chat(proxy)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "limits_store_unavailable"
        assert int(refused.headers["retry-after"]) >= 1
        redis.start()
        proxy.wait_for_event("limits_store_available", timeout=20)
        assert chat(proxy).status_code == 200


def test_the_slots_of_a_killed_proxy_are_free_again_once_their_lease_ends(mock_url):
    """concurrent_requests: 1 across two replicas: while a stream is open on
    one, the other refuses, for longer than a lease (the open request's
    lease is renewed); once the first replica is killed (no release), its
    slot is free again when the lease ends."""
    with run_redis() as redis, replicas(mock_url, redis, "concurrent_requests: 1",
                                        LIMITS_REDIS_LEASE_SEC="2") as (a, b):
        with httpx.Client(timeout=30) as client, client.stream(
                "POST", a.url + "/v1/chat/completions",
                headers={"X-Mock-Events": "600", "X-Mock-Event-Delay": "0.1"},
                json={"model": "gpt-4.1", "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]}) as stream:
            assert stream.status_code == 200
            events = stream.iter_raw()  # kept: a generator let go closes the stream
            next(events)
            refused = chat(b)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            time.sleep(3)  # past the lease's 2 s: a renews it
            assert chat(b).status_code == 429
            a.process.kill()
            wait_for(lambda: chat(b).status_code == 200)
