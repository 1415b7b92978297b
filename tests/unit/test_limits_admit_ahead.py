"""Admitting ahead of Redis's answer (L{genaiproxy.limits.redis_view} and
L{genaiproxy.limits.redis_store}), in process: a client's next request
goes at once while Redis's last answer for it is young, read with the same
limits, and leaves room for it; else it waits for Redis's verdict.  On one
replica the view is never more generous than Redis."""

from __future__ import annotations

import copy
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from genaiproxy.config import ClientLimits
from genaiproxy.limits.redis_store import RedisWindows
from genaiproxy.limits.redis_view import VIEW_AGE, ClientView, Room, Send
from genaiproxy.observe import ProxyMetrics

NOW = 1_800_000_000.0


class ScriptsHeld:
    """A connection to Redis that keeps each script sent, in order, until
    the test answers it."""

    def __init__(self) -> None:
        self.waiting: deque[tuple[list[str], Deferred[str]]] = deque()

    def evalsha(self, sha: str, keys: list[str], args: list[str]) -> Deferred[str]:
        answered: Deferred[str] = Deferred()
        self.waiting.append((args, answered))
        return answered

    def answer(self, line: str) -> list[str]:
        """Answer the oldest script with C{line}; its arguments."""
        args, answered = self.waiting.popleft()
        answered.callback(line)
        return args

    def fail(self) -> None:
        self.waiting.popleft()[1].errback(ConnectionError("lost"))


class HeldWindows(RedisWindows):
    """L{RedisWindows} on a L{ScriptsHeld} connection and a clock of the
    test's."""

    def __init__(self, **options: Any) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(NOW)
        self.redis = ScriptsHeld()
        super().__init__("redis://127.0.0.1:9", ProxyMetrics("test", lambda: 0.0), self.clock,
                         **options)

    def _connection(self) -> Any:
        return self.redis


def let_through(requests: str = "-", reset: str = "-", tokens: str = "-", slots: str = "-",
                day_tokens: str = "-", day_budget: str = "-", month_budget: str = "-") -> str:
    """ADMIT's answer to a request let through, with the room it leaves."""
    return (f"- - 0 0 {requests} {reset} {tokens} {'0' if tokens != '-' else '-'} {slots} "
            f"{day_tokens} {day_budget} {month_budget}")


def refused(limit: str, window: str, requests: str = "-", reset: str = "-") -> str:
    """ADMIT's answer to a request refused by C{limit}."""
    return f"{limit} {window} 1 2 {requests} {reset} - - - - - -"


def admit(windows: HeldWindows, limits: ClientLimits, name: str = "ci") -> Deferred[Any]:
    return windows.admit(name, limits)


def test_a_second_request_within_the_views_age_goes_without_waiting():
    """The first request of a client waits for Redis's verdict; the next,
    while that answer is young and leaves room, goes at once, its headers
    counting it (remaining 1, the window's reset one request further); its
    script still goes to Redis, behind it, and its answer is the new room."""
    windows = HeldWindows()
    limits = ClientLimits(requests_per_minute=3)
    first = admit(windows, limits)
    assert not first.called
    windows.redis.answer(let_through(requests="2", reset="20"))
    assert first.result.requests.remaining == 2
    second = admit(windows, limits)
    assert second.called and second.result.refused_by is None
    assert second.result.requests.remaining == 1
    assert second.result.requests.reset == pytest.approx(40.0)
    assert len(windows.redis.waiting) == 1  # its script, sent all the same
    windows.redis.answer(let_through(requests="1", reset="40"))
    third = admit(windows, limits)
    assert third.called and third.result.requests.remaining == 0


