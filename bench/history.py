"""Many users of history in a fresh Redis, fast and whatever the facts layout (for
bench/scale.py): a few template users get a month of history through the service's own
:class:`RedisFactsStore` (:func:`bench.facts.record_month`), and every other user a copy of
one template's keys, DUMP once and RESTORE under the user's own key names
(:meth:`RedisFactsStore.keys` and :meth:`~RedisFactsStore.replay_key`, the store's functions
that name them), with the template key's remaining TTL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from hook_service.facts.attempts import AttemptFactory
from hook_service.facts.device import DeviceKeys
from hook_service.facts.geo import Geo
from hook_service.facts.hashing import FactsKey
from hook_service.facts.redis import RedisFactsStore

from . import prepare
from .facts import record_month
from .load import BenchError
from .servers import HOST

TEMPLATES = 16  # users given a real month of history; the others copy one of them
COPY_USERS = 2000  # users copied per write to the socket
COPY_TIMEOUT = 600.0  # seconds: 1M users take about 40 here


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
            await asyncio.wait_for(
                asyncio.gather(sending, _read_ok(reader, restores)), COPY_TIMEOUT
            )
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
