"""How the shared key set lives in Redis: key names, the Lua scripts that change it, their calls.

Under a prefix (``hook:keys:``): ``set`` (the sealed document, :mod:`hook_service.keydoc`),
``version`` (a small key every replica polls), ``fence`` (the last fencing token issued with
the rotation lock), ``lock``, ``events`` (the audit stream) and the pub/sub channel
``changed``. A change is one script: compare-and-set on the version, refuse a stale fencing
token, write the set, append the audit events and PUBLISH the new version, all or nothing.
:class:`~hook_service.rediskeystore.RedisKeyStore` keeps the replica's state on top of this.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import redis
from redis.asyncio import Redis as AsyncRedis

from hook_service import errors
from hook_service.keys.events import KeyEvent

STREAM_MAXLEN = 10_000  # audit entries kept (approximately: XADD MAXLEN ~)
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_MAX_ID_PART = 2**64 - 1

# KEYS: set, version, fence, events. ARGV: expected version, new version, set JSON, fencing
# token ('' when unfenced), channel, stream MAXLEN, then one JSON [field, value, ...] per event.
# Reply: {1, version, event ids...} written; {0, current version} lost the race; {-1, last
# token issued} fenced out.
_WRITE_LUA = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
if ARGV[4] ~= '' then
  local issued = tonumber(redis.call('GET', KEYS[3]) or '0')
  if tonumber(ARGV[4]) < issued then return {-1, issued} end
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
local reply = {1, tonumber(ARGV[2])}
for i = 7, #ARGV do
  local args = {'XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*'}
  for _, item in ipairs(cjson.decode(ARGV[i])) do args[#args + 1] = item end
  reply[#reply + 1] = redis.call(unpack(args))
end
redis.call('PUBLISH', ARGV[5], ARGV[2])
return reply
"""
# SET NX PX plus a fencing token from INCR, atomically (KEYS: lock, fence; ARGV: ttl ms).
_LOCK_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"""
# Only the holder of this token frees the lock (one that stalled past its TTL must not free
# its successor's).
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Written:
    """A committed write: the new version and the stream ids of its events, in order."""

    version: int
    event_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeySetKeys:
    """The Redis names of one key set, and the calls on them."""

    prefix: str = "hook:keys:"

    @property
    def set(self) -> str:
        return self.prefix + "set"

    @property
    def version(self) -> str:
        return self.prefix + "version"

    @property
    def channel(self) -> str:
        return self.prefix + "changed"

    @property
    def _write_keys(self) -> list[str]:
        return [self.set, self.version, self.prefix + "fence", self.prefix + "events"]

    def write_args(
        self, expected: int, version: int, body: str, events: list[KeyEvent], fence: int | None
    ) -> list[str]:
        """ARGV of the write script: replace the set at ``expected`` by ``body`` (``version``)."""
        flat = [json.dumps([x for pair in e.fields().items() for x in pair]) for e in events]
        fence_arg = "" if fence is None else str(fence)
        header = [str(expected), str(version), body, fence_arg, self.channel]
        return [*header, str(STREAM_MAXLEN), *flat]

    def write_sync(self, client: redis.Redis, args: list[str]) -> Written | None:
        """The write script on a synchronous client (start-up, the CLI); None if the version
        moved. Unfenced."""
        return self._written(client.register_script(_WRITE_LUA)(keys=self._write_keys, args=args))

    async def write(self, client: AsyncRedis, args: list[str]) -> Written | None:
        """The write script; None if the version moved, :class:`errors.LockLost` if the
        fencing token in ``args`` is older than the last one issued."""
        keys = self._write_keys
        return self._written(await client.eval(_WRITE_LUA, len(keys), *keys, *args))

    @staticmethod
    def _written(reply: Any) -> Written | None:
        status = int(reply[0])
        if status == -1:
            raise errors.LockLost(
                f"this fencing token is older than {reply[1]}: another replica holds the "
                "rotation lock now"
            )
        if status == 0:
            return None
        return Written(int(reply[1]), tuple(str(i) for i in reply[2:]))

    async def acquire_lock(self, client: AsyncRedis, ttl: float) -> int | None:
        """The rotation lock for ``ttl`` seconds and its fencing token, or None if held."""
        token = await client.eval(
            _LOCK_LUA, 2, self.prefix + "lock", self.prefix + "fence", str(int(ttl * 1000))
        )
        return None if token is None else int(token)

    async def release_lock(self, client: AsyncRedis, token: int) -> None:
        """Free the lock if ``token`` still holds it."""
        await client.eval(_UNLOCK_LUA, 1, self.prefix + "lock", str(token))

    async def read_events(self, client: AsyncRedis, after: str | None, limit: int) -> list[Any]:
        """Up to ``limit`` + 1 raw stream entries after id ``after`` (None: from the start);
        :class:`errors.InvalidRequest` for an id Redis would refuse."""
        start = "-" if after is None else _exclusive_start(after)
        if start is None:  # after the largest id Redis can give: nothing can follow
            return []
        entries: Any = await client.xrange(self.prefix + "events", start, "+", count=limit + 1)
        return list(entries)


def _exclusive_start(after: str) -> str | None:
    """XRANGE's start for the entries after stream id ``after`` ("(" + id), None when no id
    can follow it; :class:`errors.InvalidRequest` unless both parts fit Redis's 64 bits."""
    if not _STREAM_ID.fullmatch(after):
        raise errors.InvalidRequest("after must be an event id such as 1760000000000-0")
    parts = tuple(int(p) for p in after.split("-"))
    if max(parts) > _MAX_ID_PART:
        raise errors.InvalidRequest("after is not an event id: a part exceeds 2**64 - 1")
    return None if parts == (_MAX_ID_PART, _MAX_ID_PART) else "(" + after
