"""How cost grows (issue 15 point 5): the hook with 1,000, 100,000 and 1,000,000 users of
history in Redis, and tokens with 1,000,000 pending steps, each against the smallest case in
the same run (goal >= 0.9: nothing in the hot path may grow with the number of users).

Populating must be fast and must not depend on the facts layout: a few template users get a
month of history through the service's own :class:`RedisFactsStore` (:func:`record_month`), and
each other user gets a copy of one template's keys, DUMP once and RESTORE under the user's own
key names (:meth:`RedisFactsStore.keys`, the store's one function that names them), with the
template key's remaining TTL. Every case has a fresh ``redis-server`` of its own.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from hook_service.facts.attempts import AttemptFactory
from hook_service.facts.device import DeviceKeys
from hook_service.facts.geo import Geo
from hook_service.facts.hashing import FactsKey
from hook_service.facts.redis import RedisFactsStore

from . import prepare
from .facts import record_month
from .load import BenchError, WrkResult
from .report import Figure
from .servers import HOST, Process

if TYPE_CHECKING:
    from .run import Bench

TEMPLATES = 16  # users given a real month of history; the others copy one of them
POOL_USERS = 1000  # distinct users of each hook pool, drawn among the populated ones
COPY_USERS = 2000  # users copied per pipelined round trip
WARM_TOKENS = 200
SEED = 15  # the users drawn are the same from one run to the next

RecordPending = Callable[[str, list[str]], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Sizes:
    """The users of history of each hook case (the first is the one compared against) and the
    pending steps of the large tokens case."""

    users: tuple[int, ...]
    pending: int

    @classmethod
    def full(cls) -> Sizes:
        return cls((1_000, 100_000, 1_000_000), 1_000_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls((1_000, 10_000, 100_000), 100_000)


@dataclass(frozen=True, slots=True)
class HookCase:
    """The hook's run with ``users`` users of history, and what their history takes in
    Redis."""

    users: int
    result: WrkResult
    population: Population


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def label(count: int) -> str:
    """``1k``, ``100k``, ``1M``: a count as the figures name it."""
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return str(count)


def figures(
    bench: Bench, sizes: Sizes, sign_rate: float, record_pending: RecordPending
) -> list[Figure]:
    """Runs every case of ``sizes`` on ``bench``'s processes and returns their figures."""
    cases = [hook_case(bench, users) for users in sizes.users]
    few, many = tokens_cases(bench, sizes.pending, sign_rate, record_pending)
    base = cases[0]
    rows: list[Figure] = []
    for case in cases[1:]:
        rows.append(
            Figure.ratio(
                f"hook req/s with facts, {label(case.users)} users of history vs "
                f"{label(base.users)}",
                case.result.rate,
                base.result.rate,
                0.9,
            )
        )
    for case in cases:
        rows.append(
            Figure(
                f"Redis used_memory, {label(case.users)} users of history",
                case.population.memory / 2**20,
                "MB",
                None,
                None,
                "below",
            )
        )
    for case in cases[1:]:
        # Memory may not grow faster than the users: per user within 1 / 0.9 of the smallest.
        rows.append(
            Figure.ratio_limit(
                f"Redis bytes per user, {label(case.users)} users vs {label(base.users)}",
                case.population.per_user,
                base.population.per_user,
                1.1,
                "B",
            )
        )
    rows.append(
        Figure.ratio(
            f"tokens/s, {label(sizes.pending)} pending steps vs few",
            many.rate,
            few.rate,
            0.9,
        )
    )
    return rows


