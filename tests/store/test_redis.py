"""What only the Redis store does: its record layout and memory, TTLs in the injected clock's
time domain, single use across instances, the key-set guard, all-or-nothing writes, and how it
fails (stopped or hung server, bad URL) without leaking a password or a token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aredis

from hook_service import errors
from hook_service.collaborators import AT_REST_LABEL
from hook_service.hook.stepup import request_origin
from hook_service.keys.backends.keyring import keyring
from hook_service.store.base import KeySetGuard
from hook_service.store.redis import RedisStore
from tests.store.support import RedisServer, claim, issued, pending, redis_store
from tests.support import TEST_KEK, FakeClock

pytestmark = pytest.mark.anyio


async def test_redis_keys_are_short_prefixed_and_hide_user_ids(
    redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock, prefix="t1:")
    try:
        long_id = "usr_alice@example.com" + "x" * 5000
        await store.put_pending([pending(clock, user_id=long_id)])
        keys = cast(list[str], await raw.keys("*"))  # decode_responses=True
        assert keys == [store.record_key(long_id, "kyc_review")]
        # prefix, s:, the user's tag as a hash tag, the pair's hash: 22 characters each
        assert keys[0].startswith("t1:s:{") and keys[0][len("t1:s:{") + 22] == "}"
        assert len(keys[0]) == len("t1:s:{}") + 2 * 22
        assert "alice" not in keys[0] and "kyc" not in keys[0]
    finally:
        await store.aclose()


async def test_redis_pending_step_memory_is_small(
    redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock)
    try:
        origin = request_origin(b"{}", "x" * 342)  # as long as a real one
        step = pending(clock, user_id="usr_01JC6ZQ9F4N8T3V7X2B5K0M1RD", ttl=86400, origin=origin)
        await store.put_pending([step])
        usage = await raw.memory_usage(store.record_key(step.user_id, step.key), samples=0)
        assert usage is not None and usage <= 300  # budget for 100,000 pending steps
    finally:
        await store.aclose()


async def test_redis_ttls_end_at_the_step_and_token_expiries(
    redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock)
    try:
        await store.put_pending([pending(clock, key="a", ttl=600)])
        key_a = store.record_key("usr_1", "a")
        assert 599_000 < await raw.pttl(key_a) <= 600_000
        clock.advance(100)
        await claim(store, clock, issued(clock, key="a", ttl=900))
        assert 599_000 < await raw.pttl(key_a) <= 600_000  # a claim never extends the step
        token_a = store.token_key("usr_1", "a", "chl_1")
        assert 899_000 < await raw.pttl(token_a) <= 900_000  # the token lives until it dies
        assert await raw.hget(key_a, "c") == "chl_1"
    finally:
        await store.aclose()


async def test_redis_ttl_drops_a_record_even_when_now_says_valid(
    redis_url: str, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock)
    try:
        await store.put_pending([pending(clock, ttl=0.2)])
        await asyncio.sleep(0.4)  # real time passes, the fake clock does not
        with pytest.raises(errors.NoPendingStep):  # `now` is before expires_at: Redis TTL did it
            await claim(store, clock, issued(clock))
    finally:
        await store.aclose()


async def test_redis_single_use_holds_across_instances(redis_url: str, clock: FakeClock) -> None:
    stores = [redis_store(redis_url, clock), redis_store(redis_url, clock)]
    try:
        await stores[0].put_pending([pending(clock, key="same"), pending(clock, key="diff")])
        same = [issued(clock, key="same") for _ in range(20)]
        results = await asyncio.gather(
            *(claim(stores[i % 2], clock, t) for i, t in enumerate(same))
        )
        assert sum(fresh for _, fresh, _ in results) == 1
        assert len({t.token for t, _, _ in results}) == 1
        diff = [issued(clock, key="diff", challenge_id=f"chl_{i}") for i in range(20)]
        outcomes = await asyncio.gather(
            *(claim(stores[i % 2], clock, t) for i, t in enumerate(diff)), return_exceptions=True
        )
        assert sum(isinstance(o, tuple) for o in outcomes) == 1
        assert sum(isinstance(o, errors.StepAlreadyUsed) for o in outcomes) == 19
    finally:
        for s in stores:
            await s.aclose()


async def test_redis_claim_checks_the_key_set_version_in_the_same_script(
    redis_url: str, clock: FakeClock, raw: aredis.Redis
) -> None:
    store = redis_store(redis_url, clock)
    try:
        await store.put_pending([pending(clock)])
        await raw.set("hook:keys:version", "7")
        stale = issued(clock)
        # None: the guard did not hold (a result, not a 503 to catch).
        changed = await store.claim(
            "usr_1", "kyc_review", stale, clock(), KeySetGuard("hook:keys:version", 6)
        )
        assert changed is None
        # Nothing was claimed: the step still yields its (first) token under the right version.
        token = issued(clock)
        claimed = await store.claim(
            "usr_1", "kyc_review", token, clock(), KeySetGuard("hook:keys:version", 7)
        )
        assert claimed == (token, True, "transfer:write")
        # A retry is guarded too: the stored token is not re-sent past a key-set change.
        await raw.set("hook:keys:version", "8")
        retried = await store.claim(
            "usr_1", "kyc_review", token, clock(), KeySetGuard("hook:keys:version", 7)
        )
        assert retried is None
        # No version at all is a change, too.
        unversioned = await store.claim(
            "usr_1", "kyc_review", token, clock(), KeySetGuard("hook:other", 8)
        )
        assert unversioned is None
    finally:
        await store.aclose()


async def test_redis_put_pending_is_all_or_nothing(
    redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock)
    try:
        await store.put_pending([pending(clock, key="a")])
        await raw.config_set("maxmemory", 1)  # every write command is refused (OOM)
        try:
            with pytest.raises(errors.StoreUnavailable):
                await store.put_pending([pending(clock, key="a", ttl=5), pending(clock, key="b")])
        finally:
            await raw.config_set("maxmemory", 0)
        # Not even the DEL of "a" ran: the script was refused as a whole.
        clock.advance(10)
        assert (await claim(store, clock, issued(clock, key="a")))[1] is True
        with pytest.raises(errors.NoPendingStep):
            await claim(store, clock, issued(clock, key="b"))
    finally:
        await store.aclose()


async def test_redis_claim_failure_does_not_leak_the_token(
    redis_url: str, raw: aredis.Redis, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = redis_store(redis_url, clock)
    token = issued(clock)
    try:
        await store.put_pending([pending(clock)])
        await raw.config_set("maxmemory", 1)  # the script's HSET is refused
        try:
            with pytest.raises(errors.StoreUnavailable) as info:
                await claim(store, clock, token)
        finally:
            await raw.config_set("maxmemory", 0)
        assert "OOM" in caplog.text or "maxmemory" in caplog.text  # the cause is logged
        assert token.token not in caplog.text and token.token not in str(info.value)
        assert (await claim(store, clock, token))[1] is True  # the failed claim consumed nothing
    finally:
        await store.aclose()


Op = Callable[[], Awaitable[Any]]


def operations(store: RedisStore, clock: FakeClock) -> list[Op]:
    return [
        lambda: store.put_pending([pending(clock, key="during-fault")]),
        lambda: claim(store, clock, issued(clock)),
        store.ping,
    ]


async def assert_unavailable_fast(ops: list[Op], limit: float, secret: str = "") -> None:
    for op in ops:
        started = time.monotonic()
        with pytest.raises(errors.StoreUnavailable) as info, anyio.fail_after(limit + 2):
            await op()  # fail_after: a missing socket timeout fails the test instead of hanging
        assert time.monotonic() - started < limit
        assert info.value.code == "store_unavailable"
        if secret:
            assert secret not in info.value.detail and secret not in str(info.value)


async def test_redis_stopped_server_fails_fast_then_recovers(
    redis_server: RedisServer, redis_url: str, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock)
    try:
        await store.put_pending([pending(clock)])
        await claim(store, clock, issued(clock))  # pooled connection + cached script
        redis_server.stop()
        try:
            await assert_unavailable_fast(operations(store, clock), limit=1.0)
        finally:
            redis_server.start()
        # Same instance: stale pooled connections and the lost script cache are handled.
        await store.ping()
        await store.put_pending([pending(clock, key="after")])
        assert (await claim(store, clock, issued(clock, key="after")))[1] is True
    finally:
        await store.aclose()


async def test_redis_hung_server_times_out(
    redis_server: RedisServer, redis_url: str, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock, timeout=0.2)
    try:
        await store.ping()
        redis_server.pause()
        try:
            await assert_unavailable_fast(operations(store, clock), limit=1.0)
        finally:
            redis_server.resume()
        await store.ping()
    finally:
        await store.aclose()


async def test_redis_password_stays_out_of_errors_logs_and_repr(
    redis_server_factory: Callable[..., RedisServer],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory(password="s3cret-pw")
    good = redis_store(server.url, clock)
    wrong = redis_store(f"redis://:wr0ng-pw@127.0.0.1:{server.port}/0", clock)
    query = redis_store(f"redis://127.0.0.1:{server.port}/0?password=s3cret-pw", clock)
    try:
        await good.put_pending([pending(clock)])
        assert (await claim(good, clock, issued(clock)))[1] is True
        await query.ping()
        await assert_unavailable_fast(operations(wrong, clock), limit=1.0, secret="wr0ng-pw")
        server.stop()
        for store in (good, query):
            await assert_unavailable_fast(operations(store, clock), limit=1.0, secret="s3cret-pw")
        assert f"127.0.0.1:{server.port}" in caplog.text  # operators see where, not the secret
        for store in (good, wrong, query):
            assert "s3cret-pw" not in repr(store) and "wr0ng-pw" not in repr(store)
        assert "s3cret-pw" not in caplog.text and "wr0ng-pw" not in caplog.text
    finally:
        for s in (good, wrong, query):
            await s.aclose()


def test_redis_bad_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(errors.ConfigError, match="invalid redis URL") as info:
        redis_store("http://:s3cret-pw@127.0.0.1:6379/0", FakeClock())
    assert "s3cret-pw" not in str(info.value)


@pytest.mark.anyio
async def test_redis_record_holds_the_scope_and_expiry(
    redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    store = redis_store(redis_url, clock)
    try:
        step = pending(clock, ttl=86_400 + 600)
        await store.put_pending([step])
        record = await raw.hgetall(store.record_key(step.user_id, step.key))
    finally:
        await store.aclose()
    assert record["s"] == "transfer:write"
    assert int(record["e"]) == int((clock() + 86_400 + 600) * 1000)


# --- issue 10: late writes, stale connections, tokens at rest ------------------------------


async def test_redis_write_that_lands_after_its_deadline_is_refused(
    redis_server: RedisServer, redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    # Issue 10, point 4: the caller gave up (and answered on_error); the write it sent runs
    # once the server resumes, and must then leave nothing behind.
    store = redis_store(redis_url, clock, timeout=0.2)
    try:
        await store.put_pending([pending(clock, key="warm")])  # learns the server's clock
        redis_server.pause()
        try:
            with pytest.raises(errors.StoreUnavailable), anyio.fail_after(2):
                await store.put_pending([pending(clock, key="late")], within=0.2)
        finally:
            redis_server.resume()
        await asyncio.sleep(0.3)  # the server reads and runs what was queued while paused
        assert await raw.exists(store.record_key("usr_1", "late")) == 0
        with pytest.raises(errors.NoPendingStep):
            await claim(store, clock, issued(clock, key="late"))
        # The store itself is fine: a write within its budget lands.
        await store.put_pending([pending(clock, key="next")], within=0.2)
        assert (await claim(store, clock, issued(clock, key="next")))[1] is True
    finally:
        await store.aclose()


async def test_redis_deadline_follows_the_servers_clock_not_the_hosts(
    redis_url: str, clock: FakeClock
) -> None:
    # The fake clock is far from real time and Redis's: the deadline must not depend on it.
    store = redis_store(redis_url, clock)
    try:
        for key in ("a", "b"):
            await store.put_pending([pending(clock, key=key)], within=0.5)
            clock.advance(86_400)
            await store.put_pending([pending(clock, key=f"{key}2")], within=0.5)
        assert (await claim(store, clock, issued(clock, key="b2")))[1] is True
    finally:
        await store.aclose()


async def test_redis_restart_does_not_fail_commands_on_stale_connections(
    redis_server: RedisServer, redis_url: str, clock: FakeClock
) -> None:
    # Issue 10, point 6: right after a restart every pooled connection is closed by the
    # server; each operation is sent once more on a fresh connection instead of failing.
    store = redis_store(redis_url, clock)
    try:
        await store.put_pending([pending(clock)])
        await asyncio.gather(*(store.ping() for _ in range(6)))  # six pooled connections
        redis_server.stop()
        redis_server.start()  # same port, empty
        keys = [f"k{i}" for i in range(4)]
        outcomes = await asyncio.gather(
            store.ping(),
            *(store.put_pending([pending(clock, key=key)], within=0.5) for key in keys),
            claim(store, clock, issued(clock)),  # the restart lost it: an answer, not a 503
            return_exceptions=True,
        )
        assert outcomes[:5] == [None] * 5
        assert isinstance(outcomes[5], errors.NoPendingStep)
        results = await asyncio.gather(
            *(claim(store, clock, issued(clock, key=key)) for key in keys)
        )
        assert all(fresh for _, fresh, _ in results)
    finally:
        await store.aclose()


async def _dump(client: aredis.Redis) -> str:
    """Every key and value the server holds, as one text: what a Redis dump would show."""
    parts: list[str] = []
    async for key in client.scan_iter("*"):  # decode_responses=True: every value is a str
        parts.append(key)
        if await client.type(key) == "hash":
            fields = cast(dict[str, str], await client.hgetall(key))
            parts += [name + "=" + value for name, value in fields.items()]
        else:
            parts.append(str(await client.get(key)))
    return "\n".join(parts)


async def test_redis_keeps_tokens_sealed_and_a_retry_still_gets_them(
    redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    # Issue 10, point 8: reading Redis yields no usable token.
    store = redis_store(redis_url, clock)
    try:
        tokens = [issued(clock, user_id=f"usr_{i}", challenge_id=f"chl_{i}") for i in range(3)]
        await store.put_pending([pending(clock, user_id=t.user_id) for t in tokens])
        for token in tokens:
            await claim(store, clock, token)
        dump = await _dump(raw)
        for token in tokens:
            assert token.token not in dump
            assert not any(part in dump for part in token.token.split("."))
        assert "eyJ" not in dump  # no base64url JSON at all: no JWT header or payload
        again = [
            await claim(store, clock, issued(clock, user_id=t.user_id, challenge_id=t.challenge_id))
            for t in tokens
        ]
        assert [(got.token, fresh) for got, fresh, _ in again] == [(t.token, False) for t in tokens]
    finally:
        await store.aclose()


async def test_redis_sealed_token_is_bound_to_its_record_and_opens_after_kek_rotation(
    redis_url: str, raw: aredis.Redis, clock: FakeClock
) -> None:
    old_kek, new_kek = TEST_KEK, bytes(range(1, 33))
    store = redis_store(redis_url, clock)
    rotated = RedisStore(
        redis_url, sealer=keyring([new_kek, old_kek]).cipher(AT_REST_LABEL), clock=clock
    )
    try:
        first, second = issued(clock, user_id="usr_1"), issued(clock, user_id="usr_2")
        await store.put_pending([pending(clock, user_id="usr_1"), pending(clock, user_id="usr_2")])
        await claim(store, clock, first)
        await claim(rotated, clock, second)  # sealed under the new first KEK
        # Both replicas open both: the old KEK is still configured beside the new one.
        assert (await claim(rotated, clock, issued(clock, user_id="usr_1")))[0] == first
        with pytest.raises(errors.StepAlreadyUsed, match="cannot be decrypted"):
            await claim(store, clock, issued(clock, user_id="usr_2"))  # new KEK unknown there
        # A sealed token copied to another challenge's record does not open there.
        sealed = await raw.hget(store.token_key("usr_1", "kyc_review", "chl_1"), "t")
        await raw.hset(store.token_key("usr_2", "kyc_review", "chl_1"), "t", sealed)
        with pytest.raises(errors.StepAlreadyUsed, match="cannot be decrypted"):
            await claim(rotated, clock, issued(clock, user_id="usr_2"))
    finally:
        await store.aclose()
        await rotated.aclose()
