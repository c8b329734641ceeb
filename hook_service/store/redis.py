"""The Redis store: pending steps shared by every process and host through one Redis deployment.

Same semantics as :class:`~hook_service.store.memory.MemoryStore` (see
:mod:`hook_service.store.base`); the layout and the Lua scripts are in
:mod:`hook_service.store.redis_scripts`. ``claim`` is one script, so single use holds across
instances, and ``put_pending`` another, so a decision's steps land together or not at all,
and only before the write's deadline. Tokens are kept sealed (:class:`TokenSealer`). The
client and the error guard are :mod:`hook_service._redis`'s, shared with the Redis key store.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import RedisCluster

from hook_service import errors, logs
from hook_service._redis import RedisSite
from hook_service._redis_target import RedisTarget
from hook_service.clock import Clock, system_clock
from hook_service.keys.backends.keyring import DecryptError
from hook_service.store import redis_scripts as scripts
from hook_service.store.base import (
    ALREADY_USED,
    LATE_WRITE,
    NO_PENDING,
    Claimed,
    KeySetGuard,
    PendingStep,
    TokenSealer,
    UserRecords,
    check_issued,
    wrong_scope,
)
from hook_service.tokens.base import IssuedToken

logger = logging.getLogger(logs.STORE)

# A write refused at its deadline must still have time to say so before the caller gives up:
# the deadline sent to Redis is this much earlier than the caller's.
REPLY_MARGIN = 0.05
# An offset to Redis's clock measured with a larger error is taken over a better one older
# than this (the server's clock may have been stepped).
OFFSET_MAX_AGE = 60.0
# Keys per SCAN batch and per DEL of an erasure.
SCAN_COUNT: Final = 1000
_GLOB: Final = re.compile(r"([\\*?\[\]])")


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern (Redis globs: ``* ? [ ] \\``)."""
    return _GLOB.sub(r"\\\1", text)


def _unavailable(name: str) -> errors.StoreUnavailable:
    # The detail is client-facing and names only the error class, never the URL.
    return errors.StoreUnavailable(f"the store is unavailable ({name})")


class RedisClock:
    """Redis's ``TIME`` as seen from here: the local monotonic clock plus an offset measured
    from replies that carry the server's time (error: half the round trip). A write's
    deadline is checked by the server against its own clock, so no clock of the host (nor an
    injected one) needs to agree with Redis's."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.error = math.inf
        self._at = -math.inf

    def observe(self, sent: float, received: float, seconds: Any, micros: Any) -> None:
        """Learn from a reply sent at ``sent`` and received at ``received`` (monotonic) that
        says the server's time was ``seconds``.``micros`` when it ran."""
        error = (received - sent) / 2
        if self.offset is None or error <= self.error or received - self._at > OFFSET_MAX_AGE:
            server = int(seconds) + int(micros) / 1e6
            self.offset, self.error, self._at = server - (sent + received) / 2, error, received

    def server_ms(self, local: float) -> int:
        """The server's time, in ms, at local monotonic time ``local``, rounded early by the
        measurement's error (a deadline never becomes later)."""
        assert self.offset is not None
        return math.floor((local + self.offset - self.error) * 1000)