def test_a_request_past_the_views_room_waits_for_redis():
    """A view's room counts the admissions sent since, answered or not:
    with one request left, the next goes at once and the one after waits
    for Redis's verdict (which refuses it)."""
    windows = HeldWindows()
    limits = ClientLimits(requests_per_minute=2)
    admit(windows, limits)
    windows.redis.answer(let_through(requests="1", reset="30"))
    assert admit(windows, limits).called
    waiting = admit(windows, limits)
    assert not waiting.called
    windows.redis.answer(let_through(requests="0", reset="60"))
    windows.redis.answer(refused("requests_per_minute", "minute", "0", "60"))
    assert waiting.result.refused_by == "requests_per_minute"
    assert not admit(windows, limits).called  # a refusal leaves no room to act on


def test_an_old_view_waits_for_redis():
    """Redis's answer is acted on for VIEW_AGE seconds: a request later than
    that waits for Redis, whose answer is a young view again."""
    windows = HeldWindows()
    limits = ClientLimits(requests_per_minute=100)
    admit(windows, limits)
    windows.redis.answer(let_through(requests="99", reset="0.6"))
    windows.clock.advance(VIEW_AGE + 0.001)
    assert not admit(windows, limits).called
    windows.redis.answer(let_through(requests="98", reset="1.2"))
    assert admit(windows, limits).called


def test_a_view_of_other_limits_waits_for_redis():
    """A reload that changes the client's limits: its next request waits
    for Redis's verdict with the new limits (equal limits read anew act
    on the view)."""
    windows = HeldWindows()
    admit(windows, ClientLimits(requests_per_minute=100))
    windows.redis.answer(let_through(requests="99", reset="0.6"))
    assert admit(windows, ClientLimits(requests_per_minute=100)).called
    assert not admit(windows, ClientLimits(requests_per_minute=50)).called


def test_a_view_of_zero_age_never_acts():
    """view_age=0: every request waits for Redis's verdict, as before."""
    windows = HeldWindows(view_age=0.0)
    limits = ClientLimits(requests_per_minute=100)
    admit(windows, limits)
    windows.redis.answer(let_through(requests="99", reset="0.6"))
    assert not admit(windows, limits).called


def test_slots_given_back_and_tokens_spent_since_count_in_the_view():
    """concurrent_requests 1: once the request ends (its slot given back,
    not told to Redis yet), the next goes at once, and the slot's lease is
    registered at once; budget_per_day: an answer that spent what was left
    makes the next request wait."""
    windows = HeldWindows()
    limits = ClientLimits(concurrent_requests=1, budget_per_day=1.0)
    first = admit(windows, limits)
    windows.redis.answer(let_through(slots="0", day_budget="1"))
    assert not admit(windows, limits).called  # no slot free
    windows.redis.answer(refused("concurrent_requests", "concurrent"))
    # Refused: the next waits for Redis again.
    again = admit(windows, limits)
    windows.redis.answer(let_through(slots="0", day_budget="1"))
    windows.release("ci", first.result.lease)
    second = admit(windows, limits)
    assert second.called and second.result.lease is not None
    windows.release("ci", again.result.lease)
    windows.spend("ci", limits, 100, 1.0)
    assert not admit(windows, limits).called  # the day's budget is spent


def test_a_refusal_of_a_request_that_went_ahead_drops_its_lease_and_the_view():
    """Another replica took the last slot meanwhile: Redis refuses the
    request that already went; its lease is no longer refreshed (and is
    removed from Redis with the next script), and the client's next
    request waits for Redis."""
    windows = HeldWindows()
    limits = ClientLimits(concurrent_requests=2)
    admit(windows, limits)
    windows.redis.answer(let_through(slots="1"))
    ahead = admit(windows, limits)
    lease = ahead.result.lease
    assert lease in windows._leases
    windows.redis.answer(refused("concurrent_requests", "concurrent"))
    assert lease not in windows._leases
    assert not admit(windows, limits).called
    args = windows.redis.answer(let_through(slots="0"))
    assert lease in args[4].split()  # given back with the next script


