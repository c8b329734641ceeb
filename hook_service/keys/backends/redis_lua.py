"""The Lua scripts of the key set shared through Redis; :mod:`~hook_service.keys.backends.
redis_scripts` names their keys and makes their calls, and its docstring tells what they promise.

The write (compare-and-set on the version, a fencing token checked, the set, its audit events
and the announcement, all or nothing), the restore after data loss, each also in a Redis
Cluster variant (sharded pub/sub), and the rotation lock with its fencing token.
"""

from __future__ import annotations

# The tail both scripts share: append the events (KEYS[4], ARGV[6] MAXLEN, ARGV[8...] one
# JSON [field, value, ...] each) and PUBLISH the version (ARGV[5] channel, ARGV[2] version).
_EVENTS_LUA = """
local reply = {1, tonumber(ARGV[2])}
for i = 8, #ARGV do
  local args = {'XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*'}
  for _, item in ipairs(cjson.decode(ARGV[i])) do args[#args + 1] = item end
  reply[#reply + 1] = redis.call(unpack(args))
end
redis.call('PUBLISH', ARGV[5], ARGV[2])
return reply
"""
_SHARDED = ("'PUBLISH'", "'SPUBLISH'")
# KEYS: set, version, fence, events, origin. ARGV: expected version, new version, set JSON,
# fencing token ('' when unfenced), channel, stream MAXLEN, origin ('' clears it), events.
# Reply: {1, version, event ids...} written; {0, current version} lost the race; {-1, last
# token issued} fenced out.
WRITE_LUA = (
    """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
if ARGV[4] ~= '' then
  local issued = tonumber(redis.call('GET', KEYS[3]) or '0')
  if tonumber(ARGV[4]) < issued then return {-1, issued} end
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[7] == '' then redis.call('DEL', KEYS[5]) else redis.call('SET', KEYS[5], ARGV[7]) end
"""
    + _EVENTS_LUA
)
# The same KEYS; ARGV as the write's, ARGV[1] unused, ARGV[7] the new origin "restored <version>
# <digest>". Writes when Redis holds no version, or a marked set this copy may replace: older,
# or created at the same version, and not this very document. Reply as the write's.
RESTORE_LUA = (
    """
local current = redis.call('GET', KEYS[2])
if current then
  current = tonumber(current)
  local origin = redis.call('GET', KEYS[5])
  if not origin then return {0, current} end
  local kind, at, digest = string.match(origin, '^(%a+) (%d+) (%x+)$')
  local ours = tonumber(ARGV[2])
  local _, _, our_digest = string.match(ARGV[7], '^(%a+) (%d+) (%x+)$')
  if tonumber(at) ~= current or digest == our_digest then return {0, current} end
  if ours < current or (ours == current and kind ~= 'created') then return {0, current} end
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[5], ARGV[7])
"""
    + _EVENTS_LUA
)
# On a cluster: the same scripts with a sharded publish (Redis 7), which reaches the
# subscribers of the slot's node (and its replicas) instead of flooding the cluster bus.
CLUSTER_WRITE_LUA = WRITE_LUA.replace(*_SHARDED)
CLUSTER_RESTORE_LUA = RESTORE_LUA.replace(*_SHARDED)
# SET NX PX plus a fencing token from INCR, atomically (KEYS: lock, fence; ARGV: ttl ms).
LOCK_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"""
# Only the holder of this token frees the lock (one that stalled past its TTL must not free
# its successor's).
UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
