"""The Lua scripts that keep the shared windows in Redis
(L{genaiproxy.limits.redis_store}), the arguments they take, and what
L{ADMIT} answers (L{admit_verdict}).

Each runs atomically in Redis: L{ADMIT} checks and takes all of a client's
windows for one request and tells the room they have left after it (which
lets the replica admit the client's next requests without waiting, while
that answer is young: L{genaiproxy.limits.redis_view}), L{SETTLE} counts
the ends of its requests (their answers' tokens and cost, their
concurrency leases given back), and L{REFRESH} keeps the leases of
requests still open alive.  The ends a replica has not told Redis yet ride
along with the client's next admission, applied first, each at its own
time, so that the admission sees them as if each had been sent on its own
(and a request costs one script, not three); L{SETTLE} tells those of a
client that sends nothing more.
They do the sums of L{genaiproxy.limits.windows} and
L{genaiproxy.limits.memory.MemoryWindows} in the same order, so that a
client gets the same verdict, C{Retry-After} and remaining counts from
either store (tests/integration/test_limits_redis.py runs both side by side).

Time is Redis's own (C{TIME}), so that replicas with skewed clocks agree; a
number in C{ARGV[1]} stands in for it (the tests' clock).  An end's time is
told as its age (seconds before the script's time, by the replica's clock:
a duration, which no skew changes).  Numbers go in and out as strings of 17
significant digits, which hold a double exactly (Redis would otherwise
round a Lua number to 14).

A client's keys share the prefix C{genai-proxy:limits:{name}} (the braces
keep them in one Redis Cluster slot), passed as C{KEYS[1]}; each carries its
window and expires by itself:

  - C{:rpm}, C{:tpm}: the GCRA time of the requests and tokens windows,
    expiring two minutes after it;
  - C{:day:2026-12-04}: a hash of the day's C{tokens} and C{cost}, kept two
    days;
  - C{:month:2026-12}: the month's cost, kept 62 days;
  - C{:leases}: the concurrency leases, a sorted set of lease ids scored by
    when they expire; an expired lease is dropped before counting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from genaiproxy.config import ClientLimits
from genaiproxy.limits.redis_view import Room
from genaiproxy.limits.windows import Admission, Window

__all__ = ["ADMIT", "REFRESH", "SETTLE", "Ends", "Script", "admit_verdict", "limits_arg"]


@dataclass(frozen=True)
class Script:
    """A Lua script and its digest (what EVALSHA names it by)."""

    text: str
    sha: str

    @classmethod
    def of(cls, text: str) -> Script:
        return cls(text, hashlib.sha1(text.encode()).hexdigest())


def _number(limit: float | None) -> str:
    """A number as the scripts read it ('-': none)."""
    return "-" if limit is None else repr(limit)


def limits_arg(limits: ClientLimits) -> str:
    """L{ADMIT}'s second argument: a client's limits."""
    return (f"{_number(limits.requests_per_minute)} {_number(limits.tokens_per_minute)} "
            f"{_number(limits.concurrent_requests)} {_number(limits.tokens_per_day)} "
            f"{_number(limits.budget_per_day)} {_number(limits.budget_per_month)}")


def _window(limit: int | None, remaining: str, reset: str) -> Window | None:
    if limit is None:
        return None
    return Window(limit, int(float(remaining)), float(reset))


def admit_verdict(answer: str, limits: ClientLimits, lease: str) -> tuple[Admission, Room | None]:
    """What L{ADMIT}'s C{answer} says of a request of a client with
    C{limits} (holding C{lease}, if any, when let through), and the room
    its windows have left after it (None: refused)."""
    fields = answer.split()
    refused_by, window, wait, used, rq_left, rq_reset, tk_left, tk_reset = fields[:8]
    requests = _window(limits.requests_per_minute, rq_left, rq_reset)
    tokens = _window(limits.tokens_per_minute, tk_left, tk_reset)
    if refused_by != "-":
        return Admission(refused_by, window, float(wait), float(used), requests, tokens,
                         shared=True), None
    return (Admission(requests=requests, tokens=tokens, lease=lease or None, shared=True),
            Room.of(fields[4:]))


class Ends:
    """The ends of one client's requests that Redis has not been told yet,
    in the order they came: each answer's spend (when, by this process's
    clock, then the tokens_per_minute it counts against, its tokens and
    cost) and each lease given back."""

    __slots__ = ("leases", "spends")

    def __init__(self) -> None:
        self.spends: list[tuple[float, str]] = []
        self.leases: list[str] = []

    def __len__(self) -> int:
        return len(self.spends) + len(self.leases)

    def spend(self, at: float, limits: ClientLimits, tokens: int, cost: float) -> None:
        self.spends.append((at, f"{_number(limits.tokens_per_minute)} {tokens} {cost!r}"))

    def args(self, now: float) -> list[str]:
        """The scripts' last two arguments (what L{settle} reads), each
        spend's time told as its age at C{now}."""
        return [" ".join([f"{max(now - at, 0.0)!r} {counts}" for at, counts in self.spends]),
                " ".join(self.leases)]