def test_redis_failing_drops_the_views():
    """A script that fails (Redis away) drops every client's view: once
    Redis answers again, each client's first request waits for it."""
    windows = HeldWindows()
    limits = ClientLimits(requests_per_minute=100)
    for name in ("ci", "alice"):
        admit(windows, limits, name)
        windows.redis.answer(let_through(requests="99", reset="0.6"))
    assert admit(windows, limits, "ci").called
    windows.redis.fail()
    assert not windows.available
    assert not admit(windows, limits, "alice").called


# The model: what Redis does with one replica's scripts, in the order they
# were sent, with its clock stopped (the minute windows do not drain).

@dataclass
class Script:
    """One script sent: an admission (its lease; None: the ends alone), and
    the ends it carries."""

    admission: bool
    lease: str | None
    spends: list[tuple[int, float]]
    releases: list[str]
    send: Send
    ahead: bool = False


@dataclass
class OneReplicaRedis:
    limits: ClientLimits
    requests: int = 0
    tokens: int = 0
    cost: float = 0.0
    leases: set[str] = field(default_factory=set)

    def fits(self) -> bool:
        limits = self.limits
        return all(limit is None or used < limit for limit, used in (
            (limits.concurrent_requests, len(self.leases)),
            (limits.requests_per_minute, self.requests), (limits.tokens_per_minute, self.tokens),
            (limits.tokens_per_day, self.tokens), (limits.budget_per_day, self.cost),
            (limits.budget_per_month, self.cost)))

    def room(self) -> Room:
        limits = self.limits

        def less(limit: float | None, used: float) -> Any:
            return None if limit is None else limit - used

        tpm = limits.tokens_per_minute
        return Room(less(limits.requests_per_minute, self.requests), 0.0,
                    None if tpm is None else max(tpm - self.tokens, 0), 0.0,
                    less(limits.concurrent_requests, len(self.leases)),
                    less(limits.tokens_per_day, self.tokens),
                    less(limits.budget_per_day, self.cost), less(limits.budget_per_month, self.cost))

    def settle(self, spends: list[tuple[int, float]], releases: list[str]) -> None:
        for tokens, cost in spends:
            self.tokens += tokens
            self.cost += cost
        self.leases.difference_update(releases)

    def run(self, script: Script) -> Room | None:
        """The script's effect, and the room an admission leaves (None:
        refused, or the ends alone)."""
        self.settle(script.spends, script.releases)
        if not script.admission or not self.fits():
            return None
        self.requests += 1
        if script.lease is not None:
            self.leases.add(script.lease)
        return self.room()


def counts(room: Room) -> tuple[Any, ...]:
    """What a room says of each window (the tokens_per_minute window's
    left as Redis tells it: never below 0)."""
    return (room.requests, None if room.tokens is None else max(room.tokens, 0), room.slots,
            room.day_tokens, room.day_budget, room.month_budget)


limit_values = st.one_of(st.none(), st.integers(min_value=0, max_value=5))
client_limits = st.builds(
    ClientLimits, requests_per_minute=limit_values,
    tokens_per_minute=st.one_of(st.none(), st.sampled_from([0, 200, 1000])),
    concurrent_requests=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
    tokens_per_day=st.one_of(st.none(), st.sampled_from([0, 300, 1000])),
    budget_per_day=st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5])),
    budget_per_month=st.one_of(st.none(), st.sampled_from([0.0, 1.5, 4.0])))
steps = st.lists(st.one_of(
    st.just(("admit",)), st.just(("answer",)), st.just(("settle",)),
    st.tuples(st.just("spend"), st.sampled_from([0, 50, 100, 300]),
              st.sampled_from([0.0, 0.25, 0.5, 1.0])),
    st.tuples(st.just("release"), st.integers(min_value=0, max_value=5))), max_size=40)


