"""Data loss in the key store's Redis, on a real private redis-server: a running replica
restores its copy of the key set (sealed and tagged as it was, version kept, ``restored``
events), races between replicas restoring, a replica starting on an emptied Redis, an older
set in Redis refused with its cause logged once, and the ``maxmemory-policy`` check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hook_service import errors, logs
from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends.keyring import keyring
from hook_service.keys.backends.redis import RedisKeyStore
from hook_service.keys.backends.redis_scripts import KeySetKeys
from tests.support import TEST_KEK, FakeClock, KeyFactory, is_cluster, key_supply, kid_of, raw_redis

pytestmark = pytest.mark.anyio

SET, VERSION, EVENTS = "set", "version", "events"  # of the key set's names (KeySetKeys.name)
WITHIN = 5.0  # guards a hang; a running replica restores within one poll (0.5 s)

Make = Callable[..., RedisKeyStore]


@pytest.fixture
def redis_url(redis_or_cluster_url: str) -> str:
    """Every test here on one Redis and on the three-master cluster (its names tagged)."""
    return redis_or_cluster_url


def names(url: str) -> KeySetKeys:
    return KeySetKeys(cluster=is_cluster(url))


single = pytest.mark.parametrize("redis_or_cluster_url", ["single"], indirect=True)
"""For the tests that stop the one server."""


@pytest.fixture
async def make(clock: FakeClock) -> AsyncIterator[Make]:
    """``make(url, supply, replica=…, poll=…)``: a store, closed after the test."""
    opened: list[RedisKeyStore] = []

    def build(
        url: str,
        supply: KeyFactory | None = None,
        *,
        replica: str = "r",
        poll: float = 0.5,
        peer_wait: float = 3.0,
    ) -> RedisKeyStore:
        store = RedisKeyStore(
            url,
            keyring([TEST_KEK]),
            clock=clock,
            replica=replica,
            new_key=supply or key_supply([]),
            poll_interval=poll,
            peer_wait=peer_wait,
            cluster=is_cluster(url),
        )
        opened.append(store)
        return store

    yield build
    for store in opened:
        await store.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def raw(url: str, *suffixes: str) -> list[Any]:
    client = raw_redis(url)
    try:
        return [client.get(names(url).name(suffix)) for suffix in suffixes]
    finally:
        client.close()


def flush(url: str) -> None:
    client = raw_redis(url)  # a cluster client flushes every master
    try:
        client.flushall()
    finally:
        client.close()


def followers(url: str) -> int:
    client, channel = raw_redis(url), names(url).channel
    # On a cluster the replicas hold shard subscriptions, on the channel's node.
    count = client.pubsub_shardnumsub if is_cluster(url) else client.pubsub_numsub
    try:
        return int(dict(count(channel))[channel.encode()])
    finally:
        client.close()


def stream(url: str) -> list[dict[bytes, bytes]]:
    client = raw_redis(url)
    try:
        entries: Any = client.xrange(names(url).stream)
        return [fields for _, fields in entries]
    finally:
        client.close()


def restored_events(url: str) -> list[dict[bytes, bytes]]:
    return [f for f in stream(url) if f[b"event"] == b"restored"]


async def eventually(check: Callable[[], bool], within: float = WITHIN) -> None:
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.01)


async def rotate(store: RedisKeyStore, clock: FakeClock) -> None:
    await KeyAdmin(store, clock=clock, token_ttl=300, replica=store.replica).rotate("t", force=True)


async def test_a_running_replica_restores_the_set_as_it_was(
    make: Make, redis_url: str, clock: FakeClock
) -> None:
    a = make(redis_url, key_supply([0, 1, 2]), replica="a")
    b = make(redis_url, replica="b")
    a.load_or_create()
    await rotate(a, clock)
    b.load()
    await a.start()
    await b.start()
    before = raw(redis_url, SET, VERSION)
    served = a.current()
    flush(redis_url)  # data loss: what a restart without persistence leaves
    await eventually(lambda: raw(redis_url, VERSION) == [b"2"])
    await eventually(lambda: a.stale is None and b.stale is None)
    # The very document that was there: sealed and tagged as it was, version kept.
    assert raw(redis_url, SET, VERSION) == before
    assert a.signing_set() == b.signing_set() == served
    events = restored_events(redis_url)
    # One replica restored (one event per key, all from it), as version 2.
    assert sorted(e[b"kid"].decode() for e in events) == sorted(k.kid for k in served.keys)
    assert len({e[b"replica"] for e in events}) == 1 and {e[b"version"] for e in events} == {b"2"}


async def test_a_change_on_a_redis_that_lost_the_set_builds_on_the_restored_one(
    make: Make, redis_url: str, clock: FakeClock
) -> None:
    a = make(redis_url, key_supply([0, 1, 2]), replica="a")
    a.load_or_create()
    flush(redis_url)
    await rotate(a, clock)  # no watcher: the admin change itself finds the set missing
    assert a.current().version == 2 and a.current().active.kid == kid_of(1)
    kinds = [e[b"event"] for e in stream(redis_url)]
    assert kinds[:2] == [b"restored", b"restored"] and b"activated" in kinds[2:]


async def test_two_replicas_restoring_at_once_write_it_once(
    make: Make, redis_url: str, clock: FakeClock
) -> None:
    a = make(redis_url, key_supply([0, 1]), replica="a")
    b = make(redis_url, replica="b")
    a.load_or_create()
    b.load()
    for _ in range(3):
        flush(redis_url)
        # Neither follows (no watcher): both find Redis empty when they look, at once.
        first, second = await asyncio.gather(a.refresh(), b.refresh())
        assert first == second == a.current() and a.stale is None and b.stale is None
        assert len(restored_events(redis_url)) == 2  # one replica's events, one per key


async def test_the_newest_copy_wins_whoever_restores_first(
    make: Make, redis_url: str, clock: FakeClock
) -> None:
    a = make(redis_url, key_supply([0, 1, 2]), replica="a")
    behind = make(redis_url, replica="behind")
    late = make(redis_url, replica="late")
    a.load_or_create()
    behind.load()  # version 1; they follow nothing, so they never see the rotation
    late.load()
    await rotate(a, clock)
    flush(redis_url)
    assert (await behind.refresh()).version == 1  # restores its older copy first ...
    assert raw(redis_url, VERSION) == [b"1"]
    assert (await a.refresh()).version == 2  # ... which a, holding version 2, replaces
    assert raw(redis_url, VERSION) == [b"2"]
    assert (await behind.refresh()) == a.current()  # and the one behind follows
    # Never back: a copy older than the one restored stays out of Redis.
    assert (await late.refresh()) == a.current()
    assert raw(redis_url, VERSION) == [b"2"]
    assert sorted(e[b"replica"] for e in restored_events(redis_url)) == [b"a"] * 3 + [b"behind"] * 2


async def test_a_replica_starting_on_an_emptied_redis_takes_the_running_replicas_set(
    make: Make, redis_url: str, clock: FakeClock
) -> None:
    # a follows the set but polls slowly: it restores up to 1.5 s after the loss.
    a = make(redis_url, key_supply([0, 1, 2]), replica="a", poll=1.5)
    a.load_or_create()
    await rotate(a, clock)
    await a.start()
    await eventually(lambda: followers(redis_url) == 1)
    flush(redis_url)  # FLUSHALL publishes nothing, and a's subscription stays
    started = make(redis_url, replica="new")  # its supply is empty: it must create nothing
    # Another process in production; a thread here, so that a's watcher runs meanwhile.
    assert await asyncio.to_thread(started.load_or_create) == a.current()
    assert started.current().version == 2 and started.stale is None


async def test_followers_that_put_nothing_back_within_the_wait_stop_the_start(
    make: Make, redis_url: str
) -> None:
    # Something follows the key set's channel but puts no set back (a replica wedged, or
    # sealing under other KEKs): starting must not make a set of its own over theirs.
    follower: Any = raw_redis(redis_url).pubsub()  # type: ignore[no-untyped-call]
    if is_cluster(redis_url):
        follower.ssubscribe(names(redis_url).channel)
    else:
        follower.subscribe(names(redis_url).channel)
    try:
        with pytest.raises(errors.KeyStoreError) as caught:
            make(redis_url, key_supply([0, 1]), peer_wait=0.3).load_or_create()
    finally:
        follower.close()
    assert "1 running replica(s)" in str(caught.value) and "not creating" in str(caught.value)
    assert raw(redis_url, SET, VERSION) == [None, None]


async def test_a_set_created_with_no_replica_following_gives_way_to_a_restored_one(
    make: Make, redis_url: str, clock: FakeClock
) -> None:
    # a holds the deployment's set but is not subscribed yet (its watcher reconnects): a
    # replica starting then sees no follower and creates a set; a's copy must still win.
    a = make(redis_url, key_supply([0, 1]), replica="a")
    a.load_or_create()
    flush(redis_url)
    new = make(redis_url, key_supply([2, 3]), replica="new")
    created = new.load_or_create()
    assert created.version == a.current().version == 1 and created.active.kid == kid_of(2)
    await new.start()
    assert (await a.refresh()).active.kid == kid_of(0)  # same version: the created set yields
    await eventually(lambda: new.current() == a.current())
    assert new.signing_set().active.kid == kid_of(0)


async def test_an_older_set_in_redis_is_refused_and_the_cause_logged_once(
    make: Make, redis_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    a = make(redis_url, key_supply([0, 1, 2, 3]), replica="a")
    a.load_or_create()
    backup = raw(redis_url, SET, VERSION)
    await rotate(a, clock)
    await rotate(a, clock)
    client, at = raw_redis(redis_url), names(redis_url)
    client.mset({at.set: backup[0], at.version: backup[1]})  # an old backup restored over it
    client.close()
    caplog.set_level(logging.WARNING, logs.KEYSTORE)
    for _ in range(5):  # the first look may be a write of ours landing: the second is not
        with contextlib.suppress(errors.KeyStoreUnavailable):
            await a.refresh()
    with pytest.raises(errors.KeyStoreUnavailable):
        a.signing_set()
    assert a.current().version == 3 and raw(redis_url, VERSION) == [b"1"]  # not overwritten
    causes = [r for r in caplog.records if "older than" in r.getMessage()]
    assert len(causes) == 1 and causes[0].levelno == logging.ERROR
    message = causes[0].getMessage()
    assert "version 1" in message and "version 3" in message and "not going back" in message


@single
async def test_after_an_outage_the_real_cause_is_logged_too(
    make: Make,
    redis_url: str,
    redis_server: Any,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Redis goes away, then comes back holding an older set (restored from a backup): the
    # outage is logged, and so is the reason signing stays stopped afterwards.
    a = make(redis_url, key_supply([0, 1, 2]), replica="a")
    a.load_or_create()
    backup = raw(redis_url, SET, VERSION)
    await rotate(a, clock)
    caplog.set_level(logging.WARNING, logs.KEYSTORE)
    redis_server.stop()
    for _ in range(2):
        with pytest.raises(errors.KeyStoreUnavailable):
            await a.refresh()
    redis_server.start()
    client, at = raw_redis(redis_url), names(redis_url)
    client.mset({at.set: backup[0], at.version: backup[1]})
    client.close()
    for _ in range(4):
        with contextlib.suppress(errors.KeyStoreUnavailable):
            await a.refresh()
    assert a.stale is not None and "older than" in a.stale
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 2, logged
    assert "ConnectionError" in logged[0] and "version 1, older than version 2" in logged[1]


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-random", "allkeys-lfu"])
async def test_a_redis_that_may_evict_the_key_set_is_refused_at_start(
    make: Make, redis_server_factory: Any, policy: str
) -> None:
    server = redis_server_factory("--maxmemory-policy", policy)
    with pytest.raises(errors.KeyStoreError) as caught:
        make(server.url, key_supply([0, 1])).load_or_create()
    assert policy in str(caught.value) and "noeviction" in str(caught.value)
    assert raw(server.url, SET, VERSION) == [None, None]  # nothing written


@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru"])
async def test_a_redis_that_cannot_evict_the_key_set_is_accepted(
    make: Make, redis_server_factory: Any, policy: str
) -> None:
    server = redis_server_factory("--maxmemory-policy", policy)
    assert make(server.url, key_supply([0, 1])).load_or_create().version == 1


async def test_without_config_get_the_policy_is_a_warning(
    make: Make, redis_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Managed Redis often refuses CONFIG: the service starts, and says what to check.
    server = redis_server_factory("--rename-command", "CONFIG", "")
    caplog.set_level(logging.WARNING, logs.KEYSTORE)
    assert make(server.url, key_supply([0, 1])).load_or_create().version == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("maxmemory-policy" in w and "noeviction" in w for w in warnings), warnings