# What every script starts with: the time, number formatting, calendar days
# and months in UTC (Howard Hinnant's days_from_civil and civil_from_days,
# exact in doubles), and the windows' sums of genaiproxy.limits.windows.
_COMMON = """
local MINUTE = 60.0
local SLACK = 1e-9
local DAY = 86400
local prefix = KEYS[1]
local now = tonumber(ARGV[1])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end

local function show(x) return string.format('%.17g', x) end
local function number(value) return tonumber(value) or 0 end
local function expire_ms(seconds) return math.ceil(seconds * 1000) end

local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  return year, month, day
end

local function days_from_civil(year, month, day)
  if month <= 2 then year = year - 1 end
  local era = math.floor(year / 400)
  local yoe = year - era * 400
  local mp = month > 2 and month - 3 or month + 9
  local doy = math.floor((153 * mp + 2) / 5) + day - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The day's and the month's keys at the time at, and the year and month
-- (only the requests of clients with such windows need them).
local function calendar(at)
  local year, month, day = civil(math.floor(math.floor(at) / DAY))
  return prefix .. ':day:' .. string.format('%04d-%02d-%02d', year, month, day),
         prefix .. ':month:' .. string.format('%04d-%02d', year, month), year, month
end

-- The ends of the client's requests not told yet (Ends.args): spends, the
-- answers' spends in the order they came, four fields each (its age in
-- seconds, the tokens_per_minute it counted against or '-', its tokens, its
-- cost), and leases, the leases given back, all separated by spaces.  The
-- spends are summed one after another as MemoryWindows.spend does, each at
-- its own time, and each key is written once (and given its expiry when
-- new).  Returns the tokens window's new time, if a spend moved it.
local function settle(spends, leases)
  local tokens_at, days, months
  for age, tpm, tokens, cost in string.gmatch(spends, '(%S+) (%S+) (%S+) (%S+)') do
    local at = now - tonumber(age)
    tpm, tokens, cost = tonumber(tpm), tonumber(tokens), tonumber(cost)
    if tpm and tpm ~= 0 then
      if not tokens_at then tokens_at = number(redis.call('GET', prefix .. ':tpm')) end
      tokens_at = math.max(tokens_at, at) + tokens * MINUTE / tpm
    end
    if tokens ~= 0 or cost ~= 0 then
      local day_key, month_key = calendar(at)
      days, months = days or {}, months or {}
      local day = days[day_key]
      if not day then
        local used = redis.call('HMGET', day_key, 'tokens', 'cost')
        day = {number(used[1]), number(used[2]), not used[1]}
        days[day_key] = day
      end
      day[1], day[2] = day[1] + tokens, day[2] + cost
      local month = months[month_key]
      if not month then
        local used = redis.call('GET', month_key)
        month = {number(used), not used}
        months[month_key] = month
      end
      month[1] = month[1] + cost
    end
  end
  if tokens_at then
    redis.call('SET', prefix .. ':tpm', show(tokens_at), 'PX',
               expire_ms(math.max(tokens_at - now, 0) + 2 * MINUTE))
  end
  for key, day in pairs(days or {}) do
    redis.call('HSET', key, 'tokens', show(day[1]), 'cost', show(day[2]))
    if day[3] then redis.call('EXPIRE', key, 2 * DAY) end
  end
  for key, month in pairs(months or {}) do
    if month[2] then
      redis.call('SET', key, show(month[1]), 'EX', 62 * DAY)
    else
      redis.call('SET', key, show(month[1]), 'KEEPTTL')
    end
  end
  if leases ~= '' then
    local key = prefix .. ':leases'
    for lease in string.gmatch(leases, '%S+') do redis.call('ZREM', key, lease) end
  end
  return tokens_at
end
"""

