"""The Redis store: pending steps shared by every process and host through one Redis server.

Same semantics as :class:`~hook_service.store.memory.MemoryStore` (see
:mod:`hook_service.store.base`): ``claim`` is one Lua script, so single use holds across
instances, and ``put_pending`` another, so a decision's steps land together or not at all. The
client and the error guard are :mod:`hook_service._redis`'s, shared with the Redis key store.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from base64 import urlsafe_b64encode
from collections.abc import Sequence
from typing import Any, Final

from hook_service import errors, logs
from hook_service._redis import RedisSite
from hook_service.clock import Clock, system_clock
from hook_service.store.base import (
    ALREADY_USED,
    NO_PENDING,
    Claimed,
    KeySetGuard,
    PendingStep,
    UserRecords,
    check_issued,
    user_tag,
)
from hook_service.tokens.base import IssuedToken

logger = logging.getLogger(logs.STORE)

# put_pending: per step KEYS[i] and ARGV ttl_ms, expires_ms, scope. One script in one round
# trip (about a third less client CPU than MULTI/EXEC through redis-py); ttl <= 0 (already
# expired) only removes the old record. The "#!lua" shebang (Redis 7) makes Redis check memory
# before the script runs: under OOM it is refused whole, where a script without it would run
# its DELs and then be allowed to finish its writes.
_PUT_LUA = """#!lua
for i = 1, #KEYS do
  redis.call('DEL', KEYS[i])
  local ttl = tonumber(ARGV[3 * i - 2])
  if ttl > 0 then
    redis.call('HSET', KEYS[i], 'e', ARGV[3 * i - 1], 's', ARGV[3 * i])
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return #KEYS
"""
# One hash per (user_id, key): e = pending expiry (ms), s = scope; after claim also
# c = challenge_id, t = token, j = jti, k = kid, x = token expiry (s). Expiry is checked against
# the caller's `now` (ARGV[1], ms) and enforced by a TTL counted from that same `now`.
# Replies: {0} missing/expired, {1, s} claimed, {2, t, j, k, x, s} same-challenge retry,
# {3} used by another challenge, {4} the key-set guard (KEYS[2] must hold ARGV[7]) failed:
# nothing claimed.
_CLAIM_LUA = """
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[7] then return {4} end
local r = redis.call('HMGET', KEYS[1], 'e', 'c', 't', 'j', 'k', 'x', 's')
if not r[1] then return {0} end
local now = tonumber(ARGV[1])
local e = tonumber(r[1])
if r[2] then
  local x = tonumber(r[6]) * 1000
  if now >= math.max(e, x) then return {0} end
  if r[2] == ARGV[2] and now < x then return {2, r[3], r[4], r[5], r[6], r[7] or ''} end
  return {3}
end
if now >= e then return {0} end
redis.call('HSET', KEYS[1], 'c', ARGV[2], 't', ARGV[3], 'j', ARGV[4], 'k', ARGV[5], 'x', ARGV[6])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(e, tonumber(ARGV[6]) * 1000) - now))
return {1, r[7] or ''}
"""


SCAN_COUNT: Final = 1000
_GLOB: Final = re.compile(r"([\\*?\[\]])")


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern (Redis globs: ``* ? [ ] \\``)."""
    return _GLOB.sub(r"\\\1", text)


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def _unavailable(name: str) -> errors.StoreUnavailable:
    # The detail is client-facing and names only the error class, never the URL.
    return errors.StoreUnavailable(f"the store is unavailable ({name})")