@given(client_limits, steps)
def test_the_view_is_what_redis_would_say_on_one_replica(limits, sequence):
    """Whatever admissions, answers (in the order of the scripts), spends,
    slots given back and ends sent alone: a request the view lets through
    is one Redis lets through, and the room the view knows is the room
    Redis will have once it ran every script sent and the ends not sent yet
    (less, when an admission still waiting is refused)."""
    view, redis = ClientView(), OneReplicaRedis(limits)
    sent: deque[Script] = deque()
    spends: list[tuple[int, float]] = []
    releases: list[str] = []
    open_leases: list[str] = []
    lease_ids = (f"lease-{n}" for n in itertools.count())

    def future() -> tuple[Room, bool]:
        """Redis's room once it ran everything; whether it refuses an
        admission still waiting."""
        ahead = copy.deepcopy(redis)
        refuses = False
        for script in sent:
            room = ahead.run(script)
            refuses |= script.admission and room is None
        ahead.settle(spends, releases)
        return ahead.room(), refuses

    for step in sequence:
        if step[0] == "admit":
            lease = None if limits.concurrent_requests is None else next(lease_ids)
            went = view.ahead(limits, NOW, VIEW_AGE, lease)
            script = Script(True, lease, spends, releases, view.sent(admission=True),
                            went is not None)
            spends, releases = [], []
            sent.append(script)
            if went is not None:
                # Redis, running every script sent in order, lets it through.
                check = copy.deepcopy(redis)
                assert [check.run(s) for s in sent][-1] is not None
                if lease is not None:
                    open_leases.append(lease)
        elif step[0] == "answer" and sent:
            script = sent.popleft()
            room = redis.run(script)
            if script.admission:
                assert room is not None or not script.ahead
                if room is not None and script.lease is not None and not script.ahead:
                    open_leases.append(script.lease)
                view.answered(script.send, limits, room, NOW)
        elif step[0] == "settle" and (spends or releases):
            sent.append(Script(False, None, spends, releases, view.sent(admission=False)))
            spends, releases = [], []
        elif step[0] == "spend" and (step[1] or step[2]):
            view.spent(step[1], step[2])
            spends.append((step[1], step[2]))
        elif step[0] == "release" and open_leases:
            releases.append(open_leases.pop(step[1] % len(open_leases)))
            view.released()
        left = view.left()
        if left is not None:
            expected, refuses = future()
            if refuses:
                assert all(a is None or a <= b for a, b in zip(counts(left), counts(expected),
                                                                 strict=True))
            else:
                assert counts(left) == counts(expected)
                assert (view.ahead(limits, NOW, VIEW_AGE, None) is not None) == \
                    expected.fits_one()


def test_an_answer_to_a_send_not_in_flight_leaves_no_room():
    """An answer the view cannot place among its sends (answers out of
    order) leaves it without room: the next request waits for Redis
    rather than act on a count that may miss admissions."""
    limits = ClientLimits(requests_per_minute=100)
    view = ClientView()
    view.answered(view.sent(admission=True), limits, Room(requests=50, requests_reset=1.0),
                  NOW)
    assert view.ahead(limits, NOW, VIEW_AGE, None) is not None
    view.sent(admission=True)
    view.answered(Send(), limits, Room(requests=50, requests_reset=1.0), NOW)
    assert view.ahead(limits, NOW, VIEW_AGE, None) is None


def test_a_bug_reading_the_verdict_behind_a_request_is_logged():
    """The script behind a request that went ahead answers what the store
    cannot read (a bug of ours, not an outage): the failure is logged with
    its traceback, not dropped unseen, and Redis is not taken for away."""
    windows = HeldWindows()
    limits = ClientLimits(requests_per_minute=100)
    admit(windows, limits)
    windows.redis.answer(let_through(requests="98", reset="0.6"))
    assert admit(windows, limits).called
    with capturedLogs() as events:
        windows.redis.answer("not an answer")
    failures = [e for e in events if e.get("log_format") == "admit_ahead_verdict"]
    assert len(failures) == 1 and failures[0]["log_failure"] is not None
    assert windows.available
