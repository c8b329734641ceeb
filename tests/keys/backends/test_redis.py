"""RedisKeyStore on a real private redis-server, and on a Sentinel group (changes waiting for
its replica): encryption at rest, compare-and-set writes, fencing, propagation to other
replicas (pub/sub and version poll), outages, audit stream."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from hook_service import errors
from hook_service._redis_target import RedisTarget
from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends import sealed as keydoc
from hook_service.keys.backends.keyring import fingerprint, keyring
from hook_service.keys.backends.redis import RedisKeyStore
from hook_service.keys.backends.redis_scripts import KeySetKeys
from hook_service.keys.lifecycle import KeySet
from tests.sentinels import Deployment
from tests.support import (
    FakeClock,
    KeyFactory,
    hook_keys,
    is_cluster,
    key_supply,
    kid_of,
    private_strings,
    raw_redis,
)

pytestmark = pytest.mark.anyio

KEK_A = bytes(range(32))
KEK_B = bytes(range(100, 132))
TIMEOUT = 5.0  # guards a hang; propagation itself must take under 1 s


def names(url: str) -> KeySetKeys:
    """The key set's Redis names on ``url`` (hash-tagged on a cluster)."""
    return KeySetKeys(cluster=is_cluster(url))


def make_store(
    url: RedisTarget | str,
    clock: FakeClock,
    new_key: KeyFactory | None = None,
    *,
    keks: tuple[bytes, ...] = (KEK_A,),
    replica: str = "r1",
) -> RedisKeyStore:
    store = RedisKeyStore(
        url,
        keyring(keks),
        clock=clock,
        replica=replica,
        new_key=new_key or key_supply(),
        cluster=isinstance(url, str) and is_cluster(url),
    )
    _opened.append(store)
    return store


_opened: list[RedisKeyStore] = []


@pytest.fixture(autouse=True)
async def close_stores() -> AsyncIterator[None]:
    """Every store a test made is closed after it, passed or failed: no leaked connection."""
    yield
    while _opened:
        await _opened.pop().aclose()


def stored_set(url: str) -> Any:
    """The key set document as Redis holds it at ``url`` (its names tagged on a cluster)."""
    client = raw_redis(url)
    try:
        return json.loads(client.get(names(url).set) or b"")
    finally:
        client.close()


def stored_bytes(url: str) -> bytes:
    client = raw_redis(url)
    try:
        out = b""
        for name in client.keys("*"):
            kind: Any = client.type(name)
            if kind == b"string":
                value: Any = client.get(name)
                out += value or b""
            elif kind == b"stream":
                out += repr(client.xrange(name)).encode()
        return out
    finally:
        client.close()


async def eventually(check: Callable[[], bool], within: float = 1.0) -> None:
    """Wait until ``check()`` holds; fail after ``within`` seconds (the propagation bound)."""
    with anyio.fail_after(within):
        while not check():
            await anyio.sleep(0.01)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def replicas(
    redis_deployment: Deployment, clock: FakeClock
) -> AsyncIterator[tuple[RedisKeyStore, RedisKeyStore]]:
    supply = key_supply()
    a = make_store(redis_deployment.target, clock, supply, replica="a")
    b = make_store(redis_deployment.target, clock, supply, replica="b")
    a.load_or_create()
    b.load_or_create()
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()
    supply.check()


def admin(store: RedisKeyStore, clock: FakeClock) -> KeyAdmin:
    return KeyAdmin(store, clock=clock, token_ttl=300, replica=store.replica)


