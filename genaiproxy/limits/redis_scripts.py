"""The Lua scripts that keep the shared windows in Redis
(L{genaiproxy.limits.redis_store}).

Each runs atomically in Redis: L{ADMIT} checks and takes all of a client's
windows for one request, L{SPEND} counts an answer's tokens and cost,
L{REFRESH} keeps the concurrency leases of requests still open alive.  They
do the sums of L{genaiproxy.limits.windows} and
L{genaiproxy.limits.memory.MemoryWindows} in the same order, so that a
client gets the same verdict, C{Retry-After} and remaining counts from
either store (tests/integration/test_limits_redis.py runs both side by side).

Time is Redis's own (C{TIME}), so that replicas with skewed clocks agree; a
number in C{ARGV[1]} stands in for it (the tests' clock).  Numbers go in and
out as strings of 17 significant digits, which hold a double exactly (Redis
would otherwise round a Lua number to 14).

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

__all__ = ["ADMIT", "REFRESH", "SPEND"]

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

-- The day's and the month's keys, and the year and month (only the
-- requests of clients with such windows need them).
local function calendar()
  local year, month, day = civil(math.floor(math.floor(now) / DAY))
  return prefix .. ':day:' .. string.format('%04d-%02d-%02d', year, month, day),
         prefix .. ':month:' .. string.format('%04d-%02d', year, month), year, month
end
"""

ADMIT = _COMMON + """
-- ARGV: now, requests_per_minute, tokens_per_minute, concurrent_requests,
-- tokens_per_day, budget_per_day, budget_per_month ('' for none), the lease
-- id, the lease's seconds.
-- Returns one line (a status reply, which clients read at once, where
-- a list of strings costs txredisapi a turn of the reactor each): the
-- refusing limit ('-' when let through), its window, the wait, what the
-- window holds, then the requests and the tokens windows' remaining and
-- reset ('-' without that window), separated by spaces.
local rpm, tpm, concurrent = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens_per_day, budget_per_day = tonumber(ARGV[5]), tonumber(ARGV[6])
local budget_per_month = tonumber(ARGV[7])
local lease, lease_sec = ARGV[8], tonumber(ARGV[9])

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
local tokens_at = tpm and number(redis.call('GET', tpm_key)) or 0
local refusal
local rq_left, rq_reset, tk_left, tk_reset = '', '', '', ''
if tpm then tk_left, tk_reset = tokens_window(tokens_at, tpm) end
if concurrent then
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', show(now))
  local in_flight = redis.call('ZCARD', leases)
  if in_flight >= concurrent then
    refusal = {'concurrent_requests', 'concurrent', 1.0, in_flight}
  end
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
  day_key, month_key, year, month = calendar()
end
if not refusal and (tokens_per_day or budget_per_day) then
  local used = redis.call('HMGET', day_key, 'tokens', 'cost')
  local next_day = DAY - math.fmod(now, DAY)
  if tokens_per_day and number(used[1]) >= tokens_per_day then
    refusal = {'tokens_per_day', 'day', next_day, number(used[1])}
  elseif budget_per_day and number(used[2]) >= budget_per_day then
    refusal = {'budget_per_day', 'day', next_day, number(used[2])}
  end
end
if not refusal and budget_per_month then
  local used = number(redis.call('GET', month_key))
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
                 shown(rq_left), shown(rq_reset), shown(tk_left), shown(tk_reset)})
end
if taken then
  redis.call('SET', rpm_key, show(taken), 'PX', expire_ms(taken - now + 2 * MINUTE))
end
if concurrent then
  redis.call('ZADD', leases, show(now + lease_sec), lease)
  redis.call('PEXPIRE', leases, expire_ms(lease_sec))
end
return answer({'-', '-', '0', '0', shown(rq_left), shown(rq_reset), shown(tk_left), shown(tk_reset)})
"""

SPEND = _COMMON + """
-- ARGV: now, tokens_per_minute ('' for none), the answer's tokens, its cost.
local tpm, tokens, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if tpm and tpm ~= 0 then
  local tpm_key = prefix .. ':tpm'
  local at = math.max(number(redis.call('GET', tpm_key)), now) + tokens * MINUTE / tpm
  redis.call('SET', tpm_key, show(at), 'PX', expire_ms(at - now + 2 * MINUTE))
end
if tokens ~= 0 or cost ~= 0 then
  local day_key, month_key = calendar()
  local used = redis.call('HMGET', day_key, 'tokens', 'cost')
  redis.call('HSET', day_key, 'tokens', show(number(used[1]) + tokens),
             'cost', show(number(used[2]) + cost))
  redis.call('EXPIRE', day_key, 2 * DAY)
  redis.call('SET', month_key, show(number(redis.call('GET', month_key)) + cost),
             'EX', 62 * DAY)
end
return 1
"""

REFRESH = """
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
"""
