"""The Lua scripts of :class:`~hook_service.facts.redis.RedisFactsStore`.

Mechanical on purpose: they read and write the layout, and every decision (what counts, what is
pruned) is taken in Python by :mod:`hook_service.facts.logic`; the one exception is what a proof
marks (``PROVE`` mirrors ``logic.prove``: a token's proof is then one round trip). Each script
touches the keys of ONE user only, all sharing the ``{user hash}`` tag (one Cluster slot).

KEYS, always in this order (as far as a script needs them; :mod:`redis_layout
<hook_service.facts.redis_layout>` has what each holds): 1 history (hash: seen and known),
2 times (string), 3 latest (list), 4 flag (string), 5 replays (hash: request digest ->
``"<until>|<answer>"``, issue 11 point 3); TAKE also gets the old layout's keys, to erase
them. Timestamps are whole seconds; TTLs are
milliseconds relative to the caller's ``now``, so Redis expires keys in the injected clock's
time domain (as :mod:`hook_service.store.redis` does).

The ``#!lua`` shebang (Redis 7) makes Redis refuse a writing script whole under OOM rather
than let it stop half-way.
"""

from __future__ import annotations

from typing import Final

# The state before any write: {history, times, latest, flag}.
_READ: Final = """
local state = {
  redis.call('HGETALL', KEYS[1]),
  redis.call('GET', KEYS[2]),
  redis.call('LRANGE', KEYS[3], 0, -1),
  redis.call('GET', KEYS[4]),
}
"""

READ: Final = _READ + "return state\n"

# The replay check of OBSERVE, before anything is read or written. ARGV: 12 the request
# digest ('' = no check), 13 its record's end (whole seconds), 14 the window ms, 15 the answer
# kept for a replay. A live record: return {record} and write nothing. Otherwise drop the
# records past their end, keep this one, and go on.
_ONCE: Final = """
local function ends(record)
  return tonumber(string.sub(record, 1, string.find(record, '|', 1, true) - 1))
end
if ARGV[12] ~= '' then
  local moment = tonumber(ARGV[1])
  local held = redis.call('HGET', KEYS[5], ARGV[12])
  if held and ends(held) > moment then return {held} end
  local records = redis.call('HGETALL', KEYS[5])
  for i = 1, #records, 2 do
    if ends(records[i + 1]) <= moment then redis.call('HDEL', KEYS[5], records[i]) end
  end
  redis.call('HSET', KEYS[5], ARGV[12], ARGV[13] .. '|' .. ARGV[15])
  if redis.call('PTTL', KEYS[5]) < tonumber(ARGV[14]) then
    redis.call('PEXPIRE', KEYS[5], ARGV[14])
  end
end
"""

# ARGV: 1 now, 2 retention ms, 3 device field or '', 4 ip field or '', 5 the 24 h cutoff,
# 6 attempts cap, 7 "scope|" (the scope's record prefix), 8 the new record, 9 scopes cap,
# 10 ttl of the latest-attempts list ms, 11 ttl of the times list ms, 12-15 see _ONCE.
# The times string (redis_layout) is decoded, given this attempt, trimmed as
# logic.trim_times does (drop the leading times of 24 h ago or older, keep the last ARGV[6])
# and encoded again. Returns the state before the write (4 entries), or {replay record}.

OBSERVE: Final = (
    "#!lua\n"
    + _ONCE
    + _READ
    + """
local now = tonumber(ARGV[1])
for i = 3, 4 do
  if ARGV[i] ~= '' then
    local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
    if not old or old < now then redis.call('HSET', KEYS[1], ARGV[i], ARGV[1]) end
  end
end
if ARGV[3] ~= '' or ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local times, at = {}, 0
if state[2] then
  for part in string.gmatch(state[2], '[^,]+') do
    at = at + tonumber(part)
    times[#times + 1] = at
  end
end
times[#times + 1] = now
local cutoff, first = tonumber(ARGV[5]), 1
while times[first] <= cutoff do first = first + 1 end
first = math.max(first, #times - tonumber(ARGV[6]) + 1)
local parts, before = {}, 0
for i = first, #times do
  parts[#parts + 1] = string.format('%d', times[i] - before)
  before = times[i]
end
redis.call('SET', KEYS[2], table.concat(parts, ','), 'PX', ARGV[11])
local prefix = ARGV[7]
for _, record in ipairs(state[3]) do
  if string.sub(record, 1, #prefix) == prefix then redis.call('LREM', KEYS[3], 0, record) end
end
redis.call('LPUSH', KEYS[3], ARGV[8])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[9]) - 1)
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[10]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[10])
end
return state
"""
)

