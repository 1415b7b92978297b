"""The limits' windows (unit: L{genaiproxy.limits.windows} and
L{genaiproxy.limits.memory}): rolling minutes by GCRA, calendar days and
months in UTC, concurrency, and what OpenAI's headers say of them."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genaiproxy.config import ClientLimits
from genaiproxy.limits import MemoryWindows, format_reset
from genaiproxy.limits.windows import seconds_to_next_day, seconds_to_next_month

NOON = calendar.timegm((2026, 12, 4, 12, 0, 0))


def test_remaining_requests_count_what_is_left_after_each_request():
    """A limit of 3 a minute: remaining 2, 1, 0, then a refusal whose wait
    is the time until one more fits (20 s: one request every 20 s)."""
    windows = MemoryWindows()
    limits = ClientLimits(requests_per_minute=3)
    seen = [windows.admit("ci", limits, NOON) for _ in range(4)]
    assert [a.requests.remaining for a in seen[:3] if a.requests] == [2, 1, 0]
    assert [a.refused_by for a in seen] == [None, None, None, "requests_per_minute"]
    refused = seen[3]
    assert refused.window == "minute" and refused.retry_after == pytest.approx(20.0)
    assert refused.requests is not None and refused.requests.remaining == 0
    assert windows.admit("ci", limits, NOON + 19.9).refused_by == "requests_per_minute"
    assert windows.admit("ci", limits, NOON + 20.0).refused_by is None


def test_the_minute_rolls_rather_than_resetting_at_an_edge():
    """Three requests at the end of one minute do not leave room for three
    more at the start of the next: the window rolls."""
    windows = MemoryWindows()
    limits = ClientLimits(requests_per_minute=3)
    for _ in range(3):
        assert windows.admit("ci", limits, NOON + 59).refused_by is None
    assert windows.admit("ci", limits, NOON + 61).refused_by == "requests_per_minute"


@given(st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), max_size=60),
       st.integers(min_value=1, max_value=10))
def test_no_span_holds_more_than_the_limit_and_what_refilled(offsets, limit):
    """Whatever the arrivals, any span of d seconds holds at most the limit
    plus what refilled meanwhile (limit * d / 60) of the requests let
    through: a minute's burst, then the steady rate."""
    windows = MemoryWindows()
    limits = ClientLimits(requests_per_minute=limit)
    passed = [t for t in sorted(offsets)
              if windows.admit("ci", limits, NOON + t).refused_by is None]
    for first, start in enumerate(passed):
        for count, end in enumerate(passed[first:], start=1):
            assert count <= limit + limit * (end - start) / 60 + 1e-6


def test_tokens_refuse_once_the_window_is_used_up_and_drain_as_it_rolls():
    """The tokens of answers fill the window (past the limit, if so: the
    answer was given); a request is refused while it holds the limit or
    more, until enough has drained."""
    windows = MemoryWindows()
    limits = ClientLimits(tokens_per_minute=1000)
    assert windows.admit("ci", limits, NOON).refused_by is None
    windows.spend("ci", limits, 1500, 0.0, NOON)
    refused = windows.admit("ci", limits, NOON + 1)
    assert refused.refused_by == "tokens_per_minute" and refused.window == "minute"
    assert refused.tokens is not None and refused.tokens.remaining == 0
    # 1500 tokens at 1000 a minute: below 1000 again after 30 s.
    assert refused.retry_after == pytest.approx(30 - 1 + 0.06, abs=0.01)
    assert windows.admit("ci", limits, NOON + 31).refused_by is None
    assert windows.admit("ci", limits, NOON + 31).tokens.remaining == 16