class RedisStore:
    """Store shared by every app instance through one Redis server (redis.asyncio + hiredis).

    ``timeout`` bounds connecting, each reply and waiting for a pooled connection, so an
    unreachable server fails fast with ``errors.StoreUnavailable`` instead of hanging requests.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = system_clock,
        timeout: float = 0.5,
        prefix: str = "hook:",
        max_connections: int = 50,
    ) -> None:
        self._site = RedisSite(url)
        self._clock = clock
        self._prefix = prefix
        # A client that retries gets the same token (same challenge_id): no Redis retries.
        self._redis = self._site.client(timeout=timeout, max_connections=max_connections)
        self._claim_script = self._redis.register_script(_CLAIM_LUA)
        self._put_script = self._redis.register_script(_PUT_LUA)

    def __repr__(self) -> str:
        return f"RedisStore(url={self._site.location!r}, prefix={self._prefix!r})"

    def record_key(self, user_id: str, key: str) -> str:
        """Redis key of the record for (user_id, key): prefix + "s:{" + the user's tag + "}" +
        128-bit hash of the pair.

        User-controlled strings never appear raw: the pair is length-prefixed (unambiguous for
        any strings, incl. separators and lone surrogates) and hashed, so keys are short and of
        fixed size (memory budget: <= 300 bytes per pending step) and cannot collide by design.
        The tag (:func:`~hook_service.store.base.user_tag`) groups a user's records, so
        :meth:`erase_user` finds them all whatever the step keys were (and, as a Redis Cluster
        hash tag, keeps them on one slot).
        """
        user = user_id.encode("utf-8", "surrogatepass")
        data = b"%d:" % len(user) + user + key.encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(data, digest_size=16, person=b"hook-step").digest()
        pair = urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        return self._user_prefix(user_id) + pair

    def _user_prefix(self, user_id: str) -> str:
        return f"{self._prefix}s:{{{user_tag(user_id)}}}"

    async def put_pending(self, steps: Sequence[PendingStep]) -> None:
        if not steps:
            return
        now = self._clock()
        keys: list[str] = []
        args: list[int | str] = []
        for step in steps:
            keys.append(self.record_key(step.user_id, step.key))
            # TTL relative to the injected clock, not PEXPIREAT: Redis then expires the record
            # in the same time domain as the `now` checked by claim (robust to app/Redis clock
            # skew and to fake clocks). Floor: never outlive expires_at.
            ttl_ms = math.floor((step.expires_at - now) * 1000)
            args += [ttl_ms, math.floor(step.expires_at * 1000), step.scope]
        with self._site.guard("put_pending", _unavailable, log=logger):
            await self._put_script(keys=keys, args=args)

    async def claim(
        self,
        user_id: str,
        key: str,
        issued: IssuedToken,
        now: float,
        guard: KeySetGuard | None = None,
    ) -> Claimed | None:
        check_issued(user_id, key, issued)
        keys = [self.record_key(user_id, key)]
        args: list[int | str] = [
            math.ceil(now * 1000),  # ceil: at the expiry millisecond a step is already gone
            issued.challenge_id,
            issued.token,
            issued.jti,
            issued.kid,
            issued.expires_at,
        ]
        if guard is not None:
            keys.append(guard.redis_key)
            args.append(guard.version)
        with self._site.guard("claim", _unavailable, log=logger):
            reply: Any = await self._claim_script(keys=keys, args=args)
        status = int(reply[0])
        if status == 4:
            return None  # the guard did not hold; nothing was claimed
        if status == 1:
            return Claimed(issued, True, _text(reply[1]))
        if status == 2:
            stored = IssuedToken(
                token=str(reply[1]),
                jti=str(reply[2]),
                kid=str(reply[3]),
                expires_at=int(reply[4]),
                challenge_id=issued.challenge_id,
                user_id=user_id,
                key=key,
            )
            return Claimed(stored, False, _text(reply[5]))
        if status == 3:
            raise errors.StepAlreadyUsed(ALREADY_USED)
        raise errors.NoPendingStep(NO_PENDING)

    async def _user_keys(self, user_id: str) -> list[str]:
        """Every record key of ``user_id``: SCAN for its tag (an admin operation; it walks the
        keyspace in batches of :data:`SCAN_COUNT` without blocking Redis)."""
        pattern = _glob_escape(self._user_prefix(user_id)) + "*"
        return [_text(k) async for k in self._redis.scan_iter(match=pattern, count=SCAN_COUNT)]

    async def user_records(self, user_id: str, now: float) -> UserRecords:
        with self._site.guard("user_records", _unavailable, log=logger):
            keys = await self._user_keys(user_id)
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, "e", "c", "x")
                rows: list[Any] = await pipe.execute()
        now_ms = now * 1000
        pending = issued = 0
        for expires, challenge, token_expires in rows:
            if expires is None:
                continue  # expired between SCAN and HMGET
            end = float(expires)
            if challenge is not None:
                end = max(end, float(token_expires) * 1000)
            if now_ms < end:
                pending += challenge is None
                issued += challenge is not None
        return UserRecords(pending_steps=pending, issued_tokens=issued)

    async def erase_user(self, user_id: str) -> int:
        with self._site.guard("erase_user", _unavailable, log=logger):
            keys = await self._user_keys(user_id)
            erased = 0
            for start in range(0, len(keys), SCAN_COUNT):
                erased += int(await self._redis.delete(*keys[start : start + SCAN_COUNT]))
        return erased

    async def ping(self) -> None:
        with self._site.guard("ping", _unavailable, log=logger):
            await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()
