"""Every Lua script the service registers runs on a Redis Cluster: its keys (and, for the key
set, its shard channel) are in one hash slot, so EVAL/EVALSHA never meet CROSSSLOT. Each
test drives a backend through every operation that runs a script, on the private three-master
cluster, and then asks every master which scripts it has run (``SCRIPT EXISTS``): each script
of the backend's modules must have run somewhere, and every operation must have succeeded
(redis-py refuses keys of several slots before sending, Redis refuses a script touching a key
or shard channel of another slot)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from types import ModuleType

import pytest
from redis.crc import key_slot

from hook_service.facts import redis_scripts as facts_scripts
from hook_service.facts.base import Facts, Once, Proof, Replay
from hook_service.facts.logic import Limits
from hook_service.facts.redis import RedisFactsStore
from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends import redis_lua as key_scripts
from hook_service.keys.backends.keyring import keyring
from hook_service.keys.backends.redis import RedisKeyStore
from hook_service.store import redis_scripts as store_scripts
from tests.facts.support import KEY, SCOPE, Requests
from tests.store.support import ON_CLUSTER, claim, issued, pending, redis_store
from tests.support import TEST_KEK, FakeClock, cluster_masters, key_supply, raw_redis

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DAY = 86400


def scripts_of(module: ModuleType) -> dict[str, str]:
    """The module's Lua scripts by name: its string constants that call Redis and return.
    Left out: fragments that others start, end with or hold, and the key set's
    single-server variants (PUBLISH, where the cluster ones SPUBLISH)."""
    found = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, str)
        and "redis.call(" in value
        and "return" in value
        and "'PUBLISH'" not in value
    }
    # A fragment other scripts are built of (the facts' replay check, _ONCE) runs inside them.
    return {
        name: value
        for name, value in found.items()
        if not any(value in other for key, other in found.items() if key != name)
    }


def run_anywhere(cluster_url: str, scripts: dict[str, str]) -> set[str]:
    """The names of ``scripts`` that no master of the cluster has run."""
    masters = cluster_masters(cluster_url)
    missing = set()
    for name, text in scripts.items():
        sha = hashlib.sha1(text.encode()).hexdigest()
        if not any(m.script_exists(sha)[0] for m in masters):
            missing.add(name)
    for master in masters:
        master.close()
    return missing


@pytest.fixture
def cluster(cluster_url: str) -> str:
    """The cluster's URL with every master empty and its script cache too."""
    for master in cluster_masters(cluster_url):
        with master:
            master.script_flush()
    return cluster_url


def test_the_script_lists_are_what_the_backends_hold() -> None:
    # A check of the check: a new script in these modules is picked up by name.
    assert set(scripts_of(store_scripts)) == {"PUT_LUA", "CLAIM_LUA", "ENSURE_LUA"}
    assert set(scripts_of(facts_scripts)) == {
        "READ",
        "OBSERVE",
        "SETTLE",
        "PROVE",
        "FRAUD",
        "PRUNE",
        "TAKE",
    }
    assert set(scripts_of(key_scripts)) == {
        "CLUSTER_WRITE_LUA",
        "CLUSTER_RESTORE_LUA",
        "LOCK_LUA",
        "UNLOCK_LUA",
    }


def names(scripts: Iterable[str]) -> list[str]:
    return sorted(scripts)


async def test_every_key_set_script_runs_in_one_slot(cluster: str, clock: FakeClock) -> None:
    store = RedisKeyStore(
        cluster, keyring([TEST_KEK]), clock=clock, new_key=key_supply([0, 1, 2]), cluster=True
    )
    try:
        store.load_or_create()  # the write script, on the synchronous client
        admin = KeyAdmin(store, clock=clock, token_ttl=300, replica="r")
        await admin.rotate("t", force=True)  # the lock, the write, the unlock
        token = await store.acquire_lock(5)
        assert token is not None
        await store.release_lock(token)
        client = raw_redis(cluster)
        client.flushall()  # data loss: the next look puts this replica's copy back
        client.close()
        assert (await store.refresh()).version == 2  # the restore script
        events, _ = await store.events(None, 100)
        assert [e.event for e in events][-1] == "restored"
    finally:
        await store.aclose()
    assert names(run_anywhere(cluster, scripts_of(key_scripts))) == []


async def test_every_facts_script_runs_in_one_slot(cluster: str, clock: FakeClock) -> None:
    store = RedisFactsStore(cluster, key=KEY, limits=Limits(), cluster=True)
    req = Requests(clock)
    try:
        attempt = req.attempt()
        await store.observe("usr_1", attempt, clock())
        await store.settle("usr_1", req.review(attempt, ("kyc_review",)), clock())
        assert await store.prove("usr_1", Proof(SCOPE, "kyc_review"), clock())
        await store.report_fraud("usr_1", clock())
        assert (await store.show("usr_1", clock()))["flagged"] is True
        # The replay check: its record is in the user's slot (the same hash tag), written by
        # the observation, answered by the settle, and given back to a repeat of the request.
        assert key_slot(store.replay_key("usr_1").encode()) == key_slot(
            store.keys("usr_1")[0].encode()
        )
        once = Once(KEY.request(b"body", "sig"), window=60)
        repeated = req.attempt()
        assert isinstance(await store.observe_once("usr_1", repeated, clock(), once), Facts)
        settled = Once(once.digest, once.window, answer="continue")
        await store.settle("usr_1", repeated, clock(), settled)
        replay = await store.observe_once("usr_1", req.attempt(), clock(), once)
        assert isinstance(replay, Replay) and replay.answer == "continue"
        clock.advance(31 * DAY)  # past the retention: the next observation prunes
        await store.observe("usr_1", req.attempt("81.2.69.7"), clock())
        assert (await store.erase("usr_1", clock()))["devices"] >= 1
    finally:
        await store.aclose()
    assert names(run_anywhere(cluster, scripts_of(facts_scripts))) == []


@pytest.mark.parametrize("_", [pytest.param("cluster", marks=ON_CLUSTER)])
async def test_every_store_script_runs_in_one_slot(cluster: str, clock: FakeClock, _: str) -> None:
    store = redis_store(cluster, clock)
    try:
        two_steps = [pending(clock), pending(clock, key="verify_sms")]
        await store.put_pending(two_steps)  # one decision's steps: one script
        await store.ensure_pending([pending(clock, key="verify_email")])  # a replay's re-record
        token = issued(clock)
        assert (await claim(store, clock, token))[0] == token
    finally:
        await store.aclose()
    assert names(run_anywhere(cluster, scripts_of(store_scripts))) == []
