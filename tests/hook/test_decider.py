"""hook/decider.py: the decision step decides from the policy, records custom steps in the
store within its time budget, and answers the policy's on_error when that fails (contract 8:
Prelude never gets a 5xx for a signed request). Against MemoryStore and a real RedisStore."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from hook_service import errors
from hook_service.collaborators import open_store
from hook_service.hook.base import HookRequest, Identifier
from hook_service.hook.decider import RECORD_TIMEOUT, HookDecider
from hook_service.hook.parse import parse_hook_request
from hook_service.policy.engine import Policy, example_policy_path
from hook_service.settings import Settings
from hook_service.store.base import Store
from tests.store.support import RedisServer, claim, issued, redis_store
from tests.support import PRELUDE_JWKS_FILE, TEST_KEK, USER_ID, FakeClock, free_port, hook_body

pytestmark = pytest.mark.anyio

# The example policy's on_error answer (`on_error: {status: block}` with the file's defaults).
BLOCK = {"status": "block", "grant_mode": "single-use", "granted_for": 300, "steps": []}
# large-transfer: otp (600 s) then kyc_review (86400 s); only kyc_review is a custom step.
LARGE_TRANSFER_SECONDS = 600 + 86_400


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(example_policy_path())


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    # The service's own choice: a RedisStore on the test server's URL, else a MemoryStore.
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings = Settings(prelude_jwks_file=PRELUDE_JWKS_FILE, key_encryption_keys=(TEST_KEK,))
    instance = open_store(settings.replace(redis_url=url, keystore="file"), clock)
    yield instance
    await instance.aclose()


def large_transfer(user_id: str = USER_ID) -> HookRequest:
    return parse_hook_request(hook_body(amount="1500", user_id=user_id))


async def test_custom_step_is_recorded_for_the_token_endpoint(
    policy: Policy, store: Store, clock: FakeClock
) -> None:
    decision = await HookDecider(policy, store, clock).decide(large_transfer())
    assert (decision.rule, decision.status, decision.error) == ("large-transfer", "review", None)
    assert [step.key for step in decision.steps] == ["verify_sms", "kyc_review"]
    token = issued(clock, user_id=USER_ID, key="kyc_review")
    assert await claim(store, clock, token) == (token, True, "transfer:write")
    # Prelude completes managed steps itself: they are never recorded.
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock, user_id=USER_ID, key="verify_sms"))


async def test_recorded_step_lasts_as_long_as_the_whole_challenge(
    policy: Policy, store: Store, clock: FakeClock
) -> None:
    decider = HookDecider(policy, store, clock)
    await decider.decide(large_transfer("usr_early"))
    await decider.decide(large_transfer("usr_late"))
    clock.advance(LARGE_TRANSFER_SECONDS - 1)
    early = issued(clock, user_id="usr_early", key="kyc_review")
    assert await claim(store, clock, early) == (early, True, "transfer:write")
    clock.advance(2)
    with pytest.raises(errors.NoPendingStep):
        await claim(store, clock, issued(clock, user_id="usr_late", key="kyc_review"))


async def test_decisions_without_a_custom_step_do_not_touch_the_store(
    policy: Policy, clock: FakeClock
) -> None:
    dead = redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    try:
        decider = HookDecider(policy, dead, clock)
        small = await decider.decide(parse_hook_request(hook_body(amount="20")))
        read = await decider.decide(parse_hook_request(hook_body(scope="profile:read")))
    finally:
        await dead.aclose()
    assert (small.rule, small.status, small.error) == ("otp-only", "review", None)
    assert (read.rule, read.status, read.granted_for) == ("allow", "continue", 900)


async def test_unreachable_store_answers_on_error(
    policy: Policy, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    dead = redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    try:
        with caplog.at_level(logging.ERROR, logger="hook_service.hook"):
            decision = await HookDecider(policy, dead, clock).decide(large_transfer())
    finally:
        await dead.aclose()
    assert decision.rule == "on_error"
    assert decision.to_json() == BLOCK
    assert decision.error is not None and decision.error.startswith("the store is unavailable")
    assert [r.getMessage() for r in caplog.records] == [
        f"recording custom steps failed ({decision.error}); answering on_error"
    ]


@pytest.mark.redis
async def test_store_slower_than_the_budget_answers_on_error(
    policy: Policy, redis_server: RedisServer, redis_url: str, clock: FakeClock
) -> None:
    # The store's own timeout is longer than the decider's budget: the budget decides.
    slow = redis_store(redis_url, clock, timeout=10 * RECORD_TIMEOUT)
    decider = HookDecider(policy, slow, clock, record_timeout=0.2)
    try:
        await slow.ping()  # connected before the server stops answering
        redis_server.pause()
        try:
            decision = await decider.decide(large_transfer())
        finally:
            redis_server.resume()
        assert (decision.rule, decision.error) == ("on_error", "store timed out")
        assert decision.to_json() == BLOCK
        # Issue 10, point 4: the write was sent, and runs now that the server answers again;
        # the on_error answer must have left nothing: no pending step, no token for it.
        await asyncio.sleep(0.3)
        with pytest.raises(errors.NoPendingStep):
            await claim(slow, clock, issued(clock, user_id=USER_ID, key="kyc_review"))
    finally:
        await slow.aclose()


async def test_unexpected_failure_answers_on_error(
    policy: Policy, store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # parse_hook_request refuses an empty user_id; a hand-built request makes recording fail
    # with a plain ValueError (PendingStep's check), which must fail closed too.
    request = HookRequest(
        "transfer:write",
        "",
        (Identifier("phone_number", "+1"),),
        {"platform": "WEB"},
        {"amount": "5000"},
    )
    with caplog.at_level(logging.ERROR, logger="hook_service.hook"):
        decision = await HookDecider(policy, store, clock).decide(request)
    assert (decision.rule, decision.error) == ("on_error", "internal error")
    assert decision.to_json() == BLOCK
    assert caplog.records[-1].getMessage() == "deciding failed; answering on_error"
    assert caplog.records[-1].exc_info is not None


async def test_on_error_keeps_the_otp_resolution_of_the_request(clock: FakeClock) -> None:
    # A policy whose on_error is a review: the fallback still picks verify_email for a user
    # without a phone number, as every other answer does (design.md).
    policy = Policy.from_mapping(
        {
            "version": 1,
            "custom_steps": ["kyc"],
            "on_error": {"status": "review", "steps": ["otp"]},
            "default": {"status": "review", "steps": ["otp", "kyc"]},
        }
    )
    dead = redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    try:
        decision = await HookDecider(policy, dead, clock).decide(
            parse_hook_request(hook_body(phone=False))
        )
    finally:
        await dead.aclose()
    assert decision.rule == "on_error"
    assert [step.key for step in decision.steps] == ["verify_email"]