def hook_case(bench: Bench, users: int) -> HookCase:
    """The hook under :func:`prepare.facts_policy` (rules reading facts), HOOK_REPLAY_WINDOW=0
    as for the facts figures, on a fresh Redis holding ``users`` users of history; its pool
    calls :data:`POOL_USERS` distinct users drawn among them."""
    _log(f"scale: {label(users)} users of history in Redis, then the hook with facts")
    redis = bench.procs.redis(f"redis_scale_{users}")
    try:
        url = f"redis://{HOST}:{redis.port}/0"
        population = asyncio.run(populate(redis.port, bench.env["HOOK_FACTS_KEY"], users))
        drawn = random.Random(SEED + users).sample(range(users), min(POOL_USERS, users))  # noqa: S311
        pool = bench.pool(
            f"scale_hook_{users}",
            (prepare.hook_request(bench.keys, prepare.hook_body(i, amount="50")) for i in drawn),
        )
        result = bench.policy_load(
            f"scale_{users}",
            prepare.facts_policy(True),
            pool,
            HOOK_REPLAY_WINDOW="0",
            HOOK_REDIS_URL=url,
        )
    finally:
        bench.procs.stop(redis)
    per_user = population.per_user
    _log(f"  {result.rate:.0f} req/s; {population.memory / 2**20:.1f} MB, {per_user:.0f} B/user")
    return HookCase(users, result, population)


@dataclass(frozen=True, slots=True)
class Population:
    """What ``users`` users of history take in Redis: the ``used_memory`` growth from the
    empty server, and per user as the copies grew it (the fixed costs, such as the scripts
    the templates loaded, left out)."""

    memory: int
    per_user: float


async def populate(port: int, facts_key: str, users: int) -> Population:
    """Give users ``0 .. users - 1`` (:func:`prepare.user_id`) a month of history in the
    fresh Redis on ``port``: :data:`TEMPLATES` through the store, the others as copies."""
    client = Redis(host=HOST, port=port)
    key = FactsKey.from_base64(facts_key)
    store = RedisFactsStore(client, key=key, timeout=30.0)
    attempts = AttemptFactory(key, DeviceKeys(), Geo())
    try:
        before = await _used_memory(client)
        templates = min(TEMPLATES, users)
        for index in range(templates):
            await record_month(store, attempts, index)
        copies = [await _dump(client, _names(store, index)) for index in range(templates)]
        if not all(copies):
            raise BenchError("a template user has no history in Redis")
        copied = await _used_memory(client)
        expected = sum(len(copies[i % templates]) for i in range(users))
        restores = expected - sum(len(c) for c in copies)
        # redis-py packs and parses about 25k commands/s here; built by hand, the RESTOREs
        # of 1M users stream in while the replies are read.
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            sending = _send_copies(writer, store, copies, templates, users)
            await asyncio.wait_for(asyncio.gather(sending, _read_ok(reader, restores)), 600)
        finally:
            writer.close()
            await writer.wait_closed()
        if await client.dbsize() != expected:
            raise BenchError(f"Redis holds {await client.dbsize()} keys, not {expected}")
        after = await _used_memory(client)
        return Population(after - before, (after - copied) / max(users - templates, 1))
    finally:
        await client.aclose()


async def _send_copies(
    writer: asyncio.StreamWriter,
    store: RedisFactsStore,
    copies: list[list[tuple[int, bytes]]],
    templates: int,
    users: int,
) -> None:
    """RESTORE each template's keys under the names of users ``templates .. users - 1``."""
    own = len(store.keys(prepare.user_id(0)))  # the names before the replay records'
    replay = any(position >= own for copy in copies for position, _ in copy)
    for start in range(templates, users, COPY_USERS):
        chunk: list[bytes] = []
        for index in range(start, min(start + COPY_USERS, users)):
            names = _names(store, index, replay=replay)
            for position, tail in copies[index % templates]:
                name = names[position].encode()
                # The tail as its own item: formatting it in would copy it once more.
                chunk += (b"*5\r\n$7\r\nRESTORE\r\n$%d\r\n%b\r\n" % (len(name), name), tail)
        writer.write(b"".join(chunk))
        await writer.drain()