async def test_first_start_creates_one_set_that_every_replica_loads(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    first = make_store(redis_deployment.target, clock, key_supply([0, 1])).load_or_create()
    second = make_store(
        redis_deployment.target, clock, key_supply([])
    ).load_or_create()  # generates nothing
    assert second == first and (first.active.kid, first.next.kid) == (kid_of(0), kid_of(1))
    assert second.active.private_key.private_numbers() == hook_keys()[0].private_numbers()


async def test_no_private_key_material_is_stored_in_clear(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    ks = make_store(redis_deployment.target, clock, key_supply([0, 1, 2])).load_or_create()
    await admin(make_store(redis_deployment.target, clock, key_supply([2])), clock).rotate(
        "t", force=True
    )
    raw = stored_bytes(redis_deployment.url)
    assert kid_of(0).encode() in raw  # the scan does see the key set
    assert b"-----BEGIN" not in raw and b"PRIVATE KEY" not in raw
    for index in (0, 1, 2):
        numbers = hook_keys()[index].private_numbers()
        assert str(numbers.d).encode()[:40] not in raw
        assert format(numbers.d, "x").encode()[:40] not in raw
        for secret in private_strings(hook_keys()[index]):
            assert secret.encode() not in raw
    document = stored_set(redis_deployment.url)
    assert {k["private_key"]["kek"] for k in document["keys"]} == {fingerprint(KEK_A)}
    assert ks.version == 1 and document["version"] == 2


async def test_a_wrong_kek_is_refused_at_start_with_a_clear_message(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    make_store(redis_deployment.target, clock, key_supply([0, 1])).load_or_create()
    before = stored_bytes(redis_deployment.url)
    with pytest.raises(errors.KeyStoreError) as caught:
        make_store(redis_deployment.target, clock, key_supply([]), keks=(KEK_B,)).load_or_create()
    message = str(caught.value)
    assert "HOOK_KEY_ENCRYPTION_KEYS cannot decrypt" in message
    assert fingerprint(KEK_A) in message and fingerprint(KEK_B) in message
    assert KEK_A.hex() not in message and KEK_B.hex() not in message
    assert stored_bytes(redis_deployment.url) == before  # nothing written


async def test_a_ciphertext_moved_to_another_kid_fails(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    make_store(redis_deployment.target, clock, key_supply([0, 1])).load_or_create()
    client, at = raw_redis(redis_deployment.url), names(redis_deployment.url)
    document = json.loads(client.get(at.set) or b"")
    first, second = document["keys"]
    first["private_key"], second["private_key"] = second["private_key"], first["private_key"]
    client.set(at.set, json.dumps(document))
    # The document's tag catches it first (keycrypt's own test covers the kid as GCM's AAD).
    with pytest.raises(errors.KeyStoreError, match="altered outside the service"):
        make_store(redis_deployment.target, clock, key_supply([])).load_or_create()


async def test_no_key_set_and_no_redis_are_start_up_errors(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    with pytest.raises(errors.KeyStoreError, match="no key set in Redis"):
        make_store(redis_deployment.target, clock).load()
    with pytest.raises(errors.KeyStoreError, match="HOOK_REDIS_URL: cannot load"):
        make_store("redis://127.0.0.1:1/0", clock).load()


async def test_a_rotation_reaches_the_other_replica_within_a_second(
    replicas: tuple[RedisKeyStore, RedisKeyStore], clock: FakeClock
) -> None:
    a, b = replicas
    clock.advance(660)
    rotated, warning = await admin(a, clock).rotate("admin token #1")
    assert warning is None and a.current() == rotated  # the writer applies it at once
    await eventually(lambda: b.current().version == rotated.version)
    assert b.current() == rotated and b.signing_set().active.kid == rotated.active.kid
    assert b.current().jwks(clock()) == a.current().jwks(clock())


async def test_a_missed_message_is_caught_by_the_version_poll(
    replicas: tuple[RedisKeyStore, RedisKeyStore], clock: FakeClock, redis_deployment: Deployment
) -> None:
    a, b = replicas
    # A writer that never publishes: the same document a rotation would write, set by hand.
    writer = make_store(redis_deployment.target, clock, key_supply([]), replica="silent")
    ks = writer.load()
    changed = KeySet((ks.active, dataclasses.replace(ks.next, created_at=1)), 7)
    client, at = raw_redis(redis_deployment.url), names(redis_deployment.url)
    body = keydoc.encode(changed, keyring([KEK_A]), writer.prefix)
    client.mset({at.set: body, at.version: 7})  # atomic: one slot on a cluster
    client.close()
    assert writer.load().version == 7
    await eventually(lambda: b.current().version == 7 and a.current().version == 7)
    assert b.current().next.created_at == 1


async def test_concurrent_changes_on_two_replicas_both_land(
    replicas: tuple[RedisKeyStore, RedisKeyStore], clock: FakeClock
) -> None:
    a, b = replicas
    results: list[KeySet] = []

    async def rotate(store: RedisKeyStore) -> None:
        results.append((await admin(store, clock).rotate("t", force=True))[0])

    async with anyio.create_task_group() as tg:
        tg.start_soon(rotate, a)
        tg.start_soon(rotate, b)
    # Compare-and-set: whoever lost re-read and rotated on top, so both rotations landed.
    assert sorted(r.version for r in results) == [2, 3]
    final = a.load()
    assert final.version == 3
    assert sorted(k.state for k in final.keys) == ["active", "next", "retired", "retired"]


def expire_now(url: str, key: str) -> None:
    """The lock's TTL runs out now: what a holder stalled past it (a GC pause) wakes up to."""
    client = raw_redis(url)
    try:
        assert client.pexpire(key, 1)
        while client.exists(key):
            time.sleep(0.005)
    finally:
        client.close()


async def test_a_stalled_lock_holder_cannot_write(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    a = make_store(redis_deployment.target, clock, key_supply([0, 1, 3]), replica="a")
    b = make_store(redis_deployment.target, clock, key_supply([2]), replica="b")
    try:
        a.load_or_create()
        b.load()
        stalled = await a.acquire_lock(10)
        assert stalled is not None
        assert await b.acquire_lock(10) is None  # held
        expire_now(redis_deployment.url, names(redis_deployment.url).lock)  # a stalls past it
        fresh = await b.acquire_lock(10)
        assert fresh is not None and fresh > stalled
        clock.advance(86400)
        rotated = await admin(b, clock).rotate_if_due(3600, fence=fresh)
        assert rotated is not None and rotated.version == 2
        clock.advance(86400)
        before = stored_bytes(redis_deployment.url)
        with pytest.raises(errors.LockLost):
            await admin(a, clock).rotate_if_due(3600, fence=stalled)
        assert stored_bytes(redis_deployment.url) == before
        await a.release_lock(stalled)  # not a's any more: must not free b's lock
        assert await a.acquire_lock(10) is None
        await b.release_lock(fresh)
        assert await a.acquire_lock(10) is not None
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_keeps_the_jwks_but_stops_signing(
    redis_url: str, redis_server: object, clock: FakeClock
) -> None:
    a = make_store(redis_url, clock, key_supply(), replica="a")  # one server: it is paused
    a.load_or_create()
    await a.start()
    server = redis_server
    served = a.current()
    server.pause()  # type: ignore[attr-defined]
    try:
        await eventually(lambda: a.stale is not None, within=TIMEOUT)
        assert a.current() == served
        with pytest.raises(errors.KeyStoreUnavailable):
            a.signing_set()
    finally:
        server.resume()  # type: ignore[attr-defined]
    await eventually(lambda: a.stale is None, within=TIMEOUT)
    assert a.signing_set() == served


async def test_events_are_streamed_and_paged(
    replicas: tuple[RedisKeyStore, RedisKeyStore], clock: FakeClock
) -> None:
    a, b = replicas
    await admin(a, clock).rotate("admin token #1", force=True)
    everything, cursor = await b.events(None, 100)
    assert cursor is None
    assert [(e.event, e.actor, e.replica) for e in everything][:3] == [
        ("created", "startup", "a"),
        ("created", "startup", "a"),
        ("activated", "startup", "a"),
    ]
    rotation = [(e.event, e.kid) for e in everything if e.actor == "admin token #1"]
    assert rotation == [("created", kid_of(2)), ("activated", kid_of(1)), ("retired", kid_of(0))]
    assert all(e.id for e in everything)
    page, cursor = await b.events(None, 2)
    assert [e.id for e in page] == [e.id for e in everything[:2]] and cursor == page[-1].id
    rest, end = await b.events(cursor, 100)
    assert [e.id for e in page + rest] == [e.id for e in everything] and end is None
    with pytest.raises(errors.InvalidRequest):
        await b.events("not-an-id", 10)


async def test_rewrap_moves_every_key_to_the_first_kek(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    make_store(redis_deployment.target, clock, key_supply([0, 1])).load_or_create()
    both = make_store(redis_deployment.target, clock, key_supply([]), keks=(KEK_B, KEK_A))
    both.load()
    events = await admin(both, clock).rewrap("cli")
    assert sorted((e.event, e.kid) for e in events) == sorted(
        [("rewrapped", kid_of(0)), ("rewrapped", kid_of(1))]
    )
    document = stored_set(redis_deployment.url)
    assert {k["private_key"]["kek"] for k in document["keys"]} == {fingerprint(KEK_B)}
    only_new = make_store(redis_deployment.target, clock, key_supply([]), keks=(KEK_B,)).load()
    assert only_new.active.kid == kid_of(0)
    await both.aclose()


async def test_refresh_applies_a_revocation_before_any_message(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    # b follows nothing (no watcher started): only refresh() can tell it about the revoke.
    a = make_store(redis_deployment.target, clock, key_supply([0, 1, 2]), replica="a")
    b = make_store(redis_deployment.target, clock, key_supply([]), replica="b")
    a.load_or_create()
    b.load()
    await admin(a, clock).revoke(kid_of(0), "admin token #1")
    assert b.current().active.kid == kid_of(0)  # not seen yet
    fresh = await b.refresh()
    assert fresh.get(kid_of(0)) is None and fresh.active.kid == kid_of(1)
    assert b.signing_set().active.kid == kid_of(1)
    await a.aclose()
    await b.aclose()


async def test_a_forced_rotation_on_a_set_changed_elsewhere_still_warns(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    # b follows nothing: its copy still shows the old next key, published long ago.
    a = make_store(redis_deployment.target, clock, key_supply([0, 1, 2]), replica="a")
    b = make_store(redis_deployment.target, clock, key_supply([3]), replica="b")
    a.load_or_create()
    b.load()
    clock.advance(660)
    await admin(a, clock).rotate("admin token #1")  # key 2: the new next, published just now
    rotated, warning = await admin(b, clock).rotate("admin token #2", force=True)
    assert rotated.active.kid == kid_of(2)  # a key published 0 s ago signs ...
    assert warning is not None and "forced rotation" in warning  # ... and the caller is told


async def rotate_twice_then_restore(
    a: RedisKeyStore, redis_deployment: Deployment, clock: FakeClock
) -> None:
    """Two rotations through ``a``, then Redis restored to the set before them (an old
    backup); ``a`` has seen the older version twice, so it is stale."""
    backup, at = raw_redis(redis_deployment.url), names(redis_deployment.url)
    restore = (backup.get(at.set), backup.get(at.version))
    await admin(a, clock).rotate("t", force=True)
    await admin(a, clock).rotate("t", force=True)
    backup.mset({at.set: restore[0] or b"", at.version: restore[1] or b""})
    backup.close()
    for _ in range(2):  # the second look at an older version is data loss
        with contextlib.suppress(errors.KeyStoreUnavailable):
            await a.refresh()
    assert a.stale is not None


async def test_a_write_onto_an_older_restored_set_does_not_end_the_stale_state(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    a = make_store(redis_deployment.target, clock, key_supply([0, 1, 2, 3, 4]), replica="a")
    old = a.load_or_create()
    await rotate_twice_then_restore(a, redis_deployment, clock)
    # An admin change through this replica lands on the restored (older) set in Redis ...
    written = await admin(a, clock).revoke(old.next.kid, "admin token #1")
    assert written.version == 2 and a.current().version == 3
    # ... which still is not the set this replica serves: it must not start signing again.
    assert a.stale is not None
    with pytest.raises(errors.KeyStoreUnavailable):
        a.signing_set()


async def test_after_a_restore_a_set_at_the_version_served_is_read_not_assumed(
    redis_deployment: Deployment, clock: FakeClock
) -> None:
    # Redis is restored to version 1 while replica a serves version 3; changes made since on
    # the restored set bring Redis back to version 3 with other keys. Equal numbers are not
    # the same set: a must serve (and sign with) what Redis holds, or the claim's version
    # check would pass for a set that no longer exists.
    a = make_store(redis_deployment.target, clock, key_supply([0, 1, 2, 3]), replica="a")
    a.load_or_create()
    await rotate_twice_then_restore(a, redis_deployment, clock)
    b = make_store(redis_deployment.target, clock, key_supply([4, 5]), replica="b")
    b.load()
    await admin(b, clock).rotate("t", force=True)
    await admin(b, clock).rotate("t", force=True)
    assert b.current().version == a.current().version == 3
    assert (await a.refresh()) == b.current()
    assert a.signing_set().active.kid == kid_of(4) and a.stale is None


@pytest.mark.slow
async def test_a_set_copied_from_one_redis_to_the_cluster_names_serves_there(
    redis_server: Any, cluster_url: str, clock: FakeClock
) -> None:
    # docs/deploying.md, "Redis Cluster": moving to a cluster copies the set and its version
    # (as stored, still sealed) to the tagged names; the document itself is unchanged.
    redis_server.reset()
    single = make_store(redis_server.url, clock, key_supply([0, 1, 2]), replica="old")
    single.load_or_create()
    await admin(single, clock).rotate("t", force=True)
    source, target = raw_redis(redis_server.url), raw_redis(cluster_url)
    old, new = names(redis_server.url), names(cluster_url)
    target.set(new.set, source.get(old.set) or b"")
    target.set(new.version, source.get(old.version) or b"")
    source.close()
    target.close()
    moved = make_store(cluster_url, clock, key_supply([]), replica="new").load_or_create()
    assert moved == single.current() and moved.version == 2


async def test_a_change_short_of_replicas_is_refused_and_followed_once_it_stands(
    sentinel_deployment: Deployment, clock: FakeClock
) -> None:
    target = sentinel_deployment.target
    assert isinstance(target, RedisTarget)
    unmet = make_store(dataclasses.replace(target, min_replicas=2), clock, key_supply([0, 1, 2]))
    before = unmet.load_or_create()
    with pytest.raises(errors.KeyStoreUnavailable, match="HOOK_REDIS_MIN_REPLICAS"):
        await admin(unmet, clock).rotate("t", force=True)
    # Not stale: the set served is still right; the change stands on the master, unconfirmed,
    # and is followed like another replica's (an operator sees it in GET /admin/keys).
    assert unmet.stale is None and unmet.current() == before
    assert (await unmet.refresh()).version == before.version + 1
