"""The Redis :class:`~hook_service.facts.base.FactsStore`: facts shared by every process.

Layout, for a user with keyed hash ``T`` (:meth:`FactsKey.user`; the user id never appears),
every key carrying the hash tag ``{T}`` so one user is one Redis Cluster slot:

=====================  ======  ===================================================  ===========
key                    type    content                                              TTL
=====================  ======  ===================================================  ===========
``<p>f:{T}:s`` seen    hash    ``d<device hash>``, ``i<ip hash>`` -> last attempt    retention
``<p>f:{T}:k`` known   hash    ``d…``/``i…`` -> last proof, ``c<CC>`` -> last proof,  retention
                               ``s<step>`` -> last token, ``v`` -> last proof,       after the
                               ``l`` -> ``"<time>,<lat>,<lon>"`` last located proof  last proof
``<p>f:{T}:t`` times   list    attempt times of the last 24 h (at most ``attempts``)  24 h
``<p>f:{T}:a`` latest  list    per scope, the latest attempt, newest first:         its window
                               ``scope|id|at|expires|status|proven|device|ip|cc|``  (>= 60 s)
                               ``lat|lon|steps`` (at most ``scopes``)
``<p>f:{T}:x`` flag    string  flagged until                                         flag TTL
=====================  ======  ===================================================  ===========

Timestamps are whole seconds, small enough for Redis's compact encodings (listpack hashes and
lists, integers stored as integers). ``observe`` is one script (read, then record); entries
past the retention or over a cap are deleted afterwards by a second, conditional script, only
when :func:`~hook_service.facts.logic.prune` finds some (rare: an entry goes stale once).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from hook_service import errors, logs
from hook_service.facts import logic, redis_scripts
from hook_service.facts.base import Attempt, Facts, Proof
from hook_service.facts.hashing import FactsKey
from hook_service.facts.logic import History, Latest, Limits
from hook_service.settings import redact_url

logger = logging.getLogger(logs.STORE)

_STATUS: Final = {"": "u", "continue": "c", "review": "r", "block": "b"}
_STATUS_NAME: Final = {code: name for name, code in _STATUS.items()}
_MIN_LATEST_TTL_MS: Final = 60_000  # an undecided attempt waits this long for settle()
_PROVE_TRIES: Final = 3
# History table -> (key number in the PRUNE script, field prefix)
_FIELDS: Final = {
    "seen_devices": (1, "d"),
    "seen_ips": (1, "i"),
    "known_devices": (2, "d"),
    "known_ips": (2, "i"),
    "known_countries": (2, "c"),
    "steps": (2, "s"),
    "verified_at": (2, "v"),
    "location": (2, "l"),
    "flagged_until": (3, ""),
}


def connect(url: str, timeout: float = 0.5, max_connections: int = 50) -> Redis:
    """A client as the stores use it: bounded waits, no retries (a retried script could run
    twice). The one place to swap for the shared client factory."""
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
    except ValueError:
        raise errors.ConfigError(f"invalid redis URL {redact_url(url)}") from None
    return Redis.from_pool(pool)


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def encode_latest(latest: Latest) -> str:
    a = latest.attempt
    lat, lon = ("", "") if a.location is None else (repr(a.location[0]), repr(a.location[1]))
    return "|".join(
        (
            a.scope,
            a.id,
            str(logic.seconds(a.at)),
            str(logic.seconds(a.expires_at)),
            _STATUS[a.status],
            "1" if latest.proven else "0",
            a.device or "",
            a.ip or "",
            a.country,
            lat,
            lon,
            ",".join(a.steps),
        )
    )


def decode_latest(text: str) -> Latest:
    scope, id_, at, exp, status, proven, dev, ip, cc, lat, lon, steps = text.split("|")
    attempt = Attempt(
        id=id_,
        at=float(at),
        scope=scope,
        device=dev or None,
        ip=ip or None,
        country=cc,
        location=(float(lat), float(lon)) if lat else None,
        status=_STATUS_NAME[status],
        steps=tuple(steps.split(",")) if steps else (),
        expires_at=float(exp),
    )
    return Latest(attempt, proven == "1")


def _pairs(flat: list[Any]) -> Iterator[tuple[str, str]]:
    items = [_text(v) for v in flat]
    return zip(items[0::2], items[1::2], strict=True)


def decode(state: list[Any]) -> History:
    """A :class:`History` from the READ part of the scripts: [seen, known, times, latest, flag]."""
    seen, known, times, latest, flag = state
    h = History()
    for field, value in _pairs(seen):
        table = h.seen_devices if field[0] == "d" else h.seen_ips
        table[field[1:]] = int(value)
    for field, value in _pairs(known):
        kind, name = field[0], field[1:]
        if kind == "l":
            at, lat, lon = value.split(",")
            h.location = (int(at), float(lat), float(lon))
        elif kind == "v":
            h.verified_at = int(value)
        else:
            tables = {"d": h.known_devices, "i": h.known_ips, "c": h.known_countries}
            tables.get(kind, h.steps)[name] = int(value)
    h.times = [int(_text(t)) for t in times]
    for record in reversed(latest):
        decoded = decode_latest(_text(record))
        h.latest[decoded.attempt.scope] = decoded
    h.flagged_until = int(_text(flag)) if flag else 0
    return h


def _known_fields(before: History, after: History) -> list[str]:
    """HSET arguments for what a proof changed in the known hash."""
    fields: list[str] = []
    for table, prefix in (
        ("known_devices", "d"),
        ("known_ips", "i"),
        ("known_countries", "c"),
        ("steps", "s"),
    ):
        old: dict[str, int] = getattr(before, table)
        for name, stamp in getattr(after, table).items():
            if old.get(name) != stamp:
                fields += [prefix + name, str(stamp)]
    if after.verified_at != before.verified_at:
        fields += ["v", str(after.verified_at)]
    if after.location is not None and after.location != before.location:
        at, lat, lon = after.location
        fields += ["l", f"{at},{lat!r},{lon!r}"]
    return fields


class RedisFactsStore:
    """Facts in Redis (redis.asyncio). ``client``: a ``redis.asyncio.Redis`` (shared, not
    closed here) or a URL (a client of its own, closed by :meth:`aclose`)."""

    def __init__(
        self,
        client: Redis | str,
        *,
        key: FactsKey,
        limits: Limits | None = None,
        prefix: str = "hook:",
        timeout: float = 0.5,
    ) -> None:
        self._owned = isinstance(client, str)
        self._redis = connect(client, timeout) if isinstance(client, str) else client
        self._key = key
        self._limits = limits or Limits()
        self._prefix = prefix
        script = self._redis.register_script
        self._read = script(redis_scripts.READ)
        self._observe = script(redis_scripts.OBSERVE)
        self._settle = script(redis_scripts.SETTLE)
        self._prove = script(redis_scripts.PROVE)
        self._fraud = script(redis_scripts.FRAUD)
        self._prune = script(redis_scripts.PRUNE)
        self._take = script(redis_scripts.TAKE)

    def __repr__(self) -> str:
        return f"RedisFactsStore(prefix={self._prefix!r})"

    def keys(self, user_id: str) -> list[str]:
        """The user's keys: seen, known, times, latest, flag (see the module docstring)."""
        base = f"{self._prefix}f:{{{self._key.user(user_id)}}}:"
        return [base + suffix for suffix in "sktax"]

    @contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        """Every Redis/socket failure (timeouts too) -> ``errors.StoreUnavailable``; the
        message names the error class only (a Redis message may quote a URL or a value)."""
        try:
            yield
        except (RedisError, OSError) as exc:
            name = type(exc).__name__
            logger.warning("redis facts %s failed: %s", operation, name)
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
            number, prefix = _FIELDS[table]
            args += [number, prefix + name if table != "flagged_until" else "", stamp]
        with self._guard("prune"):
            await self._prune(keys=[keys[0], keys[1], keys[4]], args=args)

    async def observe(self, user_id: str, attempt: Attempt, now: float) -> Facts:
        keys, limits, n = self.keys(user_id), self._limits, logic.seconds(now)
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
        ]
        with self._guard("observe"):
            state: Any = await self._observe(keys=keys, args=args)
        history = decode(state)
        facts = logic.facts(history, attempt, now, limits)
        logic.record(history, attempt, now, limits)
        await self._prune_after(keys, history, now)
        return facts

    async def record(self, user_id: str, attempt: Attempt, now: float) -> None:
        await self.observe(user_id, attempt, now)

    async def settle(self, user_id: str, attempt: Attempt, now: float) -> None:
        ttl = (logic.seconds(attempt.expires_at) - logic.seconds(now)) * 1000
        args: list[str | int] = [
            f"{attempt.scope}|{attempt.id}|",
            encode_latest(Latest(attempt)),
            max(ttl, _MIN_LATEST_TTL_MS),
        ]
        with self._guard("settle"):
            await self._settle(keys=[self.keys(user_id)[3]], args=args)

    async def prove(self, user_id: str, proof: Proof, now: float) -> bool:
        keys = self.keys(user_id)
        for _ in range(_PROVE_TRIES):
            before = await self._state(keys)
            after = logic.copy(before)
            marked = logic.prove(after, proof, now)
            old, new = before.latest.get(proof.scope), after.latest.get(proof.scope)
            changed = old is not None and new is not None and new.proven != old.proven
            args: list[str | int] = [
                encode_latest(old) if changed and old else "",
                encode_latest(new) if changed and new else "",
                self._limits.retention * 1000,
                *_known_fields(before, after),
            ]
            with self._guard("prove"):
                done = await self._prove(keys=[keys[1], keys[3]], args=args)
            if int(done):
                await self._prune_after(keys, after, now)
                return marked
        # Each retry means another attempt for this scope landed meanwhile: the newest one
        # was never proved by this request, so nothing is marked.
        return False

    async def report_fraud(self, user_id: str, now: float) -> None:
        keys = self.keys(user_id)
        ttl = self._limits.flag_ttl
        args: list[int] = [logic.seconds(now) + ttl, ttl * 1000]
        with self._guard("report_fraud"):
            await self._fraud(keys=[keys[1], keys[3], keys[4]], args=args)

    async def show(self, user_id: str, now: float) -> dict[str, Any]:
        return logic.describe(await self._state(self.keys(user_id)), now, self._limits)

    async def erase(self, user_id: str, now: float) -> dict[str, int]:
        with self._guard("erase"):
            state: Any = await self._take(keys=self.keys(user_id))
        return logic.inventory(decode(state), now, self._limits)

    async def ping(self) -> None:
        with self._guard("ping"):
            await self._redis.ping()

    async def aclose(self) -> None:
        if self._owned:
            await self._redis.aclose()
