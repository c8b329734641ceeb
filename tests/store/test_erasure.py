"""What a store holds for one user and erasing it (issue 11 point 4), against both stores; the
Redis store is then scanned key by key for anything of that user."""

from __future__ import annotations

from typing import cast

import pytest
import redis.asyncio as aredis

from hook_service import errors
from hook_service.store.base import Store, UserRecords, user_tag
from hook_service.store.memory import MemoryStore
from hook_service.store.observed import ObservedStore
from tests.store.support import claim, issued, pending, redis_store
from tests.support import FakeClock, free_port

pytestmark = pytest.mark.anyio

# Redis SCAN globs: an id made of them must match only itself.
GLOBBY = ["usr_*", "usr_?", "usr_[ab]", "usr_\\*", "*"]


async def test_user_records_count_pending_steps_and_issued_tokens(
    store: Store, clock: FakeClock
) -> None:
    assert await store.user_records("usr_1", clock()) == UserRecords(0, 0)
    await store.put_pending(
        [pending(clock, key="kyc_review"), pending(clock, key="manual", ttl=60)]
    )
    await store.put_pending([pending(clock, user_id="usr_2")])
    await claim(store, clock, issued(clock, key="kyc_review", ttl=900))
    assert await store.user_records("usr_1", clock()) == UserRecords(1, 1)
    clock.advance(60)  # the unclaimed step expires; the issued token's record lives on
    assert await store.user_records("usr_1", clock()) == UserRecords(0, 1)
    clock.advance(900)
    assert await store.user_records("usr_1", clock()) == UserRecords(0, 0)
    assert await store.user_records("usr_2", clock()) == UserRecords(0, 0)


async def test_erase_user_deletes_that_user_only(store: Store, clock: FakeClock) -> None:
    await store.put_pending([pending(clock, key="kyc_review"), pending(clock, key="manual")])
    await claim(store, clock, issued(clock, key="kyc_review"))
    await store.put_pending([pending(clock, user_id="usr_2")])
    # Two pending steps (one consumed) and the token kept for its challenge's retries.
    assert await store.erase_user("usr_1") == 3
    assert await store.user_records("usr_1", clock()) == UserRecords(0, 0)
    with pytest.raises(errors.NoPendingStep):  # the erased step can no longer yield a token
        await claim(store, clock, issued(clock, key="manual"))
    with pytest.raises(errors.NoPendingStep):  # nor the erased token be sent again
        await claim(store, clock, issued(clock, key="kyc_review"))
    assert await store.erase_user("usr_1") == 0  # idempotent
    assert await store.user_records("usr_2", clock()) == UserRecords(1, 0)
    assert (await claim(store, clock, issued(clock, user_id="usr_2"))).fresh is True


@pytest.mark.parametrize("victim", GLOBBY)
async def test_user_ids_with_glob_characters_erase_only_themselves(
    store: Store, clock: FakeClock, victim: str
) -> None:
    users = [*GLOBBY, "usr_a", "usr_b", "usr_x", "usr_\\a"]
    for user in users:  # one decision's steps are one user's (one slot on a cluster)
        await store.put_pending([pending(clock, user_id=user)])
    assert await store.erase_user(victim) == 1
    for user in users:
        left = await store.user_records(user, clock())
        assert left == UserRecords(0 if user == victim else 1, 0), user


async def test_redis_erasure_leaves_no_key_of_the_user(
    redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock)
    try:
        user = "usr_erase_me"
        # More records than one SCAN batch holds, among other users' records.
        await store.put_pending([pending(clock, user_id=user, key=f"k{i}") for i in range(30)])
        await store.put_pending([pending(clock, user_id=f"usr_{i}") for i in range(1500)])
        await claim(store, clock, issued(clock, user_id=user, key="k0"))
        tag = user_tag(user)
        before = cast(list[str], [k async for k in raw.scan_iter(count=500)])
        # 30 pending steps (s:{tag}...) and the claimed token (t:{tag}...).
        assert sum(tag in k for k in before) == 31
        assert sum(k.startswith(f"hook:t:{{{tag}}}") for k in before) == 1
        assert await store.erase_user(user) == 31
        after = cast(list[str], [k async for k in raw.scan_iter(count=500)])
        assert not [k for k in after if tag in k or user in k]
        assert len(after) == 1500
    finally:
        await store.aclose()


async def test_redis_erasure_reports_an_unreachable_server_and_is_counted(
    clock: FakeClock,
) -> None:
    failed: list[str] = []
    dead = redis_store(f"redis://127.0.0.1:{free_port()}/0", clock, timeout=0.2)
    store = ObservedStore(dead, on_error=failed.append)  # as the service wraps every store
    try:
        with pytest.raises(errors.StoreUnavailable):
            await store.erase_user("usr_1")
        with pytest.raises(errors.StoreUnavailable):
            await store.user_records("usr_1", clock())
    finally:
        await store.aclose()
    assert failed == ["erase_user", "user_records"]


async def test_the_observed_store_passes_the_answers_through(clock: FakeClock) -> None:
    failed: list[str] = []
    store = ObservedStore(MemoryStore(clock), on_error=failed.append)
    await store.put_pending([pending(clock), pending(clock, key="manual")])
    await claim(store, clock, issued(clock))
    assert await store.user_records("usr_1", clock()) == UserRecords(1, 1)
    assert await store.erase_user("usr_1") == 3
    assert failed == []


async def test_redis_erasure_takes_the_prefix_literally(redis_url: str, clock: FakeClock) -> None:
    globbed, other = redis_store(redis_url, clock, prefix="t*:"), None
    try:
        other = redis_store(redis_url, clock, prefix="tx:")
        for instance in (globbed, other):
            await instance.put_pending([pending(clock)])
        assert await globbed.erase_user("usr_1") == 1
        assert await other.user_records("usr_1", clock()) == UserRecords(1, 0)
    finally:
        await globbed.aclose()
        if other is not None:
            await other.aclose()
