"""TokenIssuer: sign -> claim -> revocation check, and its claim guards (tokens/issuer.py,
tokens/guards.py), on real key stores and stores; the Redis cases on a private redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from hook_service import errors
from hook_service.collaborators import claim_guard
from hook_service.keys import lifecycle
from hook_service.keys.backends.file import FileKeyStore
from hook_service.keys.backends.keyring import keyring
from hook_service.keys.backends.redis import RedisKeyStore
from hook_service.keys.lifecycle import KeySet
from hook_service.store.base import Claimed, Store
from hook_service.store.memory import MemoryStore
from hook_service.store.redis import RedisStore
from hook_service.tokens.base import IssuedToken
from hook_service.tokens.guards import RereadKeySet, VersionInClaim
from hook_service.tokens.issuer import CLAIM_ATTEMPTS, TokenIssuer
from tests.store.support import pending, redis_store
from tests.support import TEST_KEK, FakeClock, key_supply, kid_of

pytestmark = pytest.mark.anyio

STEPS = frozenset({"kyc_review"})
TTL = 300


class ChangesUnderneath(RereadKeySet):
    """A real re-read guard whose claims first report ``changes`` key-set changes, each one
    made for real (a forced rotation of the file store) as another replica would."""

    def __init__(self, keys: FileKeyStore, changes: int) -> None:
        super().__init__(keys)
        self.store = keys
        self.changes = changes
        self.signed_with: list[str] = []

    async def claim(
        self,
        store: Store,
        issued: IssuedToken,
        now: float,
        signed_with: KeySet,
        scope: str | None = None,
    ) -> Claimed | None:
        self.signed_with.append(issued.kid)
        if self.changes:
            self.changes -= 1
            self.store.update(
                lambda ks, at: lifecycle.rotate(ks, at, TTL, self.store.new_key, force=True)
            )
            return None
        return await super().claim(store, issued, now, signed_with, scope)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def file_keys(tmp_path: Path, clock: FakeClock) -> FileKeyStore:
    store = FileKeyStore(tmp_path, clock=clock, new_key=key_supply([0, 1, 2, 3, 4]))
    store.load_or_create()
    return store


async def test_a_changed_key_set_is_signed_again_with_its_active_key(
    file_keys: FileKeyStore, clock: FakeClock
) -> None:
    store = MemoryStore(clock)
    await store.put_pending([pending(clock)])
    guard = ChangesUnderneath(file_keys, changes=1)
    issuer = TokenIssuer(store, guard, custom_steps=STEPS, ttl=TTL)
    token = await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()))
    # Signed by key 0, the claim reported the change; signed again by the new active key 1.
    assert guard.signed_with == [kid_of(0), kid_of(1)]
    assert token.kid == kid_of(1) == jwt.get_unverified_header(token.token)["kid"]
    # It is the claimed token: a retry of the challenge gets it back.
    again = await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()))
    assert again == token


async def test_a_key_set_that_keeps_changing_is_a_503_and_claims_nothing(
    file_keys: FileKeyStore, clock: FakeClock
) -> None:
    store = MemoryStore(clock)
    await store.put_pending([pending(clock)])
    guard = ChangesUnderneath(file_keys, changes=CLAIM_ATTEMPTS)
    issuer = TokenIssuer(store, guard, custom_steps=STEPS, ttl=TTL)
    with pytest.raises(errors.KeySetChanged) as caught:
        await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()))
    assert caught.value.status_code == 503
    assert len(guard.signed_with) == CLAIM_ATTEMPTS
    # Nothing was claimed: the next attempt, with a calm key set, gets the step.
    token = await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()))
    assert token.kid == file_keys.current().active.kid


async def test_only_a_custom_step_of_the_policy_is_issued(
    file_keys: FileKeyStore, clock: FakeClock
) -> None:
    store = MemoryStore(clock)
    await store.put_pending([pending(clock, key="verify_sms")])
    issuer = TokenIssuer(store, RereadKeySet(file_keys), custom_steps=STEPS, ttl=TTL)
    with pytest.raises(errors.NoPendingStep, match="not a custom step"):
        await issuer.issue("usr_1", "chl_1", "verify_sms", int(clock()))


@pytest.mark.parametrize("place", ["file", "redis"])
async def test_the_scope_reaches_the_claim_through_either_guard(
    on_one_redis: tuple[RedisKeyStore, RedisKeyStore, RedisStore],
    file_keys: FileKeyStore,
    clock: FakeClock,
    place: str,
) -> None:
    here, _, store = on_one_redis
    guard = RereadKeySet(file_keys) if place == "file" else VersionInClaim(here)
    await store.put_pending([pending(clock)])  # recorded for transfer:write
    issuer = TokenIssuer(store, guard, custom_steps=STEPS, ttl=TTL)
    with pytest.raises(errors.NoPendingStep, match="recorded for scope 'transfer:write'"):
        await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()), "profile:read")
    token = await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()), "transfer:write")
    assert await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock())) == token


async def test_a_retry_never_gets_a_token_of_a_revoked_key(
    file_keys: FileKeyStore, clock: FakeClock
) -> None:
    store = MemoryStore(clock)
    await store.put_pending([pending(clock)])
    issuer = TokenIssuer(store, RereadKeySet(file_keys), custom_steps=STEPS, ttl=TTL)
    first = await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()))
    file_keys.update(lambda ks, at: lifecycle.revoke(ks, first.kid, at, file_keys.new_key))
    with pytest.raises(errors.StepAlreadyUsed, match="revoked"):
        await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()))


def test_the_guard_is_chosen_by_capability_and_place(tmp_path: Path) -> None:
    file_store = FileKeyStore(tmp_path)
    redis_keys = RedisKeyStore("redis://127.0.0.1:1/0", keyring((TEST_KEK,)))
    assert isinstance(claim_guard(redis_keys, same_redis=True), VersionInClaim)
    assert isinstance(claim_guard(redis_keys, same_redis=False), RereadKeySet)
    # On a cluster the version key is in the key set's slot, never the user's: re-read.
    assert isinstance(claim_guard(redis_keys, same_redis=True, cluster=True), RereadKeySet)
    # The file store has no version key: whatever the wiring says, the set is re-read.
    assert isinstance(claim_guard(file_store, same_redis=True), RereadKeySet)


@pytest.fixture
async def on_one_redis(
    redis_url: str, clock: FakeClock
) -> AsyncIterator[tuple[RedisKeyStore, RedisKeyStore, RedisStore]]:
    ring = keyring((TEST_KEK,))
    here = RedisKeyStore(redis_url, ring, clock=clock, new_key=key_supply([0, 1]), replica="a")
    there = RedisKeyStore(redis_url, ring, clock=clock, new_key=key_supply([2]), replica="b")
    store = redis_store(redis_url, clock)
    here.load_or_create()
    there.load()
    try:
        yield here, there, store
    finally:
        for closing in (here, there, store):
            await closing.aclose()


@pytest.mark.redis
async def test_the_claim_itself_sees_a_revocation_this_replica_has_not_heard_of(
    on_one_redis: tuple[RedisKeyStore, RedisKeyStore, RedisStore], clock: FakeClock
) -> None:
    here, there, store = on_one_redis  # `here` follows nothing: it was never started
    await store.put_pending([pending(clock)])
    old = here.current().active.kid
    await there.change(lambda ks, at: lifecycle.revoke(ks, old, at, there.new_key), lambda *_: [])
    assert here.current().active.kid == old  # still the set in memory ...
    issuer = TokenIssuer(store, VersionInClaim(here), custom_steps=STEPS, ttl=TTL)
    token = await issuer.issue("usr_1", "chl_1", "kyc_review", int(clock()))
    assert token.kid != old  # ... but the claim refused it, and the new active key signed
    assert token.kid == here.current().active.kid == kid_of(1)
