"""hook_service/_resp.py: hiredis packs the service's commands into the very bytes redis-py
would, on every kind of client the factory makes, and what it cannot pack goes to redis-py."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.exceptions import DataError

from hook_service._redis import RedisSite
from hook_service._redis_target import RedisTarget
from hook_service._resp import packed
from tests.sentinels import Deployment

pytestmark = pytest.mark.anyio

ARGS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 2, "hook:{u}:k", b"hook:{u}:t", "1733000000", -5, 2**70, 0.1, 1 / 3),
    ("SET", "k", "é \u2028 \U0001f600", b"\x00\xff"),
    ("SET", "k", "lone \ud800 surrogate"),  # hiredis refuses it: redis-py's surrogatepass
    ("CONFIG GET", "maxmemory"),  # a command name of two words, split by redis-py
    ("PING",),
]


@pytest.mark.parametrize("args", ARGS)
def test_the_same_bytes_as_redis_py(args: tuple[Any, ...]) -> None:
    ours = packed(Connection)(encoding_errors="surrogatepass")
    theirs = Connection(encoding_errors="surrogatepass")
    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))
    commands = [args, ("PING",)]
    assert b"".join(ours.pack_commands(commands)) == b"".join(theirs.pack_commands(commands))


def test_what_redis_py_refuses_is_still_refused() -> None:
    with pytest.raises(DataError):
        packed(Connection)().pack_command("SET", "k", True)


def test_one_subclass_per_connection_class_keeping_its_kind() -> None:
    for kind in (Connection, SSLConnection, UnixDomainSocketConnection, SentinelManagedConnection):
        made = packed(kind)
        assert issubclass(made, kind) and packed(kind) is made and packed(made) is made


@pytest.mark.redis
async def test_the_factorys_clients_pack_with_hiredis_and_work(redis_url: str) -> None:
    for url in (redis_url, redis_url.replace("redis://", "rediss://")):
        client = RedisSite(url).client(timeout=0.5)
        kind = client.connection_pool.connection_class  # type: ignore[union-attr]
        assert kind.__name__.startswith("Packed")
        assert issubclass(kind, SSLConnection) == url.startswith("rediss://")
        await client.aclose()
    client = RedisSite(redis_url).client(timeout=0.5, max_connections=4)
    try:
        assert await client.eval("return {KEYS[1], ARGV[1]}", 1, "k", "\ud800x") == ["k", "\ud800x"]
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_sentinel_clients_pack_with_hiredis_and_follow_the_master(
    sentinel_deployment: Deployment,
) -> None:
    target = sentinel_deployment.target
    assert isinstance(target, RedisTarget)
    client = RedisSite(target).client(timeout=0.5)
    try:
        kind = client.connection_pool.connection_class  # type: ignore[union-attr]
        assert issubclass(kind, SentinelManagedConnection) and kind.__name__.startswith("Packed")
        assert await client.eval("return ARGV[1]", 0, "one") == "one"
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_cluster_clients_pack_with_hiredis_on_every_node(cluster_url: str) -> None:
    client = RedisSite(RedisTarget(url=cluster_url, cluster=True)).client(timeout=1.0)
    try:
        for key in ("{a}k", "{b}k", "{c}k"):  # three slots, spread over the masters
            assert await client.eval("return KEYS[1]", 1, key) == key
        nodes = client.get_nodes()  # type: ignore[union-attr]
        assert len(nodes) >= 3
        assert all(node.connection_class.__name__.startswith("Packed") for node in nodes)
    finally:
        await client.aclose()