# KEYS: 3 latest, 5 replays (as KEYS[1], KEYS[2]). ARGV: 1 "scope|id|", 2 the settled record,
# 3 its ttl ms, 4 the request digest ('' = none), 5 the answer for its replay record (which
# keeps its end; a record already gone stays gone).
SETTLE: Final = """#!lua
if ARGV[4] ~= '' then
  local held = redis.call('HGET', KEYS[2], ARGV[4])
  if held then
    local bar = string.find(held, '|', 1, true)
    redis.call('HSET', KEYS[2], ARGV[4], string.sub(held, 1, bar) .. ARGV[5])
  end
end
local prefix = ARGV[1]
local records = redis.call('LRANGE', KEYS[1], 0, -1)
for i, record in ipairs(records) do
  if string.sub(record, 1, #prefix) == prefix then
    redis.call('LSET', KEYS[1], i - 1, ARGV[2])
    if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
      redis.call('PEXPIRE', KEYS[1], ARGV[3])
    end
    return 1
  end
end
return 0
"""

# KEYS: 1 history, 3 latest, 4 flag (as KEYS[1..3]). ARGV: 1 now (whole seconds), 2 "scope|"
# (the scope's record prefix), 3 the token's step ('' = none: POST /outcomes), 4 retention ms.
# The one script that decides as well as writes: logic.prove, step for step, so that a proof
# is one round trip, not a read and a conditional write (two script calls, about 50 µs of CPU
# more per token, measured; tests/facts/test_proof_script.py checks it against logic.prove on
# random histories). The step's time is set; the scope's latest record (newest first, as
# decode reads it) is provable when it is a review ('r', 'R' once proven) whose window has not
# ended and which recorded the step; an unproven one teaches its device, IP, country and
# location, sets the last proof and is marked 'R'. Only fields whose value changes are written,
# and only then is the retention renewed. Returns {marked (0/1), the history hash after, the
# flag}: what logic.prune needs, in Python.
PROVE: Final = """#!lua
local now, prefix, step = ARGV[1], ARGV[2], ARGV[3]
local wanted = {}
if step ~= '' then wanted[#wanted + 1] = {'s' .. step, now} end
local marked = 0
for i, record in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if string.sub(record, 1, #prefix) == prefix then
    local f = {}
    for part in string.gmatch(record .. '|', '([^|]*)|') do f[#f + 1] = part end
    -- 1 scope, 2 id, 3 at, 4 +expires, 5 status, 6 device, 7 ip, 8 country, 9 lat, 10 lon, 11 steps
    local ok = (f[5] == 'r' or f[5] == 'R') and f[4] ~= ''
      and tonumber(now) < tonumber(f[3]) + tonumber(f[4])
    if ok and step ~= '' then
      ok = false
      for s in string.gmatch(f[11] .. ',', '([^,]*),') do
        if s == step then ok = true end
      end
    end
    if ok then
      marked = 1
      if f[5] == 'r' then
        if f[6] ~= '' then wanted[#wanted + 1] = {'D' .. f[6], now} end
        if f[7] ~= '' then wanted[#wanted + 1] = {'I' .. f[7], now} end
        if f[8] ~= '' then wanted[#wanted + 1] = {'c' .. f[8], now} end
        wanted[#wanted + 1] = {'v', now}
        if f[9] ~= '' then wanted[#wanted + 1] = {'l', now .. ',' .. f[9] .. ',' .. f[10]} end
        f[5] = 'R'
        redis.call('LSET', KEYS[2], i - 1, table.concat(f, '|'))
      end
    end
    break
  end
end
if #wanted > 0 then
  local names = {}
  for j, pair in ipairs(wanted) do names[j] = pair[1] end
  local held = redis.call('HMGET', KEYS[1], unpack(names))
  local changed = {}
  for j, pair in ipairs(wanted) do
    if held[j] ~= pair[2] then
      changed[#changed + 1] = pair[1]
      changed[#changed + 1] = pair[2]
    end
  end
  if #changed > 0 then
    redis.call('HSET', KEYS[1], unpack(changed))
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
end
return {marked, redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[3])}
"""

# KEYS: 1 history, 3 latest, 4 flag (as KEYS[1..3]). ARGV: 1 flagged until, 2 flag ttl ms,
# 3 the first letters of the fields kept (the seen ones): every other field is forgotten.
FRAUD: Final = """#!lua
local forgotten = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not string.find(ARGV[3], string.sub(field, 1, 1), 1, true) then
    forgotten[#forgotten + 1] = field
  end
end
if #forgotten > 0 then redis.call('HDEL', KEYS[1], unpack(forgotten)) end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: 1 history, 4 flag (as KEYS[1], KEYS[2]). ARGV: triples (key number, field or '' for
# the flag string, timestamp): delete what still starts with that timestamp, so an entry
# refreshed since it was read is kept.
PRUNE: Final = """#!lua
local deleted = 0
for i = 1, #ARGV, 3 do
  local key, field = KEYS[tonumber(ARGV[i])], ARGV[i + 1]
  local value
  if field == '' then value = redis.call('GET', key) else value = redis.call('HGET', key, field) end
  if value and string.match(value, '^%-?%d+') == ARGV[i + 2] then
    if field == '' then redis.call('DEL', key) else redis.call('HDEL', key, field) end
    deleted = deleted + 1
  end
end
return deleted
"""

# The state, then every key deleted (erasure): KEYS 1-5, then the old layout's.
TAKE: Final = (
    _READ
    + """
redis.call('DEL', unpack(KEYS))
return state
"""
)
