"""Store semantics (design.md "POST /verification-token"), run against MemoryStore and a real
RedisStore; what only the Redis store does is in ``test_redisstore.py``."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hook_service import errors
from hook_service.services import open_store
from hook_service.store.base import KeySetGuard, PendingStep, Store
from hook_service.store.memory import MemoryStore
from hook_service.store.redis import RedisStore
from tests.store.support import claim, issued, pending
from tests.support import FakeClock

pytestmark = pytest.mark.anyio


# ``store`` (tests/store/conftest.py) is each store in turn; ``clock`` is conftest's FakeClock.


# --- semantics shared by both stores -------------------------------------------------------


async def test_first_claim_returns_the_issued_token(store: Store, clock: FakeClock) -> None:
    await store.put_pending([pending(clock)])
    token = issued(clock)
    got, fresh, scope = await claim(store, clock, token)
    assert fresh is True
    assert scope == "transfer:write"  # the pending step's, for the facts' proof
    assert got == token and got.token == token.token


async def test_retry_with_same_challenge_returns_the_stored_token(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock)])
    first = issued(clock)
    await claim(store, clock, first)
    clock.advance(100)
    second = issued(clock)  # the endpoint mints a new token on every call
    got, fresh, scope = await claim(store, clock, second)
    assert fresh is False
    assert scope == "transfer:write"
    assert got.token == first.token and got == first


async def test_other_challenge_gets_step_already_used(store: Store, clock: FakeClock) -> None:
    await store.put_pending([pending(clock)])
    await claim(store, clock, issued(clock, challenge_id="chl_1"))
    with pytest.raises(errors.StepAlreadyUsed):
        await claim(store, clock, issued(clock, challenge_id="chl_2"))


async def test_missing_step_and_other_user_or_key_give_no_pending_step(
    store: Store, clock: FakeClock
) -> None:
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock))
    await store.put_pending([pending(clock, user_id="usr_1", key="kyc_review")])
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock, user_id="usr_2"))
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock, key="manual_check"))


async def test_claim_at_or_after_expiry_gives_no_pending_step(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock, key="a", ttl=600), pending(clock, key="b", ttl=600)])
    clock.advance(599)
    assert (await claim(store, clock, issued(clock, key="a")))[1] is True
    clock.advance(1)  # exactly expires_at: gone
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock, key="b"))


async def test_retry_after_token_expiry_gets_step_already_used(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock, ttl=600)])
    await claim(store, clock, issued(clock, ttl=300))
    clock.advance(300)  # token dead, record alive until the pending expiry
    with pytest.raises(errors.StepAlreadyUsed):
        await claim(store, clock, issued(clock))


async def test_claimed_record_lives_until_the_later_of_both_expiries(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock, ttl=60)])
    first = issued(clock, ttl=300)
    await claim(store, clock, first)
    clock.advance(299)  # pending expiry long past, token still valid: retry still works
    got, fresh, _ = await claim(store, clock, issued(clock))
    assert (got.token, fresh) == (first.token, False)
    clock.advance(1)
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock))


async def test_put_pending_after_use_rearms_the_step(store: Store, clock: FakeClock) -> None:
    await store.put_pending([pending(clock)])
    await claim(store, clock, issued(clock, challenge_id="chl_1"))
    await store.put_pending([pending(clock)])  # a fresh review decision
    second = issued(clock, challenge_id="chl_2")
    assert await claim(store, clock, second) == (second, True, "transfer:write")
    with pytest.raises(errors.StepAlreadyUsed):  # the old challenge lost its record
        await claim(store, clock, issued(clock, challenge_id="chl_1"))


async def test_put_pending_overwrites_instead_of_extending(store: Store, clock: FakeClock) -> None:
    await store.put_pending([pending(clock, ttl=600)])
    await store.put_pending([pending(clock, ttl=60)])
    clock.advance(60)
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock))


async def test_put_pending_records_every_step_of_a_decision(store: Store, clock: FakeClock) -> None:
    await store.put_pending([pending(clock, key="kyc_review"), pending(clock, key="manual")])
    assert (await claim(store, clock, issued(clock, key="kyc_review")))[1] is True
    assert (await claim(store, clock, issued(clock, key="manual")))[1] is True


async def test_put_pending_of_an_expired_step_removes_the_old_record(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock, ttl=600)])
    await store.put_pending([pending(clock, ttl=-1)])
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock))


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        (("a", "bc"), ("ab", "c")),
        (("a:b", "c"), ("a", "b:c")),
        (("u\x00", "k"), ("u", "\x00k")),
        (("1:ab", "c"), ("1:a", "bc")),
        (("usr_\ud800", "k"), ("usr_\udc00", "k")),  # lone surrogates (legal in JSON)
    ],
)
async def test_user_and_key_pairs_never_collide(
    store: Store, clock: FakeClock, stored: tuple[str, str], asked: tuple[str, str]
) -> None:
    await store.put_pending([pending(clock, user_id=stored[0], key=stored[1])])
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock, user_id=asked[0], key=asked[1]))
    token = issued(clock, user_id=stored[0], key=stored[1], challenge_id="chl_\ud800")
    assert await claim(store, clock, token) == (token, True, "transfer:write")
    assert (await claim(store, clock, token))[0] == token  # round-trips through the store


async def test_concurrent_claims_same_challenge_mint_one_token(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock)])
    tokens = [issued(clock, challenge_id="chl_1") for _ in range(20)]
    results = await asyncio.gather(*(claim(store, clock, t) for t in tokens))
    assert sum(fresh for _, fresh, _ in results) == 1
    winner = next(t for t, fresh, _ in results if fresh)
    assert {t.token for t, _, _ in results} == {winner.token}
    assert winner in tokens


async def test_concurrent_claims_different_challenges_one_wins(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock)])
    tokens = [issued(clock, challenge_id=f"chl_{i}") for i in range(20)]
    results = await asyncio.gather(
        *(claim(store, clock, t) for t in tokens), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, tuple)]
    assert len(wins) == 1 and wins[0][1] is True
    assert all(isinstance(r, errors.StepAlreadyUsed) for r in results if not isinstance(r, tuple))


async def test_claim_refuses_a_token_for_another_user_or_key(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock)])
    with pytest.raises(ValueError, match="does not belong"):
        await store.claim("usr_1", "kyc_review", issued(clock, user_id="usr_2"), clock())
    assert (await claim(store, clock, issued(clock)))[1] is True  # nothing was consumed


async def test_tokens_never_reach_logs_or_repr(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await store.put_pending([pending(clock)])
    token = issued(clock)
    await claim(store, clock, token)
    stored, _, _ = await claim(store, clock, issued(clock))
    assert token.token not in caplog.text
    assert token.token not in repr(store) and token.token not in repr(stored)


def test_pending_step_rejects_empty_ids_and_non_finite_expiry() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        PendingStep(user_id="", key="k", scope="s", expires_at=1.0)
    with pytest.raises(ValueError, match="finite"):
        PendingStep(user_id="u", key="k", scope="s", expires_at=float("nan"))


async def test_open_store_picks_the_backend(redis_url: str, clock: FakeClock) -> None:
    assert isinstance(open_store(None, clock), MemoryStore)
    store = open_store(redis_url, clock)
    try:
        assert isinstance(store, RedisStore)
        await store.ping()
    finally:
        await store.aclose()


# --- MemoryStore ----------------------------------------------------------------------------


async def test_memory_store_sweeps_dead_records_but_keeps_live_tokens(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    await store.put_pending([pending(clock, user_id=f"usr_{i}", ttl=10) for i in range(50)])
    await store.put_pending([pending(clock, user_id="claimed", ttl=10)])
    first = issued(clock, user_id="claimed", ttl=300)
    await claim(store, clock, first)
    clock.advance(61)
    await store.put_pending([pending(clock, user_id="new")])
    assert len(store) == 2  # 50 dead ones dropped; the claimed one lives until its token dies
    assert (await claim(store, clock, issued(clock, user_id="claimed")))[0] == first


async def test_memory_store_refuses_a_key_set_guard(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    await store.put_pending([pending(clock)])
    with pytest.raises(ValueError, match="cannot check a shared key set"):
        await store.claim("usr_1", "kyc_review", issued(clock), clock(), KeySetGuard("k", 1))
    assert (await claim(store, clock, issued(clock)))[1] is True  # nothing was consumed
