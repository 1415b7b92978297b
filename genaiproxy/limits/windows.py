"""The arithmetic of the limits' windows, with no state of its own.

The minute windows are rolling, kept by the generic cell rate algorithm
(GCRA): one number per client and kind, the I{theoretical arrival time}
C{at}, the moment the window would be empty again if nothing more came.
A window of C{limit} per minute drains at C{limit} per 60 seconds; what it
holds now is C{(at - now) * limit / 60}.  A request adds one (a
request's window) and is refused when that would take it past the limit; an
answer's tokens are added once known (a token window), and a request is
refused while the tokens held are at or above the limit.  So a client may
use its whole minute at once, then the window refills continuously: in any
span of C{d} seconds it gets at most C{limit + limit * d / 60} (OpenAI's own
limits replenish the same way, which is what its C{x-ratelimit-reset-*}
headers describe), never the twice-the-limit within a second that a fixed
window allows around its edge; and the wait until the next request fits is
exact, which is C{Retry-After}.  Chosen over a sliding log (exact, but one
entry per request: 600 a minute of one client is 600 entries to keep and
trim) and over fixed windows; the Redis script
(L{genaiproxy.limits.redis_store}) does the same sums.

The day and month windows are calendar ones in UTC: a count under the
day's (or month's) name, which starts again at 0 when the name changes.
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass

__all__ = ["MINUTE", "Admission", "Window", "day_of", "drained_in", "format_reset", "held",
           "month_of", "seconds_to_next_day", "seconds_to_next_month", "take_one"]

MINUTE = 60.0
# Floating point slack: 3 requests of a limit of 3 must fit exactly.
_SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class Window:
    """What OpenAI's C{x-ratelimit-*} headers say of one minute window."""

    limit: int
    remaining: int  # after this request, as OpenAI counts it
    reset: float  # seconds until the window is empty again


@dataclass(frozen=True, slots=True)
class Admission:
    """What the limits say of one request.

    @ivar refused_by: the limit's key (C{requests_per_minute}...) that
        refuses it, or None when it may go.
    @ivar window: the refusing limit's window: C{minute}, C{concurrent},
        C{day} or C{month}.
    @ivar retry_after: seconds until it would be let through.
    @ivar used: what the refusing window holds (requests, tokens, money).
    @ivar requests: the requests window, when the client has one.
    @ivar tokens: the tokens window, when the client has one.
    @ivar lease: the shared concurrency slot it holds (given back at its
        end), if any.
    @ivar shared: counted in the windows shared through Redis (else in
        this process's).
    """

    refused_by: str | None = None
    window: str = ""
    retry_after: float = 0.0
    used: float = 0.0
    requests: Window | None = None
    tokens: Window | None = None
    lease: str | None = None
    shared: bool = False


def take_one(at: float, now: float, limit: int) -> tuple[float | None, Window, float]:
    """Add a request to a requests window at C{at} (GCRA).

    @return: the window's new C{at} (None: refused, the window stays as it
        was), what its headers say, and (when refused) the seconds until a
        request would fit.
    """
    if limit <= 0:
        return None, Window(0, 0, MINUTE), MINUTE
    step = MINUTE / limit
    start = max(at, now)
    after = start + step
    if after - now > MINUTE + _SLACK:
        return None, Window(limit, 0, start - now), after - now - MINUTE
    remaining = math.floor((MINUTE - (after - now)) / step + _SLACK)
    return after, Window(limit, max(remaining, 0), after - now), 0.0


def held(at: float, now: float, limit: int) -> float:
    """What a minute window at C{at} holds now, of C{limit} a minute."""
    return max(at - now, 0.0) * limit / MINUTE


def drained_in(at: float, now: float, limit: int) -> float:
    """Seconds until a window at C{at} holds less than its C{limit} again."""
    if limit <= 0:
        return MINUTE
    return max(at - now - MINUTE, 0.0) + MINUTE / limit


def day_of(now: float) -> str:
    """The calendar day (UTC) C{now} is in: C{2026-12-04}."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def month_of(now: float) -> str:
    """The calendar month (UTC) C{now} is in: C{2026-12}."""
    return time.strftime("%Y-%m", time.gmtime(now))


def seconds_to_next_day(now: float) -> float:
    """Seconds from C{now} to the next midnight, UTC."""
    return 86400.0 - now % 86400.0


def seconds_to_next_month(now: float) -> float:
    """Seconds from C{now} to the start of the next month, UTC."""
    today = time.gmtime(now)
    year, month = (today.tm_year + 1, 1) if today.tm_mon == 12 else (
        today.tm_year, today.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)) - now


def format_reset(seconds: float) -> str:
    """A duration as OpenAI's C{x-ratelimit-reset-*} headers write it:
    C{20ms}, C{1.5s}, C{6m0s}, C{1h2m3s}."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    whole, fraction = divmod(round(seconds, 3), 1)
    hours, rest = divmod(int(whole), 3600)
    minutes, secs = divmod(rest, 60)
    shown = f"{secs + fraction:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{shown}s"
    if minutes:
        return f"{minutes}m{shown}s"
    return f"{shown}s"
