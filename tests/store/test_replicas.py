"""HOOK_REDIS_MIN_REPLICAS (design.md "Redis"): a claim or a pending step that fewer replicas
acknowledged than asked for is refused, never answered as done; on a real Sentinel group (one
replica) and on one Redis server (no replica)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
import redis

from hook_service import errors
from hook_service._redis_target import RedisTarget
from hook_service.store.redis import RedisStore
from tests.sentinels import Deployment
from tests.store.support import claim, issued, pending, redis_store
from tests.support import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
async def stores(
    sentinel_deployment: Deployment, clock: FakeClock
) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """A store waiting for the group's one replica, and one asking for two (never met)."""
    target = sentinel_deployment.target
    assert isinstance(target, RedisTarget) and target.min_replicas == 1
    met = redis_store(target, clock)
    unmet = redis_store(dataclasses.replace(target, min_replicas=2), clock)
    try:
        yield met, unmet
    finally:
        await met.aclose()
        await unmet.aclose()


async def test_a_claim_short_of_replicas_is_refused_and_a_same_challenge_retry_gets_its_token(
    stores: tuple[RedisStore, RedisStore], clock: FakeClock
) -> None:
    met, unmet = stores
    await met.put_pending([pending(clock)])
    first = issued(clock, challenge_id="chl_1")
    with pytest.raises(errors.StoreUnavailable, match="NotReplicated"):
        await claim(unmet, clock, first)
    # The script ran on the master before the WAIT: the step is consumed by chl_1. A retry
    # with the same challenge gets that token (now confirmed), never a second one.
    got, fresh = await claim(met, clock, issued(clock, challenge_id="chl_1"))
    assert fresh is False and got.token == first.token and got.jti == first.jti
    with pytest.raises(errors.StepAlreadyUsed):
        await claim(met, clock, issued(clock, challenge_id="chl_2"))


async def test_a_retry_writes_so_that_its_wait_covers_the_claimed_token(
    stores: tuple[RedisStore, RedisStore], clock: FakeClock, sentinel_deployment: Deployment
) -> None:
    met, _ = stores
    await met.put_pending([pending(clock)])
    await claim(met, clock, issued(clock))
    master = redis.Redis.from_url(sentinel_deployment.url, decode_responses=True)
    try:
        before = master.info("replication")["master_repl_offset"]
        _got, fresh = await claim(met, clock, issued(clock))
        after = master.info("replication")["master_repl_offset"]
    finally:
        master.close()
    # A WAIT after a reply that wrote nothing would confirm nothing (WAIT counts this
    # connection's last write): the retry re-sets the token record's TTL, a replicated write.
    assert fresh is False and after > before


async def test_a_pending_step_short_of_replicas_is_refused(
    stores: tuple[RedisStore, RedisStore], clock: FakeClock
) -> None:
    met, unmet = stores
    with pytest.raises(errors.StoreUnavailable, match="NotReplicated"):
        await unmet.put_pending([pending(clock)], within=0.3)
    await met.put_pending([pending(clock, key="manual_check")], within=0.3)
    got, fresh = await claim(met, clock, issued(clock, key="manual_check"))
    assert fresh is True and got.key == "manual_check"


async def test_one_redis_without_replicas_refuses_writes_that_ask_for_one(
    redis_url: str, clock: FakeClock
) -> None:
    store = redis_store(RedisTarget(url=redis_url, min_replicas=1), clock)
    plain = redis_store(redis_url, clock)
    try:
        with pytest.raises(errors.StoreUnavailable, match="NotReplicated"):
            await store.put_pending([pending(clock)])
        await plain.put_pending([pending(clock)])
        with pytest.raises(errors.StoreUnavailable, match="NotReplicated"):
            await claim(store, clock, issued(clock))
        await store.ping()  # reads need no replica
    finally:
        await store.aclose()
        await plain.aclose()
