"""The Redis :class:`~hook_service.facts.base.FactsStore`: facts shared by every process.

The layout (one hash tag per user) is in :mod:`hook_service.facts.redis_layout`, the scripts in
:mod:`hook_service.facts.redis_scripts`. ``observe`` is one script (read, then record); entries
past the retention or over a cap are deleted afterwards by a second, conditional script, only
when :func:`~hook_service.facts.logic.prune` finds some (rare: an entry goes stale once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from hook_service import errors, logs
from hook_service._redis import ERRORS, AsyncClient, RedisSite
from hook_service._redis_target import RedisTarget
from hook_service.facts import inventory, logic, redis_scripts
from hook_service.facts.base import Attempt, Facts, Once, Proof, Replay
from hook_service.facts.hashing import FactsKey
from hook_service.facts.logic import History, Latest, Limits
from hook_service.facts.redis_layout import (
    FIELDS,
    REPLAYS,
    SEEN_PREFIXES,
    SUFFIXES,
    decode,
    decode_replay,
    encode_latest,
)

logger = logging.getLogger(logs.STORE)

_MIN_LATEST_TTL_MS: Final = 60_000  # an undecided attempt waits this long for settle()


def connect(
    url: RedisTarget | str,
    timeout: float = 0.5,
    max_connections: int = 50,
    *,
    cluster: bool = False,
) -> AsyncClient:
    """A client as the stores use it (:class:`~hook_service._redis.RedisSite`): bounded waits,
    no retries (a retried script could run twice); ``cluster``: ``url`` is a cluster node."""
    site = RedisSite(url, cluster=cluster)
    return site.client(timeout=timeout, max_connections=max_connections)


def _once_args(now: int, once: Once | None) -> list[str | int]:
    """OBSERVE's ARGV 12-15 (redis_scripts._ONCE)."""
    if once is None:
        return ["", 0, 0, ""]
    return [once.digest, now + once.window, once.window * 1000, once.answer]