def test_concurrency_counts_requests_under_way():
    """concurrent_requests: refused while that many are under way; a
    request that ends frees its slot."""
    windows = MemoryWindows()
    limits = ClientLimits(concurrent_requests=2)
    assert windows.admit("ci", limits, NOON).refused_by is None
    assert windows.admit("ci", limits, NOON).refused_by is None
    refused = windows.admit("ci", limits, NOON)
    assert (refused.refused_by, refused.window, refused.retry_after) == (
        "concurrent_requests", "concurrent", 1.0)
    windows.release("ci")
    assert windows.admit("ci", limits, NOON).refused_by is None


def test_day_and_month_windows_are_calendar_ones_in_utc():
    """tokens_per_day and budget_per_day start again at midnight UTC;
    budget_per_month on the first of the month; the wait is until then."""
    windows = MemoryWindows()
    limits = ClientLimits(tokens_per_day=100, budget_per_month=5.0)
    windows.spend("ci", limits, 100, 1.0, NOON)
    refused = windows.admit("ci", limits, NOON)
    assert (refused.refused_by, refused.window) == ("tokens_per_day", "day")
    assert refused.retry_after == 12 * 3600
    assert windows.admit("ci", limits, NOON + 12 * 3600).refused_by is None
    windows.spend("ci", limits, 0, 4.5, NOON + 12 * 3600)
    refused = windows.admit("ci", limits, NOON + 13 * 3600)
    assert (refused.refused_by, refused.window) == ("budget_per_month", "month")
    assert refused.retry_after == seconds_to_next_month(NOON + 13 * 3600)
    january = calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert windows.admit("ci", limits, january).refused_by is None


def test_each_client_has_its_own_windows():
    """One client's use never refuses another's request."""
    windows = MemoryWindows()
    limits = ClientLimits(requests_per_minute=1)
    assert windows.admit("alice", limits, NOON).refused_by is None
    assert windows.admit("bob", limits, NOON).refused_by is None
    assert windows.admit("alice", limits, NOON).refused_by == "requests_per_minute"


def test_a_limit_of_zero_refuses_every_request():
    """0 is a limit like any other: nothing fits."""
    windows = MemoryWindows()
    assert windows.admit("ci", ClientLimits(requests_per_minute=0), NOON).refused_by == (
        "requests_per_minute")
    assert windows.admit("ci", ClientLimits(budget_per_day=0), NOON).refused_by == (
        "budget_per_day")


def test_the_day_and_month_windows_survive_a_snapshot():
    """The state file's round trip keeps the day's tokens and money and the
    month's money; a day that has ended is left behind."""
    windows = MemoryWindows()
    limits = ClientLimits(tokens_per_day=1000)
    windows.spend("ci", limits, 300, 2.5, NOON)
    assert windows.changed
    saved = windows.snapshot()
    assert not windows.changed
    again = MemoryWindows()
    again.restore(saved, NOON + 60)
    assert again.use("ci", ClientLimits(tokens_per_day=1, budget_per_month=1), NOON + 60) == {
        "tokens_per_day": 300, "budget_per_month": 2.5}
    tomorrow = MemoryWindows()
    tomorrow.restore(saved, NOON + 86400)
    assert tomorrow.use("ci", ClientLimits(tokens_per_day=1, budget_per_month=1),
                        NOON + 86400) == {"tokens_per_day": 0, "budget_per_month": 2.5}


@pytest.mark.parametrize("seconds, shown", [
    (0.02, "20ms"), (0.0001, "1ms"), (1, "1s"), (1.5, "1.5s"), (59.999, "59.999s"),
    (60, "1m0s"), (360, "6m0s"), (90.25, "1m30.25s"), (3723, "1h2m3s"),
])
def test_reset_times_are_written_as_openai_writes_them(seconds, shown):
    """x-ratelimit-reset-*: 20ms, 1s, 6m0s (Go's durations)."""
    assert format_reset(seconds) == shown


def test_the_next_day_and_month_in_utc():
    """Midnight UTC and the first of the next month, December included."""
    assert seconds_to_next_day(NOON) == 12 * 3600
    assert seconds_to_next_month(calendar.timegm((2026, 12, 31, 23, 0, 0))) == 3600