ADMIT = Script.of(_COMMON + """
-- ARGV: now; the limits, six fields separated by spaces ('-' for none):
-- requests_per_minute, tokens_per_minute, concurrent_requests,
-- tokens_per_day, budget_per_day, budget_per_month; the lease's id and
-- seconds ('' without concurrent_requests); then the ends to settle first
-- (the spends, the leases given back).
-- Returns one line (a status reply, which clients read at once, where
-- a list of strings costs txredisapi a turn of the reactor each): the
-- refusing limit ('-' when let through), its window, the wait, what the
-- window holds, then the requests and the tokens windows' remaining and
-- reset ('-' without that window), then, when let through, the room the
-- other windows have left after it (what redis_view.Room reads): the
-- concurrency slots free, the tokens left today, the budget left today
-- and this month ('-' without that window, and all four when refused),
-- separated by spaces.
local rpm, tpm, concurrent, tokens_per_day, budget_per_day, budget_per_month =
  string.match(ARGV[2], '(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)')
rpm, tpm, concurrent = tonumber(rpm), tonumber(tpm), tonumber(concurrent)
tokens_per_day, budget_per_day = tonumber(tokens_per_day), tonumber(budget_per_day)
budget_per_month = tonumber(budget_per_month)
local lease, lease_sec = string.match(ARGV[3], '(%S+) (%S+)')
lease_sec = tonumber(lease_sec)
local settled_tokens_at = settle(ARGV[4], ARGV[5])

local function held(at, limit) return math.max(at - now, 0) * limit / MINUTE end

local function drained_in(at, limit)
  if limit <= 0 then return MINUTE end
  return math.max(at - now - MINUTE, 0) + MINUTE / limit
end

-- GCRA: the window's new time (nil: refused), remaining, reset, wait.
local function take_one(at, limit)
  if limit <= 0 then return nil, 0, MINUTE, MINUTE end
  local step = MINUTE / limit
  local start = math.max(at, now)
  local after = start + step
  if after - now > MINUTE + SLACK then return nil, 0, start - now, after - now - MINUTE end
  local remaining = math.floor((MINUTE - (after - now)) / step + SLACK)
  return after, math.max(remaining, 0), after - now, 0
end

local function requests_window(at, limit)
  if limit <= 0 then return 0, MINUTE end
  local left = math.floor((MINUTE - math.max(at - now, 0)) / (MINUTE / limit) + 1e-9)
  return math.max(left, 0), math.max(at - now, 0)
end

local function tokens_window(at, limit)
  return math.max(math.floor(limit - held(at, limit)), 0), math.max(at - now, 0)
end

local rpm_key, tpm_key, leases = prefix .. ':rpm', prefix .. ':tpm', prefix .. ':leases'
local requests_at = rpm and number(redis.call('GET', rpm_key)) or 0
local tokens_at = tpm and (settled_tokens_at or number(redis.call('GET', tpm_key))) or 0
local refusal
local rq_left, rq_reset, tk_left, tk_reset = '', '', '', ''
local slots, day_tokens, day_budget, month_budget = '', '', '', ''
if tpm then tk_left, tk_reset = tokens_window(tokens_at, tpm) end
if concurrent then
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', show(now))
  local in_flight = redis.call('ZCARD', leases)
  if in_flight >= concurrent then
    refusal = {'concurrent_requests', 'concurrent', 1.0, in_flight}
  end
  slots = concurrent - in_flight - 1
end
local taken, wait
if rpm then
  taken, rq_left, rq_reset, wait = take_one(requests_at, rpm)
  if not taken and not refusal then
    refusal = {'requests_per_minute', 'minute', wait, held(requests_at, rpm)}
  end
end
if not refusal and tpm and held(tokens_at, tpm) >= tpm then
  refusal = {'tokens_per_minute', 'minute', drained_in(tokens_at, tpm), held(tokens_at, tpm)}
end
local day_key, month_key, year, month
if not refusal and (tokens_per_day or budget_per_day or budget_per_month) then
  day_key, month_key, year, month = calendar(now)
end
if not refusal and (tokens_per_day or budget_per_day) then
  local used = redis.call('HMGET', day_key, 'tokens', 'cost')
  local next_day = DAY - math.fmod(now, DAY)
  if tokens_per_day and number(used[1]) >= tokens_per_day then
    refusal = {'tokens_per_day', 'day', next_day, number(used[1])}
  elseif budget_per_day and number(used[2]) >= budget_per_day then
    refusal = {'budget_per_day', 'day', next_day, number(used[2])}
  end
  if tokens_per_day then day_tokens = tokens_per_day - number(used[1]) end
  if budget_per_day then day_budget = budget_per_day - number(used[2]) end
end
if not refusal and budget_per_month then
  local used = number(redis.call('GET', month_key))
  month_budget = budget_per_month - used
  if used >= budget_per_month then
    local next_year, next_month = year, month + 1
    if month == 12 then next_year, next_month = year + 1, 1 end
    refusal = {'budget_per_month', 'month',
               days_from_civil(next_year, next_month, 1) * DAY - now, used}
  end
end

local function shown(value) if value == '' then return '-' end return show(value) end
local function answer(fields) return redis.status_reply(table.concat(fields, ' ')) end
if refusal then
  if rpm then rq_left, rq_reset = requests_window(requests_at, rpm) end
  return answer({refusal[1], refusal[2], show(refusal[3]), show(refusal[4]),
                 shown(rq_left), shown(rq_reset), shown(tk_left), shown(tk_reset),
                 '-', '-', '-', '-'})
end
if taken then
  redis.call('SET', rpm_key, show(taken), 'PX', expire_ms(taken - now + 2 * MINUTE))
end
if concurrent then
  redis.call('ZADD', leases, show(now + lease_sec), lease)
  redis.call('PEXPIRE', leases, expire_ms(lease_sec))
end
return answer({'-', '-', '0', '0', shown(rq_left), shown(rq_reset), shown(tk_left), shown(tk_reset),
               shown(slots), shown(day_tokens), shown(day_budget), shown(month_budget)})
""")

SETTLE = Script.of(_COMMON + """
-- ARGV: now, then the ends to settle (the spends, the leases given back).
settle(ARGV[2], ARGV[3])
return 1
""")

REFRESH = Script.of("""
-- KEYS: leases sets; ARGV: now ('' for Redis's TIME), the leases' seconds,
-- then one lease id per key.  Each lease expires that long from now again
-- (and comes back if Redis lost it meanwhile).
local now = tonumber(ARGV[1])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local lease_sec = tonumber(ARGV[2])
for index, key in ipairs(KEYS) do
  redis.call('ZADD', key, string.format('%.17g', now + lease_sec), ARGV[index + 2])
  redis.call('PEXPIRE', key, math.ceil(lease_sec * 1000))
end
return #KEYS
""")
