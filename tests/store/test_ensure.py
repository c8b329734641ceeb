"""Store.ensure_pending (issue 11 point 3): what a replayed hook request does to its pending
steps: create a missing one, never replace, re-open or extend one. Both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hook_service import errors
from hook_service.store.base import Store
from hook_service.store.memory import MemoryStore
from hook_service.store.redis import RedisStore
from tests.store.support import claim, issued, pending
from tests.support import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    if request.param == "memory":
        instance: Store = MemoryStore(clock)
    else:
        instance = RedisStore(request.getfixturevalue("redis_url"), clock=clock)
    try:
        yield instance
    finally:
        await instance.aclose()


async def test_a_missing_step_is_created(store: Store, clock: FakeClock) -> None:
    await store.ensure_pending([pending(clock)])
    token = issued(clock)
    assert await claim(store, clock, token) == (token, True)


async def test_a_claimed_step_is_never_reopened(store: Store, clock: FakeClock) -> None:
    step = pending(clock, ttl=600)
    await store.put_pending([step])
    first = issued(clock, challenge_id="chl_first", ttl=300)
    await claim(store, clock, first)
    await store.ensure_pending([step])
    with pytest.raises(errors.StepAlreadyUsed):
        await claim(store, clock, issued(clock, challenge_id="chl_replay"))
    # Once the claimed record is gone, the decision's own expiry has passed as well: a step
    # ensured with that expiry is not created again.
    clock.advance(600)
    await store.ensure_pending([step])
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock, challenge_id="chl_late"))


async def test_a_pending_step_is_neither_replaced_nor_extended(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock, ttl=100)])
    await store.ensure_pending([pending(clock, ttl=10_000)])
    clock.advance(100)
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock))


async def test_an_expired_step_is_not_created(store: Store, clock: FakeClock) -> None:
    await store.ensure_pending([pending(clock, ttl=-1), pending(clock, key="other", ttl=0)])
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock))
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock, key="other"))
