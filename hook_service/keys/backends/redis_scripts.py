"""How the shared key set lives in Redis: key names, and the calls of the Lua scripts that
change it (their text is in :mod:`hook_service.keys.backends.redis_lua`).

Under a prefix (``hook:keys:``; on a Redis Cluster its last part is a hash tag,
``hook:{keys}:``, :func:`cluster_names`, so that every name below is in one slot and each
script runs on one node): ``set`` (the sealed document,
:mod:`hook_service.keys.backends.sealed`), ``version`` (a small key every replica polls),
``origin`` (see below), ``fence`` (the last fencing token issued with the rotation lock),
``lock``, ``events`` (the audit stream) and the pub/sub channel ``changed``. A change is one
script: compare-and-set on the version, refuse a stale fencing token, write the set, append
the audit events and PUBLISH the new version (on a cluster SPUBLISH, sharded pub/sub: the
channel is in the set's slot), all or nothing.

After data loss a running replica puts its copy back with the restore script: compare-and-set
on "no version" (of two replicas restoring at once, one writes; the other adopts it). A set
that was put back, or created at start-up on an empty Redis, is marked in ``origin``
(``"restored <version> <digest>"`` or ``"created …"``) until the next change clears it; while
it is marked, a replica holding a newer copy may replace it (the newest copy wins, never an
older one), and a restored copy replaces a created one of the same version. A set without the
mark (changed since, or restored from a backup by an operator) is never overwritten this way.
:class:`~hook_service.keys.backends.redis.RedisKeyStore` keeps the replica's state on top.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from hook_service import errors, logs
from hook_service._redis import AsyncClient, RedisSite, SyncClient
from hook_service.keys.backends.redis_lua import (
    CLUSTER_RESTORE_LUA,
    CLUSTER_WRITE_LUA,
    LOCK_LUA,
    RESTORE_LUA,
    UNLOCK_LUA,
    WRITE_LUA,
)
from hook_service.keys.events import KeyEvent

log = logging.getLogger(logs.KEYSTORE)

STREAM_MAXLEN = 10_000  # audit entries kept (approximately: XADD MAXLEN ~)
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_MAX_ID_PART = 2**64 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class Written:
    """A committed write: the new version and the stream ids of its events, in order."""

    version: int
    event_ids: tuple[str, ...]


def cluster_names(prefix: str) -> str:
    """The names' prefix on a Redis Cluster: ``prefix`` with its last part as a hash tag
    (``hook:keys:`` -> ``hook:{keys}:``), unless it already holds one."""
    opened = prefix.find("{")
    if opened >= 0 and prefix.find("}", opened) > opened + 1:
        return prefix
    head, sep, last = prefix.rstrip(":").rpartition(":")
    return f"{head}{sep}{{{last}}}:"


@dataclass(frozen=True, slots=True)
class KeySetKeys:
    """The Redis names of one key set, and the calls on them. ``prefix`` names the set (its
    sealed document is bound to it); ``cluster``: the names carry one hash tag and changes are
    announced by sharded pub/sub. A single Redis keeps the untagged names of earlier releases
    (docs/deploying.md, "Redis Cluster": no migration)."""

    prefix: str = "hook:keys:"
    cluster: bool = False

    def name(self, suffix: str) -> str:
        """The Redis name of the set's ``suffix`` (``set``, ``version``, ``events``, …)."""
        return (cluster_names(self.prefix) if self.cluster else self.prefix) + suffix

    @property
    def set(self) -> str:
        return self.name("set")

    @property
    def version(self) -> str:
        return self.name("version")

    @property
    def channel(self) -> str:
        return self.name("changed")

    @property
    def origin(self) -> str:
        return self.name("origin")

    @property
    def lock(self) -> str:
        return self.name("lock")

    @property
    def fence(self) -> str:
        return self.name("fence")

    @property
    def stream(self) -> str:
        """The audit events."""
        return self.name("events")

    @property
    def names(self) -> tuple[str, ...]:
        """Every key of the set (not the channel)."""
        return (self.set, self.version, self.fence, self.stream, self.origin, self.lock)

    @property
    def _write_keys(self) -> list[str]:
        return [self.set, self.version, self.fence, self.stream, self.origin]

    @property
    def _write_lua(self) -> str:
        return CLUSTER_WRITE_LUA if self.cluster else WRITE_LUA

    @property
    def _restore_lua(self) -> str:
        return CLUSTER_RESTORE_LUA if self.cluster else RESTORE_LUA

    def write_args(
        self,
        expected: int,
        version: int,
        body: str,
        events: list[KeyEvent],
        fence: int | None,
        origin: str = "",
    ) -> list[str]:
        """ARGV of the write script: replace the set at ``expected`` by ``body`` (``version``);
        ``origin`` marks it (:func:`origin`), else the mark is cleared."""
        flat = [json.dumps([x for pair in e.fields().items() for x in pair]) for e in events]
        fence_arg = "" if fence is None else str(fence)
        header = [str(expected), str(version), body, fence_arg, self.channel]
        return [*header, str(STREAM_MAXLEN), origin, *flat]

    async def restore(
        self, client: AsyncClient, version: int, body: str, events: list[KeyEvent]
    ) -> Written | None:
        """Put ``body`` (the set at ``version``) back if Redis holds none, or holds a marked
        set this one may replace (module docstring); None when it may not."""
        args = self.write_args(0, version, body, events, None, origin("restored", version, body))
        keys = self._write_keys
        return self._written(await client.eval(self._restore_lua, len(keys), *keys, *args))

    def write_sync(self, client: SyncClient, args: list[str]) -> Written | None:
        """The write script on a synchronous client (start-up, the CLI); None if the version
        moved. Unfenced."""
        script = client.register_script(self._write_lua)
        return self._written(script(keys=self._write_keys, args=args))

    async def write(
        self, site: RedisSite, client: AsyncClient, args: list[str], *, until: float
    ) -> Written | None:
        """The write script; None if the version moved, :class:`errors.LockLost` if the
        fencing token in ``args`` is older than the last one issued; with
        ``HOOK_REDIS_MIN_REPLICAS``, :class:`~hook_service._redis.NotReplicated` when the
        replicas did not acknowledge it by ``until`` (:meth:`RedisSite.write`)."""
        script = client.register_script(self._write_lua)
        return self._written(await site.write(client, script, self._write_keys, args, until=until))

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

    async def acquire_lock(self, client: AsyncClient, ttl: float) -> int | None:
        """The rotation lock for ``ttl`` seconds and its fencing token, or None if held."""
        token = await client.eval(LOCK_LUA, 2, self.lock, self.fence, str(int(ttl * 1000)))
        return None if token is None else int(token)

    async def release_lock(self, client: AsyncClient, token: int) -> None:
        """Free the lock if ``token`` still holds it."""
        await client.eval(UNLOCK_LUA, 1, self.lock, str(token))

    async def events(
        self, client: AsyncClient, after: str | None, limit: int
    ) -> tuple[list[KeyEvent], str | None]:
        """Up to ``limit`` audit events after stream id ``after`` (None: from the start) and
        the cursor of the next page, or None when there is no more; a malformed entry is
        skipped (with a warning); :class:`errors.InvalidRequest` for an id Redis would refuse."""
        start = "-" if after is None else _exclusive_start(after)
        if start is None:  # after the largest id Redis can give: nothing can follow
            return [], None
        entries: Any = await client.xrange(self.stream, start, "+", count=limit + 1)
        out = []
        for entry_id, fields in entries[:limit]:
            try:
                out.append(KeyEvent.from_fields(entry_id, fields))
            except (KeyError, ValueError):
                log.warning("key event %s is malformed; skipped", entry_id)
        more = len(entries) > limit
        return out, (str(entries[limit - 1][0]) if more and limit else None)


