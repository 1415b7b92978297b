"""What a replica knows of one client's room in Redis, so that it may admit
a request at once, ahead of Redis's answer
(L{genaiproxy.limits.redis_store}).

Every admission Redis lets through answers with the room the client's
windows have left after it (L{Room}).  A L{ClientView} keeps the last such
answer, the time it came, and what this replica has done since that the
answer does not count: the admissions it sent (each takes a request and a
concurrency slot, whether it went ahead or waits for its verdict), and the
ends of requests (an answer's tokens and cost, a slot given back) that no
answered admission carried yet.  While the answer is young (L{VIEW_AGE}),
read with the same limits, and leaves room for one more request in every
window, the request goes at once; its admission is still sent to Redis,
which counts it and answers with a newer room.

Admissions and the ends they carry go to Redis on one connection and are
answered in the order they were sent, so that when an answer comes, what
was sent before it is in it and what was sent after it is not: the view
keeps the sends not answered yet in order (L{ClientView.sent}) and, on
each answer, forgets those up to it (L{ClientView.answered}).  On one
replica the view is therefore never more generous than Redis: a request it
lets through is one Redis lets through (it may wait for Redis where it need
not, as the minute windows drain meanwhile).  Other replicas' admissions
reach it only with its next answer.  When the answers may no longer come
in that order (a script Redis had forgotten is sent again whole, after
others) or not at all (Redis failed), every view is dropped
(L{Views.forget}), and so is a client's when Redis refuses a request that
went ahead (another replica took the room): the next request waits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from genaiproxy.config import ClientLimits
from genaiproxy.limits.windows import MINUTE, Admission, Window

__all__ = ["VIEW_AGE", "ClientView", "Room", "Send", "Views"]

# Seconds a view of a client's room is acted on after Redis gave it: as
# long as the ends of requests wait for the client's next admission at
# most (redis_store.SETTLE_DELAY), the lag the replicas already accept.
VIEW_AGE = 0.05


def _count(field: str) -> int | None:
    return None if field == "-" else int(float(field))


def _amount(field: str) -> float | None:
    return None if field == "-" else float(field)


@dataclass(frozen=True, slots=True)
class Room:
    """What a client's windows have left for further requests (None: the
    client has no such window).

    @ivar requests: requests left in the requests_per_minute window.
    @ivar requests_reset: seconds until that window is empty.
    @ivar tokens: tokens left in the tokens_per_minute window.
    @ivar tokens_reset: seconds until that window is empty.
    @ivar slots: concurrency slots free (concurrent_requests).
    @ivar day_tokens: tokens left today (tokens_per_day).
    @ivar day_budget: budget left today (budget_per_day).
    @ivar month_budget: budget left this month (budget_per_month).
    """

    requests: int | None = None
    requests_reset: float = 0.0
    tokens: int | None = None
    tokens_reset: float = 0.0
    slots: int | None = None
    day_tokens: float | None = None
    day_budget: float | None = None
    month_budget: float | None = None

    @classmethod
    def of(cls, fields: Sequence[str]) -> Room:
        """The room in the fields of an admission's answer that follow its
        verdict (L{genaiproxy.limits.redis_scripts.ADMIT}): requests left
        and reset, tokens left and reset, slots free, tokens left today,
        budget left today and this month; '-' for no such window."""
        requests, requests_reset, tokens, tokens_reset, slots, day_tokens, day_budget, \
            month_budget = fields
        return cls(_count(requests), _amount(requests_reset) or 0.0, _count(tokens),
                   _amount(tokens_reset) or 0.0, _count(slots), _amount(day_tokens),
                   _amount(day_budget), _amount(month_budget))

    def fits_one(self) -> bool:
        """Whether one more request fits in every window."""
        return ((self.requests is None or self.requests >= 1)
                and (self.slots is None or self.slots >= 1)
                and (self.tokens is None or self.tokens > 0)
                and (self.day_tokens is None or self.day_tokens > 0)
                and (self.day_budget is None or self.day_budget > 0)
                and (self.month_budget is None or self.month_budget > 0))


class Send:
    """What one script sent to Redis carries that the view's room may not
    count yet: an admission (0 or 1), and ends of requests (tokens, cost,
    slots given back)."""

    __slots__ = ("admissions", "cost", "released", "tokens")

    def __init__(self) -> None:
        self.admissions = 0
        self.tokens = 0
        self.cost = 0.0
        self.released = 0

    def add(self, other: Send) -> None:
        self.admissions += other.admissions
        self.tokens += other.tokens
        self.cost += other.cost
        self.released += other.released


class ClientView:
    """One client's room in Redis as this replica knows it: Redis's last
    answer, less what this replica did since."""

    __slots__ = ("_in_flight", "_limits", "_read_at", "_room", "_since", "_unsent")

    def __init__(self) -> None:
        self._room: Room | None = None
        self._limits: ClientLimits | None = None
        self._read_at = 0.0
        # The sends not answered yet, in order (those of ends alone stay
        # until an admission sent after them is answered: their answers
        # tell no room), and the ends not sent yet.
        self._in_flight: deque[Send] = deque()
        self._unsent = Send()
        # The sum of both: what the room does not count yet.
        self._since = Send()

    def left(self) -> Room | None:
        """The room left now, as far as this replica knows (None: none
        known, or Redis refused the last admission)."""
        room, since = self._room, self._since
        if room is None:
            return None
        taken = since.admissions
        return Room(
            None if room.requests is None else room.requests - taken, room.requests_reset,
            None if room.tokens is None else room.tokens - since.tokens, room.tokens_reset,
            None if room.slots is None else room.slots - taken + since.released,
            None if room.day_tokens is None else room.day_tokens - since.tokens,
            None if room.day_budget is None else room.day_budget - since.cost,
            None if room.month_budget is None else room.month_budget - since.cost)

    def ahead(self, limits: ClientLimits, now: float, max_age: float,
              lease: str | None) -> Admission | None:
        """The admission of a request at C{now} when the view lets it
        through without waiting for Redis: the last answer is younger than
        C{max_age}, was read with these C{limits}, and leaves room for one
        more in every window.  Its headers count what was taken since and
        this request; its resets, the windows' drain since the answer.
        None: the request waits for Redis's verdict."""
        age = now - self._read_at
        if not 0 <= age < max_age or (limits is not self._limits and limits != self._limits):
            return None
        left = self.left()
        if left is None or not left.fits_one():
            return None
        requests = tokens = None
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        if rpm is not None and left.requests is not None:
            step = MINUTE / rpm
            taken = self._since.admissions
            requests = Window(rpm, left.requests - 1,
                              max(left.requests_reset - age + taken * step, 0.0) + step)
        if tpm is not None and left.tokens is not None:
            spent = self._since.tokens * MINUTE / tpm if tpm else 0.0
            tokens = Window(tpm, left.tokens, max(left.tokens_reset - age + spent, 0.0))
        return Admission(requests=requests, tokens=tokens, lease=lease, shared=True)

    def sent(self, admission: bool) -> Send:
        """A script was sent to Redis for the client: an admission (with
        the ends not sent yet), or the ends alone.  What it carries counts
        against the room until an admission's answer counts it."""
        carried, self._unsent = self._unsent, Send()
        if admission:
            carried.admissions = 1
            self._since.admissions += 1
        elif self._in_flight and not self._in_flight[-1].admissions:
            self._in_flight[-1].add(carried)
            return self._in_flight[-1]
        self._in_flight.append(carried)
        return carried

    def spent(self, tokens: int, cost: float) -> None:
        """An answer's tokens and cost, not sent to Redis yet."""
        for ends in (self._unsent, self._since):
            ends.tokens += tokens
            ends.cost += cost

    def released(self) -> None:
        """A concurrency slot given back, not sent to Redis yet."""
        self._unsent.released += 1
        self._since.released += 1

    def answered(self, send: Send, limits: ClientLimits, room: Room | None,
                 now: float) -> None:
        """Redis answered the admission C{send}, read with C{limits}, at
        C{now}: the room it left (None: refused).  What was sent before it
        is counted in it; what was sent after, and the ends not sent yet,
        still count against it."""
        if send not in self._in_flight:  # (never, while answers come in order)
            self._room = None  # the next request waits for Redis
            return
        while self._in_flight.popleft() is not send:
            pass
        since = Send()
        for later in self._in_flight:
            since.add(later)
        since.add(self._unsent)
        self._since = since
        self._room, self._limits, self._read_at = room, limits, now


