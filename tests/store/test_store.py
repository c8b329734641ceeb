"""Store semantics (design.md "POST /verification-token"), run against MemoryStore and a real
RedisStore, on one Redis server and on a Sentinel group (every claim and step waiting for the
replica); what only the Redis store does is in ``test_redis.py``."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hook_service import errors
from hook_service.collaborators import open_store
from hook_service.settings import Settings
from hook_service.store.base import KeySetGuard, PendingStep, Store, wrong_scope
from hook_service.store.memory import MemoryStore
from hook_service.store.redis import RedisStore
from tests.store.support import claim, issued, pending, redis_store
from tests.support import PRELUDE_JWKS_FILE, TEST_KEK, FakeClock

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


async def test_a_new_decision_rearms_the_step_and_keeps_the_claimed_token(
    store: Store, clock: FakeClock
) -> None:
    # Issue 10, point 5: the user starts again (or Prelude calls the hook again) after the
    # backend got its token; the backend's retry for the first challenge must still get it.
    await store.put_pending([pending(clock)])
    first = issued(clock, challenge_id="chl_1")
    await claim(store, clock, first)
    clock.advance(10)
    # A fresh review decision (another request; here for another scope): it replaces the step.
    await store.put_pending([pending(clock, scope="profile:read")])
    second = issued(clock, challenge_id="chl_2")
    assert await claim(store, clock, second) == (second, True, "profile:read")
    # Each token answers with the scope its own step was recorded for.
    got, fresh, scope = await claim(store, clock, issued(clock, challenge_id="chl_1"))
    assert (got, fresh, scope) == (first, False, "transfer:write") and got.token == first.token
    got, fresh, scope = await claim(store, clock, issued(clock, challenge_id="chl_2"))
    assert (got.token, fresh, scope) == (second.token, False, "profile:read")
    with pytest.raises(errors.StepAlreadyUsed):  # the re-armed step yielded its one token
        await claim(store, clock, issued(clock, challenge_id="chl_3"))


async def test_a_replay_never_extends_nor_rearms_the_step(store: Store, clock: FakeClock) -> None:
    # Issue 10, point 5: the same signed request again keeps the expiry its decision computed.
    await store.put_pending([pending(clock, ttl=600, origin="req-1")])
    clock.advance(300)
    await store.put_pending([pending(clock, ttl=600, origin="req-1")])  # would end at 900
    clock.advance(300)
    with pytest.raises(errors.NoPendingStep):  # the first decision's expiry
        await claim(store, clock, issued(clock))
    await store.put_pending([pending(clock, ttl=600, origin="req-2")])
    first = issued(clock, challenge_id="chl_1")
    await claim(store, clock, first)
    await store.put_pending([pending(clock, ttl=600, origin="req-2")])  # replayed after use
    with pytest.raises(errors.StepAlreadyUsed):
        await claim(store, clock, issued(clock, challenge_id="chl_2"))
    assert (await claim(store, clock, issued(clock, challenge_id="chl_1")))[0] == first


async def test_a_replay_after_the_step_expired_records_it_again(
    store: Store, clock: FakeClock
) -> None:
    # Nothing binds a signed request to a time (contract 2.3): once its step has expired, a
    # replay is a request like any other (the replay window of issue 11 is what refuses it).
    await store.put_pending([pending(clock, ttl=60, origin="req-1")])
    clock.advance(60)
    await store.put_pending([pending(clock, ttl=60, origin="req-1")])
    assert (await claim(store, clock, issued(clock)))[1] is True


async def test_claimed_token_outlives_its_step_until_it_expires_whatever_is_recorded(
    store: Store, clock: FakeClock
) -> None:
    await store.put_pending([pending(clock, ttl=60)])
    first = issued(clock, ttl=300)
    await claim(store, clock, first)
    for origin in ("a", "b"):
        clock.advance(100)  # the step is long gone; later hooks record new ones
        await store.put_pending([pending(clock, ttl=600, origin=origin)])
        assert (await claim(store, clock, issued(clock)))[0] == first
    clock.advance(100)  # the token has expired: the retry may not re-send it
    second = issued(clock)
    assert await claim(store, clock, second) == (second, True, "transfer:write")  # the live step


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


async def test_claim_compares_the_recorded_scope_atomically(store: Store, clock: FakeClock) -> None:
    # Issue 10, point 11: a challenge for another scope cannot take the step, and takes nothing.
    await store.put_pending([pending(clock, scope="transfer:write")])
    with pytest.raises(errors.NoPendingStep) as info:
        await claim(store, clock, issued(clock, challenge_id="chl_x"), scope="profile:read")
    assert info.value.detail == wrong_scope("kyc_review", "profile:read", "transfer:write")
    token = issued(clock)
    assert await claim(store, clock, token, scope="transfer:write") == (
        token,
        True,
        "transfer:write",
    )
    assert (await claim(store, clock, issued(clock), scope="transfer:write"))[0] == token
    assert (await claim(store, clock, issued(clock)))[0] == token  # no scope: explicit form
    with pytest.raises(errors.NoPendingStep, match="'profile:read'"):  # even on a retry
        await claim(store, clock, issued(clock), scope="profile:read")


async def test_open_store_picks_the_backend(redis_url: str, clock: FakeClock) -> None:
    settings = Settings(prelude_jwks_file=PRELUDE_JWKS_FILE)
    assert isinstance(open_store(settings, clock), MemoryStore)
    with_redis = settings.replace(
        redis_url=redis_url, keystore="file", key_encryption_keys=(TEST_KEK,)
    )
    store = open_store(with_redis, clock)
    try:
        assert isinstance(store, RedisStore)
        await store.ping()
        await store.put_pending([pending(clock)])
        token = issued(clock)
        await claim(store, clock, token)
        # The token is sealed under the configured KEK's at-rest key: the tests' one opens it.
        assert (await claim(redis_store(redis_url, clock), clock, issued(clock)))[0] == token
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


# --- ensure_pending: a replay's steps (issue 11 point 3) ----------------------------------


async def test_a_missing_step_is_created(store: Store, clock: FakeClock) -> None:
    await store.ensure_pending([pending(clock)])
    token = issued(clock)
    assert await claim(store, clock, token) == (token, True, "transfer:write")


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
