"""The Redis store's layout and Lua scripts (the semantics: :mod:`hook_service.store.base`).

Two kinds of record, each a hash under a key that hides the user-controlled strings
(:func:`record_key`, :func:`token_key`):

* the pending step of ``(user_id, key)``, ``<prefix>s:<hash>``: ``e`` pending expiry (ms),
  ``s`` scope, ``o`` origin (the deciding request), ``c`` the challenge that claimed it. Its
  TTL ends at ``e`` and nothing ever extends it;
* the token of ``(user_id, key, challenge_id)``, ``<prefix>t:<hash>``: ``t`` the token sealed
  under the KEKs with this key as associated data (never in clear, issue 10 point 8), ``j``
  jti, ``k`` kid, ``x`` token expiry (s), ``s`` scope. Its TTL ends at ``x``.

Times are the caller's injected clock (``now``, ms) and TTLs are counted from that same
``now``, so Redis expires records in the clock domain that claims check; the exception is a
write's deadline, which is the server's own ``TIME`` (the service estimates its offset).
"""

from __future__ import annotations

import hashlib
from base64 import urlsafe_b64encode


def _digest(person: bytes, *parts: str) -> str:
    # Length-prefixed (unambiguous for any strings, incl. separators and lone surrogates) and
    # hashed: keys are short, of fixed size, and cannot collide by design.
    data = b""
    for part in parts[:-1]:
        raw = part.encode("utf-8", "surrogatepass")
        data += b"%d:" % len(raw) + raw
    data += parts[-1].encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=16, person=person).digest()
    return urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def record_key(prefix: str, user_id: str, key: str) -> str:
    """The pending step's key: prefix + "s:" + 128-bit hash of (user_id, key)."""
    return prefix + "s:" + _digest(b"hook-step", user_id, key)


def token_key(prefix: str, user_id: str, key: str, challenge_id: str) -> str:
    """The claimed token's key: prefix + "t:" + 128-bit hash of (user_id, key, challenge_id)."""
    return prefix + "t:" + _digest(b"hook-token", user_id, key, challenge_id)


# put_pending: KEYS[i] the pending step of each step; ARGV[1] the deadline (Redis TIME, ms),
# ARGV[2] now (ms), then per step ttl_ms, expires_ms, scope, origin. Past the deadline the
# whole write is refused: the caller has given up and answered on_error (issue 10, point 4).
# A step whose origin is recorded in a live step is a replay of its deciding request and
# changes nothing (point 5); any other replaces the pending step (never a token record);
# ttl <= 0 only removes it.
# Reply {written (1) or refused (0), TIME seconds, TIME microseconds}. The "#!lua" shebang
# (Redis 7) makes Redis check memory before the script runs: under OOM it is refused whole.
PUT_LUA = """#!lua
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then
  return {0, t[1], t[2]}
end
local now = tonumber(ARGV[2])
for i = 1, #KEYS do
  local b = 4 * i - 1
  local origin = ARGV[b + 3]
  local r = redis.call('HMGET', KEYS[i], 'o', 'e')
  if origin == '' or r[1] ~= origin or now >= tonumber(r[2]) then
    redis.call('DEL', KEYS[i])
    local ttl = tonumber(ARGV[b])
    if ttl > 0 then
      redis.call('HSET', KEYS[i], 'e', ARGV[b + 1], 's', ARGV[b + 2], 'o', origin)
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  end
end
return {1, t[1], t[2]}
"""

# ensure_pending: the arguments of put_pending; a step is written only where no record is
# (a replay's steps, issue 11 point 3): never replacing, re-opening or extending one. Past the
# deadline nothing is written, as for put_pending.
ENSURE_LUA = """#!lua
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then
  return {0, t[1], t[2]}
end
for i = 1, #KEYS do
  local b = 4 * i - 1
  local ttl = tonumber(ARGV[b])
  if ttl > 0 and redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'e', ARGV[b + 1], 's', ARGV[b + 2], 'o', ARGV[b + 3])
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return {1, t[1], t[2]}
"""

# claim: KEYS[1] pending step, KEYS[2] token record, KEYS[3] (optional) the key-set version;
# ARGV now_ms, challenge_id, sealed token, jti, kid, token expiry (s), scope ('' = any),
# version. Replies: {0} missing/expired, {1} claimed, {2, t, j, k, x} this challenge's token,
# {3} consumed already, {4} the key-set guard (KEYS[3] must hold ARGV[8]) failed: nothing
# claimed, {5, recorded scope} recorded for another scope. No shebang: the retry must still
# answer under OOM (PEXPIRE is allowed then); the first write is refused before any other runs.
# The retry re-sets the token record's TTL to what it is: a write of no effect, but one the
# caller's WAIT (HOOK_REDIS_MIN_REPLICAS) then covers, so the token it returns is known to be
# on the replicas too (a WAIT after a reply that wrote nothing confirms nothing).
CLAIM_LUA = """
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[8] then return {4} end
local now = tonumber(ARGV[1])
local scope = ARGV[7]
local tok = redis.call('HMGET', KEYS[2], 't', 'j', 'k', 'x', 's')
if tok[1] and now < tonumber(tok[4]) * 1000 then
  if scope ~= '' and tok[5] ~= scope then return {5, tok[5]} end
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  return {2, tok[1], tok[2], tok[3], tok[4]}
end
local r = redis.call('HMGET', KEYS[1], 'e', 's', 'c')
if not r[1] or now >= tonumber(r[1]) then return {0} end
if r[3] then return {3} end
if scope ~= '' and r[2] ~= scope then return {5, r[2]} end
redis.call('HSET', KEYS[1], 'c', ARGV[2])
redis.call('HSET', KEYS[2], 't', ARGV[3], 'j', ARGV[4], 'k', ARGV[5], 'x', ARGV[6], 's', r[2])
redis.call('PEXPIRE', KEYS[2], string.format('%d', tonumber(ARGV[6]) * 1000 - now))
return {1}
"""
