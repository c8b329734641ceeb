"""hook_service/_redis_batch.py: the script calls of one loop turn share one write on the
client's lane, each caller still gets its own reply or error, and faults fail them as before
(the lane's own guarantees: tests/test_redis_lane.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hook_service._redis import RedisSite
from hook_service._redis_batch import BatchingRedis
from hook_service._redis_lane import _Link
from hook_service._redis_target import RedisTarget
from tests.sentinels import Deployment
from tests.store.support import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ECHO = "if ARGV[1] == 'fail' then return redis.error_reply('ERR asked to fail') end return ARGV[1]"


async def connections(url: str) -> int:
    """The clients connected to the server at ``url``, the one asking left out."""
    raw = aredis.Redis.from_url(url)
    try:
        return len(await raw.client_list()) - 1
    finally:
        await raw.aclose()


async def test_calls_of_one_turn_share_one_connection_and_one_write_each_with_its_own_reply(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    send = _Link.send

    def counted(link: _Link, data: bytes, futures: list[Any]) -> None:
        writes.append(len(futures))
        send(link, data, futures)

    monkeypatch.setattr(_Link, "send", counted)
    client = RedisSite(redis_url).client(timeout=1.0, max_connections=50)
    assert isinstance(client, BatchingRedis)
    echo = client.register_script(ECHO)
    try:
        # Loaded first (SCRIPT LOAD goes through the pool: one pooled connection).
        assert await echo(args=["warm"]) == "warm"
        writes.clear()
        words = [f"caller-{i}" for i in range(8)]
        assert await asyncio.gather(*(echo(args=[w]) for w in words)) == words
        assert writes == [8]  # one write of the 8 calls
        assert await connections(redis_url) == 1 + 1  # the lane and the pooled one
        # Without the lane, the same 8 calls take 8 connections from the pool.
        plain = aredis.Redis.from_url(redis_url, max_connections=50, decode_responses=True)
        script = plain.register_script(ECHO)
        try:
            await script(args=["warm"])
            assert await asyncio.gather(*(script(args=[w]) for w in words)) == words
            assert await connections(redis_url) == 2 + 8
        finally:
            await plain.aclose()
    finally:
        await client.aclose()


async def test_an_error_reply_is_its_callers_alone(redis_url: str) -> None:
    client = RedisSite(redis_url).client(timeout=1.0)
    echo = client.register_script(ECHO)
    try:
        results = await asyncio.gather(
            echo(args=["a"]), echo(args=["fail"]), echo(args=["b"]), return_exceptions=True
        )
        assert results[0] == "a" and results[2] == "b"
        assert isinstance(results[1], ResponseError) and "asked to fail" in str(results[1])
    finally:
        await client.aclose()


async def test_scripts_flushed_from_redis_are_loaded_again_for_a_whole_batch(
    redis_url: str,
) -> None:
    client = RedisSite(redis_url).client(timeout=1.0)
    echo = client.register_script(ECHO)
    try:
        assert await echo(args=["warm"]) == "warm"
        await client.script_flush()  # as after a restart: every EVALSHA meets NOSCRIPT
        words = [str(i) for i in range(6)]
        assert await asyncio.gather(*(echo(args=[w]) for w in words)) == words
    finally:
        await client.aclose()


async def test_a_paused_server_fails_every_call_of_a_batch_within_the_timeout(
    redis_server: RedisServer, redis_url: str
) -> None:
    client = RedisSite(redis_url).client(timeout=0.3, retry_closed=True)
    echo = client.register_script(ECHO)
    try:
        assert await echo(args=["warm"]) == "warm"
        redis_server.pause()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            results = await asyncio.gather(
                *(echo(args=[str(i)]) for i in range(5)), return_exceptions=True
            )
            took = loop.time() - started
        finally:
            redis_server.resume()
        # redis-py's class, within the timeout: not sent again after it (retry_closed or not).
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert took < 0.45, took
        words = ["after", "the", "pause"]
        assert await asyncio.gather(*(echo(args=[w]) for w in words)) == words
    finally:
        await client.aclose()


async def test_a_caller_that_gives_up_leaves_the_others_their_replies(redis_url: str) -> None:
    client = RedisSite(redis_url).client(timeout=1.0)
    echo = client.register_script(ECHO)
    try:
        await echo(args=["warm"])
        impatient = asyncio.ensure_future(echo(args=["gone"]))
        others = [asyncio.ensure_future(echo(args=[str(i)])) for i in range(3)]
        await asyncio.sleep(0)  # every call has joined the batch
        impatient.cancel()
        assert await asyncio.gather(*others) == ["0", "1", "2"]
        with pytest.raises(asyncio.CancelledError):
            await impatient
    finally:
        await client.aclose()


READONLY = "return redis.error_reply('READONLY You can not write against a read only replica.')"


@pytest.mark.slow
async def test_sentinel_clients_batch_too_and_drop_a_demoted_masters_connection(
    sentinel_deployment: Deployment,
) -> None:
    target = sentinel_deployment.target
    assert isinstance(target, RedisTarget)
    client = RedisSite(target).client(timeout=1.0, retry_closed=True)
    assert isinstance(client, BatchingRedis) and client.lane is not None
    pool: Any = client.connection_pool
    echo, readonly = client.register_script(ECHO), client.register_script(READONLY)
    try:
        words = [f"w{i}" for i in range(5)]
        assert await asyncio.gather(*(echo(args=[w]) for w in words)) == words
        master = await pool.get_master_address()
        (lane,) = [c for c in await client.client_list() if c["cmd"] == "evalsha"]
        assert lane["laddr"] == f"{master[0]}:{master[1]}"  # the master the Sentinels name
        # READONLY from a Sentinel master: redis-py's ConnectionError (the master was demoted),
        # the connection dropped, the call sent once more on a new one (retry_closed), which
        # meets it again here.
        with pytest.raises(RedisConnectionError, match=r"^The previous master is now a slave$"):
            await readonly()
        assert await echo(args=["after"]) == "after"
        (again,) = [c for c in await client.client_list() if c["cmd"] == "evalsha"]
        assert again["id"] != lane["id"]
        plain: Any = RedisSite(target).client(timeout=1.0, retry_closed=True)
        plain.lane = None
        try:  # what redis-py itself raises there
            with pytest.raises(RedisConnectionError, match=r"^The previous master is now a slave$"):
                await plain.register_script(READONLY)()
        finally:
            await plain.aclose()
    finally:
        await client.aclose()


async def test_a_cluster_client_has_no_lane(redis_url: str) -> None:
    client = RedisSite(redis_url, cluster=True).client(timeout=1.0)
    try:
        assert not isinstance(client, BatchingRedis)
    finally:
        await client.aclose()
