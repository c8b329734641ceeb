"""hook_service/_redis_batch.py: the script calls of one loop turn share one pipeline on one
connection, each caller still gets its own reply or error, and faults fail them as before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.exceptions import ResponseError

from hook_service._redis import ERRORS, RedisSite
from hook_service._redis_batch import BatchingRedis
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


async def test_calls_of_one_turn_share_one_connection_each_with_its_own_reply(
    redis_url: str,
) -> None:
    client = RedisSite(redis_url).client(timeout=1.0, max_connections=50)
    assert isinstance(client, BatchingRedis)
    echo = client.register_script(ECHO)
    try:
        # Loaded first: a batch that meets NOSCRIPT loads the script once per caller.
        assert await echo(args=["warm"]) == "warm"
        words = [f"caller-{i}" for i in range(8)]
        assert await asyncio.gather(*(echo(args=[w]) for w in words)) == words
        assert await connections(redis_url) == 1
        # Without batching, the same 8 calls take 8 connections from the pool.
        plain = aredis.Redis.from_url(redis_url, max_connections=50, decode_responses=True)
        script = plain.register_script(ECHO)
        try:
            await script(args=["warm"])
            assert await asyncio.gather(*(script(args=[w]) for w in words)) == words
            assert await connections(redis_url) == 1 + 8
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
        assert all(isinstance(r, ERRORS) for r in results), results
        assert took < 2.0
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


@pytest.mark.slow
async def test_sentinel_clients_batch_too(sentinel_deployment: Deployment) -> None:
    target = sentinel_deployment.target
    assert isinstance(target, RedisTarget)
    client: Any = RedisSite(target).client(timeout=1.0)
    assert isinstance(client, BatchingRedis)
    echo = client.register_script(ECHO)
    try:
        words = [f"w{i}" for i in range(5)]
        assert await asyncio.gather(*(echo(args=[w]) for w in words)) == words
    finally:
        await client.aclose()