class Views:
    """Every client's L{ClientView}, by name: made by the client's first
    admission, dropped when its answers may no longer be read in order."""

    __slots__ = ("_clients",)

    def __init__(self) -> None:
        self._clients: dict[str, ClientView] = {}

    def of(self, name: str) -> ClientView:
        """Client C{name}'s view (a new one, knowing no room, if none)."""
        view = self._clients.get(name)
        if view is None:
            view = self._clients[name] = ClientView()
        return view

    def current(self, name: str, view: ClientView) -> bool:
        """Whether C{view} is still client C{name}'s (not dropped since)."""
        return self._clients.get(name) is view

    def spent(self, name: str, tokens: int, cost: float) -> None:
        """L{ClientView.spent}, for client C{name}."""
        view = self._clients.get(name)
        if view is not None:
            view.spent(tokens, cost)

    def released(self, name: str) -> None:
        """L{ClientView.released}, for client C{name}."""
        view = self._clients.get(name)
        if view is not None:
            view.released()

    def settled(self, name: str) -> None:
        """Client C{name}'s ends not sent yet went to Redis on their own."""
        view = self._clients.get(name)
        if view is not None:
            view.sent(admission=False)

    def forget(self, name: str | None = None) -> None:
        """Drop client C{name}'s view (every client's: None); its next
        admission waits for Redis, and the answers of the scripts sent
        before are not taken as a room."""
        if name is None:
            self._clients.clear()
        else:
            self._clients.pop(name, None)