class RedisFactsStore:
    """Facts in Redis (redis.asyncio). ``client``: a ``redis.asyncio.Redis`` or
    ``RedisCluster`` (shared, not closed here) or a URL or :class:`RedisTarget` (a client of
    its own, closed by :meth:`aclose`; ``cluster``: the URL is a cluster node's). A user's keys
    share one hash tag."""

    def __init__(
        self,
        client: AsyncClient | RedisTarget | str,
        *,
        key: FactsKey,
        limits: Limits | None = None,
        prefix: str = "hook:",
        timeout: float = 0.5,
        on_error: Callable[[str], None] | None = None,
        cluster: bool = False,
    ) -> None:
        self._owned = isinstance(client, (str, RedisTarget))
        self._redis = (
            connect(client, timeout, cluster=cluster)
            if isinstance(client, (str, RedisTarget))
            else client
        )
        self._on_error = on_error  # told the operation of each failure (the metrics)
        self._key = key
        self._limits = limits or Limits()
        self._prefix = prefix
        script = self._redis.register_script
        self._read = script(redis_scripts.READ)
        self._observe_script = script(redis_scripts.OBSERVE)
        self._settle = script(redis_scripts.SETTLE)
        self._prove = script(redis_scripts.PROVE)
        self._fraud = script(redis_scripts.FRAUD)
        self._prune = script(redis_scripts.PRUNE)
        self._take = script(redis_scripts.TAKE)

    def __repr__(self) -> str:
        return f"RedisFactsStore(prefix={self._prefix!r})"

    def _base(self, user_id: str) -> str:
        return f"{self._prefix}f:{{{self._key.user(user_id)}}}:"

    def keys(self, user_id: str) -> list[str]:
        """The user's history keys: history, times, latest, flag
        (:mod:`~hook_service.facts.redis_layout`)."""
        base = self._base(user_id)
        return [base + suffix for suffix in SUFFIXES]

    def replay_key(self, user_id: str) -> str:
        """The user's replay records (a hash, same hash tag as :meth:`keys`)."""
        return self._base(user_id) + REPLAYS

    def _with_replays(self, user_id: str) -> list[str]:
        """:meth:`keys` and then :meth:`replay_key`, the user's hash made once (an HMAC)."""
        base = self._base(user_id)
        return [*(base + suffix for suffix in SUFFIXES), base + REPLAYS]

    @contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        """Every Redis/socket failure (timeouts too) -> ``errors.StoreUnavailable``; the
        message names the error class only (a Redis message may quote a URL or a value)."""
        try:
            yield
        except ERRORS as exc:
            name = type(exc).__name__
            logger.warning("redis facts %s failed: %s", operation, name)
            if self._on_error is not None:
                self._on_error("facts_" + operation)
            raise errors.StoreUnavailable(f"the facts store is unavailable ({name})") from exc

    async def _state(self, keys: list[str]) -> History:
        with self._guard("read"):
            state: Any = await self._read(keys=keys)
        return decode(state)

    async def _prune_after(self, keys: list[str], history: History, now: float) -> None:
        pruned = logic.prune(history, now, self._limits)
        if not pruned.entries:
            return
        args: list[str | int] = []
        for table, name, stamp in pruned.entries:
            number, prefix = FIELDS[table]
            args += [number, prefix + name if table != "flagged_until" else "", stamp]
        with self._guard("prune"):
            await self._prune(keys=[keys[0], keys[3]], args=args)

    async def observe(self, user_id: str, attempt: Attempt, now: float) -> Facts:
        facts = await self._observe(user_id, attempt, now, None)
        assert isinstance(facts, Facts)
        return facts

    async def observe_once(
        self, user_id: str, attempt: Attempt, now: float, once: Once
    ) -> Facts | Replay:
        return await self._observe(user_id, attempt, now, once)

    async def _observe(
        self, user_id: str, attempt: Attempt, now: float, once: Once | None
    ) -> Facts | Replay:
        keys, limits, n = (
            self._with_replays(user_id),
            self._limits,
            logic.seconds(now),
        )
        expires = logic.seconds(attempt.expires_at)
        args: list[str | int] = [
            n,
            limits.retention * 1000,
            "" if attempt.device is None else "d" + attempt.device,
            "" if attempt.ip is None else "i" + attempt.ip,
            n - logic.DAY,
            limits.attempts,
            attempt.scope + "|",
            encode_latest(Latest(attempt)),
            limits.scopes,
            max((expires - n) * 1000, _MIN_LATEST_TTL_MS),
            logic.DAY * 1000,
            *_once_args(n, once),
        ]
        with self._guard("observe"):
            state: Any = await self._observe_script(keys=keys, args=args)
        if len(state) == 1:  # the replay record: "<until>|<answer>"
            return Replay(decode_replay(state[0]))
        history = decode(state)
        facts = logic.facts(history, attempt, now, limits)
        logic.record(history, attempt, now, limits)
        await self._prune_after(keys, history, now)
        return facts

    async def record(
        self, user_id: str, attempt: Attempt, now: float, once: Once | None = None
    ) -> Replay | None:
        result = await self._observe(user_id, attempt, now, once)
        return result if isinstance(result, Replay) else None

    async def settle(
        self, user_id: str, attempt: Attempt, now: float, once: Once | None = None
    ) -> None:
        ttl = (logic.seconds(attempt.expires_at) - logic.seconds(now)) * 1000
        args: list[str | int] = [
            f"{attempt.scope}|{attempt.id}|",
            encode_latest(Latest(attempt)),
            max(ttl, _MIN_LATEST_TTL_MS),
            "" if once is None else once.digest,
            "" if once is None else once.answer,
        ]
        keys = self._with_replays(user_id)[2::2]  # latest, replays
        with self._guard("settle"):
            await self._settle(keys=keys, args=args)

    async def prove(self, user_id: str, proof: Proof, now: float) -> bool:
        # One script decides and writes (redis_scripts.PROVE mirrors logic.prove): one round
        # trip, and no other attempt can land between reading the latest one and marking it.
        keys = self.keys(user_id)
        args: list[str | int] = [
            logic.seconds(now),
            proof.scope + "|",
            proof.step or "",
            self._limits.retention * 1000,
        ]
        with self._guard("prove"):
            reply: Any = await self._prove(keys=[keys[0], keys[2], keys[3]], args=args)
        marked, held, flag = reply
        await self._prune_after(keys, decode([held, None, [], flag]), now)
        return bool(int(marked))

    async def report_fraud(self, user_id: str, now: float) -> None:
        keys = self.keys(user_id)
        ttl = self._limits.flag_ttl
        args: list[str | int] = [logic.seconds(now) + ttl, ttl * 1000, SEEN_PREFIXES]
        with self._guard("report_fraud"):
            await self._fraud(keys=[keys[0], keys[2], keys[3]], args=args)

    async def show(self, user_id: str, now: float) -> dict[str, Any]:
        return inventory.describe(await self._state(self.keys(user_id)), now, self._limits)

    async def erase(self, user_id: str, now: float) -> dict[str, int]:
        with self._guard("erase"):
            state: Any = await self._take(keys=self._with_replays(user_id))
        return inventory.inventory(decode(state), now, self._limits)

    async def ping(self) -> None:
        with self._guard("ping"):
            await self._redis.ping()

    async def aclose(self) -> None:
        if self._owned:
            await self._redis.aclose()