async def _read_ok(reader: asyncio.StreamReader, count: int) -> None:
    """Read ``count`` replies that must all be ``+OK`` (an error reply is longer, so the
    bytes of ``count`` OKs are always there to read)."""
    block = 10_000
    while count:
        n = min(block, count)
        replies = await reader.readexactly(5 * n)
        if replies != b"+OK\r\n" * n:
            error = replies[replies.find(b"-") :].split(b"\r\n")[0]
            raise BenchError(f"RESTORE failed: {error.decode(errors='replace')[:200]}")
        count -= n


def _names(store: RedisFactsStore, index: int, *, replay: bool = True) -> list[str]:
    """Every key the store names for user ``index``, in the store's order (the replay
    records' last, left out unless ``replay``)."""
    user = prepare.user_id(index)
    return [*store.keys(user), *([store.replay_key(user)] if replay else [])]


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


async def _dump(client: Redis, names: list[str]) -> list[tuple[int, bytes]]:
    """For each key of ``names`` that exists: its position, and the rest of the RESTORE
    command that copies it (TTL: the remaining one, or 0 for none; DUMP payload; REPLACE)."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.dump(name)
        pipe.pttl(name)
    replies: list[Any] = await pipe.execute()
    found = []
    for position in range(len(names)):
        payload, ttl = replies[2 * position], int(replies[2 * position + 1])
        if payload is not None and ttl != -2:  # -2: gone; -1: no TTL (RESTORE's 0)
            tail = _bulk(str(max(ttl, 0)).encode()) + _bulk(payload) + _bulk(b"REPLACE")
            found.append((position, tail))
    return found


async def _used_memory(client: Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


def tokens_cases(
    bench: Bench, pending: int, sign_rate: float, record_pending: RecordPending
) -> tuple[WrkResult, WrkResult]:
    """Tokens (explicit form) on one service and a fresh Redis: first with only the run's own
    pending steps, then with ``pending`` more recorded through the service's RedisStore and
    the run's steps drawn among them."""
    redis = bench.procs.redis("redis_scale_tokens")
    url = f"redis://127.0.0.1:{redis.port}/0"
    server = bench.procs.serve("scale_tokens", {**bench.env, "HOOK_REDIS_URL": url})
    try:
        # As Bench.tokens_once: enough distinct steps to outlast the run.
        count = int(sign_rate * (os.cpu_count() or 1) * bench.duration * 1.2) + 1000
        needed = count + WARM_TOKENS
        _log("scale: tokens with few pending steps")
        asyncio.run(record_pending(url, _subjects(range(needed))))
        few = _tokens(bench, server, "few", range(needed))
        _log(f"scale: {label(pending)} pending steps in Redis, then tokens among them")
        asyncio.run(record_pending(url, _subjects(range(needed, needed + pending))))
        drawn = random.Random(SEED).sample(range(needed, needed + pending), needed)  # noqa: S311
        many = _tokens(bench, server, "many", drawn)
    finally:
        bench.procs.stop(server)
        bench.procs.stop(redis)
    _log(f"  {few.rate:.0f} tokens/s with few, {many.rate:.0f} with {label(pending)}")
    return few, many


def _subjects(indices: range) -> list[str]:
    return [prepare.token_subject(i)[0] for i in indices]


def _tokens(bench: Bench, server: Process, name: str, indices: range | list[int]) -> WrkResult:
    """Tokens/s claiming the steps of ``indices`` (recorded before), each once: the first
    :data:`WARM_TOKENS` warm the service up, wrk replays the others once."""
    now = time.time()  # read by the challenge_token form only

    def requests(chosen: range | list[int]) -> Iterator[prepare.PoolRequest]:
        for i in chosen:
            yield prepare.token_request(
                bench.keys, i, api_key=bench.api_key, now=now, form="fields"
            )

    bench.warm(server, bench.pool(f"scale_tokens_{name}_warm", requests(indices[:WARM_TOKENS])))
    pool = bench.pool(f"scale_tokens_{name}", requests(indices[WARM_TOKENS:]))
    return bench.load(server, pool, once=True)
