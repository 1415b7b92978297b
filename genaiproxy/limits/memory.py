"""Every client's windows, kept in this process.

L{MemoryWindows} is the store of one proxy process (the default), and the
one a proxy falls back on while Redis is away.  Its day and month windows
are written to the state file (L{genaiproxy.limits.state}) and read back at
start, so that a restart does not hand every client a new day.
"""

from __future__ import annotations

import math
from typing import Any

from genaiproxy.config import ClientLimits
from genaiproxy.limits.windows import (
    MINUTE,
    Admission,
    Window,
    day_of,
    drained_in,
    held,
    month_of,
    seconds_to_next_day,
    seconds_to_next_month,
    take_one,
)

__all__ = ["MemoryWindows", "requests_window", "tokens_window"]


class _Client:
    """One client's windows."""

    __slots__ = ("day", "day_cost", "day_ends", "day_tokens", "in_flight", "month",
                 "month_cost", "requests_at", "tokens_at")

    def __init__(self) -> None:
        self.requests_at = 0.0  # GCRA: L{genaiproxy.limits.windows}
        self.tokens_at = 0.0
        self.in_flight = 0
        self.day, self.day_tokens, self.day_cost = "", 0, 0.0
        self.month, self.month_cost = "", 0.0
        self.day_ends = 0.0  # when the day's window (and maybe the month's) ends

    def roll(self, now: float) -> None:
        """Start the day's and the month's windows again when they changed
        (the calendar is read only once a day: this runs on every request)."""
        if now < self.day_ends:
            return
        self.day_ends = now + seconds_to_next_day(now)
        day = day_of(now)
        if day != self.day:
            self.day, self.day_tokens, self.day_cost = day, 0, 0.0
        month = day[:7]
        if month != self.month:
            self.month, self.month_cost = month, 0.0


def requests_window(at: float, now: float, limit: int) -> Window:
    """The requests window at C{at} as it stands (no request taken)."""
    if limit <= 0:
        return Window(0, 0, MINUTE)
    left = math.floor((MINUTE - max(at - now, 0.0)) / (MINUTE / limit) + 1e-9)
    return Window(limit, max(left, 0), max(at - now, 0.0))


def tokens_window(at: float, now: float, limit: int) -> Window:
    """The tokens window at C{at} as it stands."""
    return Window(limit, max(math.floor(limit - held(at, now, limit)), 0), max(at - now, 0.0))


class MemoryWindows:
    """The windows of every client, by name.

    @ivar changed: set when a day or month window moved since the last
        L{snapshot} (the state file needs writing).
    """

    def __init__(self) -> None:
        self._clients: dict[str, _Client] = {}
        self.changed = False

    def _client(self, name: str, now: float) -> _Client:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = _Client()
        client.roll(now)
        return client

    def admit(self, name: str, limits: ClientLimits, now: float) -> Admission:
        """Let a request of client C{name} through, or say which limit
        refuses it; a request let through takes its place in the requests
        window and a concurrency slot."""
        client = self._client(name, now)
        requests = tokens = None
        taken: float | None = None
        refusal: tuple[str, str, float, float] | None = None
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        if tpm is not None:
            tokens = tokens_window(client.tokens_at, now, tpm)
        if limits.concurrent_requests is not None and (
                client.in_flight >= limits.concurrent_requests):
            refusal = ("concurrent_requests", "concurrent", 1.0, client.in_flight)
        if rpm is not None:
            taken, requests, wait = take_one(client.requests_at, now, rpm)
            if taken is None and refusal is None:
                refusal = ("requests_per_minute", "minute", wait,
                           held(client.requests_at, now, rpm))
        if refusal is None:
            refusal = self._quota_refusal(client, limits, now)
        if refusal is not None:
            if rpm is not None:
                requests = requests_window(client.requests_at, now, rpm)
            limit, window, wait, used = refusal
            return Admission(limit, window, wait, used, requests, tokens)
        if taken is not None:
            client.requests_at = taken
        client.in_flight += 1
        return Admission(requests=requests, tokens=tokens)

    @staticmethod
    def _quota_refusal(client: _Client, limits: ClientLimits,
                       now: float) -> tuple[str, str, float, float] | None:
        """The token and money limits a request finds used up, if any."""
        tpm = limits.tokens_per_minute
        if tpm is not None and held(client.tokens_at, now, tpm) >= tpm:
            return ("tokens_per_minute", "minute", drained_in(client.tokens_at, now, tpm),
                    held(client.tokens_at, now, tpm))
        for key, used, window, reset in (
                ("tokens_per_day", client.day_tokens, "day", seconds_to_next_day),
                ("budget_per_day", client.day_cost, "day", seconds_to_next_day),
                ("budget_per_month", client.month_cost, "month", seconds_to_next_month)):
            limit = getattr(limits, key)
            if limit is not None and used >= limit:
                return key, window, reset(now), used
        return None

    def spend(self, name: str, limits: ClientLimits, tokens: int, cost: float,
              now: float) -> None:
        """Count an answer's C{tokens}, and what they cost, in its client's
        windows (past their limits, if so: the answer was already given)."""
        client = self._client(name, now)
        tpm = limits.tokens_per_minute
        if tpm:
            client.tokens_at = max(client.tokens_at, now) + tokens * MINUTE / tpm
        if tokens or cost:
            client.day_tokens += tokens
            client.day_cost += cost
            client.month_cost += cost
            self.changed = True

    def release(self, name: str) -> None:
        """A request of client C{name} let through has ended."""
        client = self._clients.get(name)
        if client is not None and client.in_flight > 0:
            client.in_flight -= 1

    def money(self, name: str, now: float) -> tuple[float, float]:
        """What client C{name} spent today and this month."""
        client = self._client(name, now)
        return client.day_cost, client.month_cost

    def names(self) -> list[str]:
        """The clients seen (or restored from the state file)."""
        return list(self._clients)

    def use(self, name: str, limits: ClientLimits, now: float) -> dict[str, float]:
        """What client C{name} uses now of each limit it has (for the
        status page and the metrics)."""
        client = self._client(name, now)
        found: dict[str, float] = {
            "requests_per_minute": held(client.requests_at, now, limits.requests_per_minute or 0),
            "tokens_per_minute": held(client.tokens_at, now, limits.tokens_per_minute or 0),
            "concurrent_requests": client.in_flight,
            "tokens_per_day": client.day_tokens,
            "budget_per_day": client.day_cost,
            "budget_per_month": client.month_cost,
        }
        return {key: value for key, value in found.items() if getattr(limits, key) is not None}

    def snapshot(self) -> dict[str, Any]:
        """The day and month windows, for the state file."""
        self.changed = False
        return {name: {"day": client.day, "day_tokens": client.day_tokens,
                       "day_cost": client.day_cost, "month": client.month,
                       "month_cost": client.month_cost}
                for name, client in self._clients.items() if client.day}

    def restore(self, saved: dict[str, Any], now: float) -> None:
        """Take the day and month windows of a L{snapshot} back (those of
        days and months that have ended are left behind)."""
        day, month = day_of(now), month_of(now)
        for name, windows in saved.items():
            client = self._client(str(name), now)
            if windows.get("day") == day:
                client.day_tokens = int(windows.get("day_tokens", 0))
                client.day_cost = float(windows.get("day_cost", 0.0))
            if windows.get("month") == month:
                client.month_cost = float(windows.get("month_cost", 0.0))