class RedisStore:
    """Store shared by every app instance through one Redis deployment (redis.asyncio +
    hiredis): a URL or a :class:`RedisTarget` (Sentinel; replicas to wait for).

    ``timeout`` bounds connecting, each reply and waiting for a pooled connection, so an
    unreachable server fails fast with ``errors.StoreUnavailable`` instead of hanging requests.
    A command that meets a connection closed by the server (a restarted Redis) is sent once
    more on a fresh connection: every operation here is safe to repeat (a replayed
    ``put_pending`` changes nothing, a repeated claim returns the same token). ``cluster``:
    ``url`` is a node of a Redis Cluster (``max_connections`` is then per node).
    """

    def __init__(
        self,
        url: RedisTarget | str,
        *,
        sealer: TokenSealer,
        clock: Clock = system_clock,
        timeout: float = 0.5,
        prefix: str = "hook:",
        max_connections: int = 50,
        cluster: bool = False,
    ) -> None:
        self._site = RedisSite(url, cluster=cluster)
        self._sealer = sealer
        self._clock = clock
        self._timeout = timeout
        self._prefix = prefix
        self._server_clock = RedisClock()
        self._redis = self._site.client(
            timeout=timeout, max_connections=max_connections, retry_closed=True
        )
        self._claim_script = self._redis.register_script(scripts.CLAIM_LUA)
        self._put_script = self._redis.register_script(scripts.PUT_LUA)
        self._ensure_script = self._redis.register_script(scripts.ENSURE_LUA)

    def __repr__(self) -> str:
        return f"RedisStore({self._site.location!r}, prefix={self._prefix!r})"

    def record_key(self, user_id: str, key: str) -> str:
        """Redis key of the pending step of (user_id, key) (memory budget: <= 300 bytes per
        pending step); see :mod:`~hook_service.store.redis_scripts`."""
        return scripts.record_key(self._prefix, user_id, key)

    def token_key(self, user_id: str, key: str, challenge_id: str) -> str:
        """Redis key of the token claimed by ``challenge_id`` for (user_id, key)."""
        return scripts.token_key(self._prefix, user_id, key, challenge_id)

    async def put_pending(
        self, steps: Sequence[PendingStep], *, within: float | None = None
    ) -> None:
        await self._write("put_pending", self._put_script, steps, within)

    async def ensure_pending(
        self, steps: Sequence[PendingStep], *, within: float | None = None
    ) -> None:
        await self._write("ensure_pending", self._ensure_script, steps, within)

    async def _write(
        self, operation: str, script: Any, steps: Sequence[PendingStep], within: float | None
    ) -> None:
        if not steps:
            return
        started = time.monotonic()
        # The caller gives up after `within`, and this client after `timeout` at the latest.
        budget = self._timeout if within is None else min(within, self._timeout)
        now = self._clock()
        keys: list[str] = []
        # The deadline, once the server's clock is known; `now` in ms.
        args: list[int | str] = [0, math.floor(now * 1000)]
        for step in steps:
            keys.append(self.record_key(step.user_id, step.key))
            # TTL relative to the injected clock, not PEXPIREAT: Redis then expires the record
            # in the same time domain as the `now` checked by claim (robust to app/Redis clock
            # skew and to fake clocks). Floor: never outlive expires_at.
            ttl_ms = math.floor((step.expires_at - now) * 1000)
            args += [ttl_ms, math.floor(step.expires_at * 1000), step.scope, step.origin]
        with self._site.guard(operation, _unavailable, log=logger):
            if self._server_clock.offset is None:
                await self.ping()
            until = started + budget - REPLY_MARGIN
            args[0] = self._server_clock.server_ms(until)
            sent = time.monotonic()
            # With HOOK_REDIS_MIN_REPLICAS the replicas' acknowledgement fits the same budget.
            reply: Any = await self._site.write(self._redis, script, keys, args, until=until)
        self._server_clock.observe(sent, time.monotonic(), reply[1], reply[2])
        if int(reply[0]) != 1:
            logger.warning("%s refused by Redis: its deadline had passed", operation)
            raise errors.StoreTooLate(LATE_WRITE)

    async def claim(
        self,
        user_id: str,
        key: str,
        issued: IssuedToken,
        now: float,
        guard: KeySetGuard | None = None,
        *,
        scope: str | None = None,
    ) -> Claimed | None:
        check_issued(user_id, key, issued)
        token_key = self.token_key(user_id, key, issued.challenge_id)
        keys = [self.record_key(user_id, key), token_key]
        args: list[int | str] = [
            math.ceil(now * 1000),  # ceil: at the expiry millisecond a step is already gone
            issued.challenge_id,
            self._sealer.seal(issued.token.encode("ascii"), token_key.encode("ascii")),
            issued.jti,
            issued.kid,
            issued.expires_at,
            scope or "",
        ]
        if guard is not None:
            keys.append(guard.redis_key)
            args.append(guard.version)
        until = time.monotonic() + self._timeout - REPLY_MARGIN
        with self._site.guard("claim", _unavailable, log=logger):
            # Refused unless HOOK_REDIS_MIN_REPLICAS replicas hold it: a claim lost in a
            # failover would let the step mint a second token (a retry with the same
            # challenge then gets the token claimed here, confirmed by that retry's WAIT).
            reply: Any = await self._site.write(
                self._redis, self._claim_script, keys, args, until=until
            )
        status = int(reply[0])
        if status == 4:
            return None  # the guard did not hold; nothing was claimed
        if status == 1:
            return Claimed(issued, True, str(reply[1]))
        if status == 2:
            stored = IssuedToken(
                token=self._open(token_key, str(reply[1])),
                jti=str(reply[2]),
                kid=str(reply[3]),
                expires_at=int(reply[4]),
                challenge_id=issued.challenge_id,
                user_id=user_id,
                key=key,
            )
            return Claimed(stored, False, str(reply[5]))
        if status == 3:
            raise errors.StepAlreadyUsed(ALREADY_USED)
        if status == 5:
            raise errors.NoPendingStep(wrong_scope(key, scope or "", str(reply[1])))
        raise errors.NoPendingStep(NO_PENDING)

    def _open(self, token_key: str, sealed: str) -> str:
        try:
            return self._sealer.open(sealed, token_key.encode("ascii")).decode("ascii")
        except (DecryptError, UnicodeDecodeError) as exc:
            # Its KEK left HOOK_KEY_ENCRYPTION_KEYS, or the record was altered in Redis.
            logger.error("the token stored for a challenge does not open: %s", exc)
            raise errors.StepAlreadyUsed(
                "the token stored for this challenge cannot be decrypted; start a new step-up"
            ) from None

    async def _user_keys(self, user_id: str) -> list[str]:
        """Every record key of ``user_id``, pending steps and tokens: one SCAN for its tag (an
        admin operation; it walks the keyspace in batches of :data:`SCAN_COUNT` without
        blocking Redis)."""
        tagged = scripts.user_tagged(user_id)
        pattern = _glob_escape(self._prefix) + "[st]:" + _glob_escape(tagged) + "*"
        return [str(k) async for k in self._redis.scan_iter(match=pattern, count=SCAN_COUNT)]

    async def user_records(self, user_id: str, now: float) -> UserRecords:
        with self._site.guard("user_records", _unavailable, log=logger):
            keys = await self._user_keys(user_id)
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, "e", "c", "x")
                rows: list[Any] = await pipe.execute()
        now_ms = now * 1000
        pending = issued = 0
        for key, (expires, claimed_by, token_expires) in zip(keys, rows, strict=True):
            # A field missing: the record expired between SCAN and HMGET.
            if key[len(self._prefix)] == "s":
                pending += expires is not None and claimed_by is None and now_ms < float(expires)
            else:
                issued += token_expires is not None and now_ms < float(token_expires) * 1000
        return UserRecords(pending_steps=pending, issued_tokens=issued)

    async def erase_user(self, user_id: str) -> int:
        with self._site.guard("erase_user", _unavailable, log=logger):
            keys = await self._user_keys(user_id)
            erased = 0
            for start in range(0, len(keys), SCAN_COUNT):
                erased += int(await self._redis.delete(*keys[start : start + SCAN_COUNT]))
        return erased

    async def ping(self) -> None:
        # TIME answers as PING does, and keeps the offset to the server's clock fresh (the
        # readiness probe calls this), so a hook's write seldom waits for a measurement.
        with self._site.guard("ping", _unavailable, log=logger):
            if isinstance(self._redis, RedisCluster):
                # A fresh cluster client first reads the slot map (and the command table):
                # not part of the round trip measured, whose error makes deadlines early.
                await self._redis.initialize()
            sent = time.monotonic()
            seconds, micros = await self._redis.time()
        self._server_clock.observe(sent, time.monotonic(), seconds, micros)

    async def aclose(self) -> None:
        await self._redis.aclose()