def digest(body: str) -> str:
    """A short name of one sealed document (16 hex digits of SHA-256; it holds no secret)."""
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def origin(kind: str, version: int, body: str) -> str:
    """The ``origin`` mark of a set ``kind`` (``created``, ``restored``) as ``body``."""
    return f"{kind} {version} {digest(body)}"


def parse_origin(value: str | bytes | None) -> tuple[str, int, str] | None:
    """``(kind, version, digest)`` of an ``origin`` mark, or None for none (or a bad one)."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value or ""
    parts = text.split(" ")
    if len(parts) != 3 or not _DIGITS.fullmatch(parts[1]):
        return None
    return parts[0], int(parts[1]), parts[2]


def _exclusive_start(after: str) -> str | None:
    """XRANGE's start for the entries after stream id ``after`` ("(" + id), None when no id
    can follow it; :class:`errors.InvalidRequest` unless both parts fit Redis's 64 bits."""
    if not _STREAM_ID.fullmatch(after):
        raise errors.InvalidRequest("after must be an event id such as 1760000000000-0")
    parts = tuple(int(p) for p in after.split("-"))
    if max(parts) > _MAX_ID_PART:
        raise errors.InvalidRequest("after is not an event id: a part exceeds 2**64 - 1")
    return None if parts == (_MAX_ID_PART, _MAX_ID_PART) else "(" + after
