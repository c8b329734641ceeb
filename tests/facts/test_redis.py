"""What only the Redis facts store does: its layout (one hash tag per user, TTLs), what it
never stores (raw IPs, user agents, user ids), erasure by scan, memory per user, failures."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis

from hook_service import errors
from hook_service.facts.base import Proof
from hook_service.facts.logic import DAY, Limits
from hook_service.facts.redis import RedisFactsStore
from tests.facts.support import (
    CHROME_130_WIN,
    CHROME_131_MAC,
    DUBLIN_IP6,
    FIREFOX_WIN,
    KEY,
    LONDON_IP,
    OTHER_IP,
    SAFARI_IOS_17,
    SCOPE,
    Requests,
)
from tests.support import FakeClock, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

USER = "usr_39CfbdV8AsXQwdphtbJe4yH07aF"


@pytest.fixture
async def store(raw: aredis.Redis) -> AsyncIterator[RedisFactsStore]:
    instance = RedisFactsStore(raw, key=KEY)  # a shared client: the store must not close it
    yield instance
    await instance.aclose()
    assert await raw.ping()


async def dump(raw: aredis.Redis) -> dict[str, Any]:
    """Every key and value on the server (a real one, not a mock)."""
    found: dict[str, Any] = {}
    async for key in raw.scan_iter("*"):
        kind = await raw.type(key)
        if kind == "hash":
            found[key] = await raw.hgetall(key)
        elif kind == "list":
            found[key] = await raw.lrange(key, 0, -1)
        else:
            found[key] = await raw.get(key)
    return found


async def history(store: RedisFactsStore, req: Requests, user: str = USER) -> None:
    """Attempts from several devices and IPs, proofs, tokens, a fraud report, a new proof."""
    clock = req.clock
    for ip, ua in (
        (LONDON_IP, CHROME_130_WIN),
        (DUBLIN_IP6, SAFARI_IOS_17),
        (OTHER_IP, FIREFOX_WIN),
    ):
        attempt = req.attempt(ip, ua)
        await store.observe(user, attempt, clock())
        await store.settle(user, req.review(attempt, ("kyc_review",)), clock())
        await store.prove(user, Proof(SCOPE, "kyc_review"), clock())
        clock.advance(60)
    await store.record(user, req.attempt(ua=CHROME_131_MAC, scope="profile:write"), clock())
    await store.report_fraud(user, clock())
    again = req.attempt()
    await store.observe(user, again, clock())
    await store.settle(user, req.review(again), clock())
    await store.prove(user, Proof(SCOPE), clock())


async def test_keys_of_a_user_share_one_hash_tag_and_all_expire(
    store: RedisFactsStore, raw: aredis.Redis, clock: FakeClock
) -> None:
    await history(store, Requests(clock))
    keys = sorted(await dump(raw))
    assert keys == sorted(store.keys(USER))
    tag = KEY.user(USER)
    assert all(f"{{{tag}}}" in key and USER not in key for key in keys)
    for key in keys:
        assert 0 < await raw.pttl(key) <= 30 * DAY * 1000


async def test_no_raw_ip_user_agent_or_user_id_is_ever_stored(
    store: RedisFactsStore, raw: aredis.Redis, clock: FakeClock
) -> None:
    await history(store, Requests(clock))
    text = repr(await dump(raw))
    for secret in (LONDON_IP, "81.2.69", DUBLIN_IP6, "2a00:1450", OTHER_IP, USER):
        assert secret not in text
    for fragment in ("Mozilla", "Chrome", "Windows", "Safari", "iPhone", "Firefox", "WEB"):
        assert fragment not in text


async def test_erase_leaves_no_key_of_the_user(
    store: RedisFactsStore, raw: aredis.Redis, clock: FakeClock
) -> None:
    req = Requests(clock)
    await history(store, req)
    await history(store, req, user="usr_other")
    erased = await store.erase(USER, clock())
    assert (erased["devices"], erased["verified"], erased["flag"]) == (4, 1, 1)
    assert [key async for key in raw.scan_iter(f"*{{{KEY.user(USER)}}}*")] == []
    others = [key async for key in raw.scan_iter(f"*{{{KEY.user('usr_other')}}}*")]
    assert sorted(others) == sorted(store.keys("usr_other"))  # the flag among them


async def test_pruning_deletes_stale_and_capped_fields(raw: aredis.Redis, clock: FakeClock) -> None:
    store = RedisFactsStore(raw, key=KEY, limits=Limits(devices=2, ips=2))
    req = Requests(clock)
    for n in range(4):
        await store.observe(USER, req.attempt(f"81.2.69.{n}", f"agent-{n}"), clock())
    seen = store.keys(USER)[0]
    assert await raw.hlen(seen) == 4  # 2 devices + 2 IPs
    clock.advance(30 * DAY)
    await store.observe(USER, req.attempt(None, None), clock())
    assert await raw.hlen(seen) == 0


async def test_month_of_typical_history_fits_in_two_kilobytes(
    store: RedisFactsStore, raw: aredis.Redis, clock: FakeClock
) -> None:
    """Issue 11 point 6: 3 devices, 10 IPs, 60 attempts in 30 days, a few proofs and tokens,
    measured with MEMORY USAGE over all of the user's keys right after the last attempt."""
    req = Requests(clock)
    rng = random.Random(11)
    devices = [CHROME_130_WIN, SAFARI_IOS_17, CHROME_131_MAC]
    ips = [f"81.2.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(10)]
    scopes = ["transfer:write", "prld:pwd:write", "profile:write"]
    for n in range(60):
        clock.advance(12 * 3600)
        attempt = req.attempt(ips[n % 10], devices[n % 3], scope=scopes[n % 3])
        await store.observe(USER, attempt, clock())
        if n % 4 == 0:  # a review that the user passes, one in four with KYC
            steps = ("kyc_review",) if n % 16 == 0 else ()
            await store.settle(USER, req.review(attempt, steps), clock())
            await store.prove(USER, Proof(attempt.scope, steps[0] if steps else None), clock())
    held = await store.show(USER, clock())
    assert (len(held["devices"]), len(held["ips"])) == (3, 10)
    usage = 0
    for key in store.keys(USER):
        usage += await raw.memory_usage(key, samples=0) or 0
    print(f"facts memory for one user with a month of history: {usage} bytes")
    assert usage <= 2048


async def test_a_client_without_decoded_responses_works_too(
    redis_url: str, clock: FakeClock
) -> None:
    client = aredis.Redis.from_url(redis_url)  # bytes replies
    try:
        store = RedisFactsStore(client, key=KEY)
        req = Requests(clock)
        attempt = req.attempt()
        await store.observe(USER, attempt, clock())
        await store.settle(USER, req.review(attempt), clock())
        assert await store.prove(USER, Proof(SCOPE), clock())
        assert (await store.observe(USER, req.attempt(), clock())).device_known
    finally:
        await client.aclose()


async def test_an_unreachable_server_is_store_unavailable_without_secrets(clock: FakeClock) -> None:
    store = RedisFactsStore(f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0", key=KEY, timeout=0.2)
    try:
        req = Requests(clock)
        calls = [
            lambda: store.observe(USER, req.attempt(), clock()),
            lambda: store.prove(USER, Proof(SCOPE), clock()),
            lambda: store.report_fraud(USER, clock()),
            lambda: store.erase(USER, clock()),
            store.ping,
        ]
        for call in calls:
            with pytest.raises(errors.StoreUnavailable) as caught:
                await call()
            assert caught.value.status_code == 503
            assert "s3cret" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    finally:
        await store.aclose()
    assert "s3cret" not in repr(store) and "s3cret" not in repr(KEY)
