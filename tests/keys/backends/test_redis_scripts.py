"""The Redis layout and Lua scripts of the shared key set, on a real private redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis as AsyncRedis
from redis.crc import key_slot

from hook_service import errors
from hook_service._redis import RedisSite
from hook_service.keys.backends.redis_scripts import KeySetKeys, Written, cluster_names
from hook_service.keys.events import KeyEvent

pytestmark = pytest.mark.anyio

KEYS = KeySetKeys("t:keys:")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[AsyncRedis]:
    redis = AsyncRedis.from_url(redis_url, decode_responses=True)
    try:
        yield redis
    finally:
        await redis.aclose()


def test_one_redis_keeps_the_names_and_a_cluster_tags_them_into_one_slot() -> None:
    single, cluster = KeySetKeys(), KeySetKeys(cluster=True)
    # Earlier releases' names: a single Redis upgrades without moving anything.
    assert (single.set, single.version, single.channel) == (
        "hook:keys:set",
        "hook:keys:version",
        "hook:keys:changed",
    )
    assert (cluster.set, cluster.stream, cluster.lock) == (
        "hook:{keys}:set",
        "hook:{keys}:events",
        "hook:{keys}:lock",
    )
    slots = {key_slot(name.encode()) for name in (*cluster.names, cluster.channel)}
    assert len(slots) == 1
    assert len({key_slot(name.encode()) for name in single.names}) > 1
    assert cluster_names("t:keys:") == "t:{keys}:"
    assert cluster_names("app:{tenant}:keys:") == "app:{tenant}:keys:"  # already tagged
    assert cluster_names("keys") == "{keys}:"


# Only consulted for how many replicas a write waits for (none); the client is the test's.
SITE = RedisSite("redis://127.0.0.1")


async def write(client: AsyncRedis, args: list[str]) -> Written | None:
    return await KEYS.write(SITE, client, args, until=0)


def event(version: int) -> KeyEvent:
    return KeyEvent("created", "k" * 43, 1000, "cli", "r1", version)


async def test_a_write_is_compare_and_set_on_the_version(client: AsyncRedis) -> None:
    pubsub = client.pubsub()
    await pubsub.subscribe(KEYS.channel)
    first = await write(client, KEYS.write_args(0, 1, "one", [event(1)], None))
    assert first is not None and first.version == 1 and len(first.event_ids) == 1
    assert await write(client, KEYS.write_args(0, 2, "lost", [event(2)], None)) is None
    assert (await client.get(KEYS.set), await client.get(KEYS.version)) == ("one", "1")
    assert await client.xlen("t:keys:events") == 1  # the losing write appended nothing
    messages: list[dict[str, Any]] = []
    with anyio.fail_after(5):  # guards a hang
        while len(messages) < 2:  # the subscription's confirmation, then the change
            message = await pubsub.get_message(timeout=1)
            messages += [message] if message else []
    assert messages[1]["data"] == "1"  # the new version
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_stale_fencing_token_cannot_write_and_cannot_unlock(client: AsyncRedis) -> None:
    old = await KEYS.acquire_lock(client, 10)
    assert old is not None and await KEYS.acquire_lock(client, 10) is None
    await client.delete("t:keys:lock")  # the holder stalled past its TTL
    new = await KEYS.acquire_lock(client, 10)
    assert new is not None and new > old
    with pytest.raises(errors.LockLost):
        await write(client, KEYS.write_args(0, 1, "stale", [], old))
    assert await client.get(KEYS.set) is None
    await KEYS.release_lock(client, old)
    assert await client.get("t:keys:lock") == str(new)  # still the new holder's
    assert await write(client, KEYS.write_args(0, 1, "fresh", [], new)) is not None
    await KEYS.release_lock(client, new)
    assert await client.get("t:keys:lock") is None


@pytest.mark.parametrize("after", ["x", "1-", "-1", "99999999999999999999-0", "1-2-3"])
async def test_an_event_cursor_redis_would_refuse_is_invalid_request(
    client: AsyncRedis, after: str
) -> None:
    with pytest.raises(errors.InvalidRequest):
        await KEYS.events(client, after, 10)
