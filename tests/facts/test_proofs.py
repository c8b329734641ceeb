"""A first verification token is proof (issue 11 point 2): the token issuer's ``on_issued``
(facts/proofs.py) on real stores, the memory ones and a real Redis; a failing or hung facts
store never fails the token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hook_service.facts.base import FactsStore
from hook_service.facts.memory import MemoryFactsStore
from hook_service.facts.proofs import TokenProofs
from hook_service.facts.redis import RedisFactsStore
from hook_service.keys.backends.file import FileKeyStore
from hook_service.store.base import PendingStep, Store
from hook_service.store.memory import MemoryStore
from hook_service.tokens.guards import RereadKeySet
from hook_service.tokens.issuer import TokenIssuer
from tests.facts.support import CHROME_131_MAC, KEY, SCOPE, Requests
from tests.store.support import redis_store
from tests.support import FakeClock, free_port, key_supply

pytestmark = pytest.mark.anyio

USER = "usr_1"
STEP = "kyc_review"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def stores(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[tuple[Store, FactsStore]]:
    """A pending-step store and a facts store of one kind."""
    store: Store
    facts: FactsStore
    if request.param == "memory":
        store, facts = MemoryStore(clock), MemoryFactsStore(KEY)
    else:
        url = request.getfixturevalue("redis_url")
        store, facts = redis_store(url, clock), RedisFactsStore(url, key=KEY)
    try:
        yield store, facts
    finally:
        await store.aclose()
        await facts.aclose()


def issuer(store: Store, proofs: TokenProofs, tmp_path: Path, clock: FakeClock) -> TokenIssuer:
    keys = FileKeyStore(tmp_path / "keys", clock=clock, new_key=key_supply([0, 1]))
    keys.load_or_create()
    return TokenIssuer(store, RereadKeySet(keys), custom_steps={STEP}, ttl=300, on_issued=proofs)


async def review_with_kyc(store: Store, facts: FactsStore, clock: FakeClock) -> Requests:
    """What the hook does for a review with kyc_review: the attempt, its decision, the step."""
    requests = Requests(clock, user_id=USER)
    attempt = requests.attempt()
    await facts.observe(USER, attempt, clock())
    await facts.settle(USER, requests.review(attempt, (STEP,)), clock())
    await store.put_pending([PendingStep(USER, STEP, SCOPE, clock() + 600)])
    return requests


async def test_a_first_token_makes_the_device_known_and_sets_step_age(
    stores: tuple[Store, FactsStore], tmp_path: Path, clock: FakeClock
) -> None:
    store, facts = stores
    requests = await review_with_kyc(store, facts, clock)
    proofs = TokenProofs(facts)
    tokens = issuer(store, proofs, tmp_path, clock)
    clock.advance(30)
    await tokens.issue(USER, "chl_1", STEP, int(clock()))
    assert (proofs.marked, proofs.failures) == (1, 0)
    clock.advance(10)
    seen = await facts.observe(USER, requests.attempt(), clock())
    assert (seen.device_known, seen.ip_known, seen.country_known) == (True, True, True)
    assert (seen.verified_age, seen.step_age) == (10, {STEP: 10})
    # A new device is not known by that proof.
    other = await facts.observe(USER, requests.attempt(ua=CHROME_131_MAC), clock())
    assert other.device_known is False


async def test_a_retried_token_is_not_a_second_proof(
    stores: tuple[Store, FactsStore], tmp_path: Path, clock: FakeClock
) -> None:
    store, facts = stores
    await review_with_kyc(store, facts, clock)
    results: list[str] = []
    proofs = TokenProofs(facts, on_result=results.append)
    tokens = issuer(store, proofs, tmp_path, clock)
    first = await tokens.issue(USER, "chl_1", STEP, int(clock()))
    clock.advance(100)
    assert await tokens.issue(USER, "chl_1", STEP, int(clock())) == first
    assert (proofs.marked, proofs.failures) == (1, 0)
    assert results == ["marked"]  # told once: the retry is no proof
    shown = await facts.show(USER, clock())
    assert shown["step_age"] == {STEP: 100}  # the first issuance's time, not the retry's


async def test_a_token_without_a_provable_attempt_only_sets_step_age(
    stores: tuple[Store, FactsStore], tmp_path: Path, clock: FakeClock
) -> None:
    store, facts = stores
    # A pending step without any recorded attempt (recorded before facts existed).
    await store.put_pending([PendingStep(USER, STEP, SCOPE, clock() + 600)])
    results: list[str] = []
    proofs = TokenProofs(facts, on_result=results.append)
    await issuer(store, proofs, tmp_path, clock).issue(USER, "chl_1", STEP, int(clock()))
    assert (proofs.marked, proofs.failures, results) == (0, 0, ["noted"])
    shown = await facts.show(USER, clock())
    assert (shown["step_age"], shown["verified_age"], shown["devices"]) == ({STEP: 0}, -1, [])


async def test_an_unreachable_facts_store_never_fails_the_token(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore(clock)
    await store.put_pending([PendingStep(USER, STEP, SCOPE, clock() + 600)])
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    facts = RedisFactsStore(url, key=KEY, timeout=0.2)
    results: list[str] = []
    proofs = TokenProofs(facts, on_result=results.append)
    try:
        with caplog.at_level(logging.WARNING):
            token = await issuer(store, proofs, tmp_path, clock).issue(
                USER, "chl_1", STEP, int(clock())
            )
    finally:
        await facts.aclose()
    assert token.user_id == USER and token.key == STEP
    assert (proofs.marked, proofs.failures, results) == (0, 1, ["failed"])
    assert "not recorded as proof (StoreUnavailable)" in caplog.text
    assert "hunter2" not in caplog.text and token.token not in caplog.text


async def test_a_hung_facts_store_holds_the_token_back_at_most_the_timeout(
    redis_server: Any, redis_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    store = MemoryStore(clock)
    await store.put_pending([PendingStep(USER, STEP, SCOPE, clock() + 600)])
    # The client would wait 5 s per reply; the proof gives up after 0.2 s.
    facts = RedisFactsStore(redis_url, key=KEY, timeout=5.0)
    proofs = TokenProofs(facts, timeout=0.2)
    await facts.ping()
    redis_server.pause()
    try:
        token = await issuer(store, proofs, tmp_path, clock).issue(
            USER, "chl_1", STEP, int(clock())
        )
    finally:
        redis_server.resume()
        await facts.aclose()
    assert token.key == STEP
    assert (proofs.marked, proofs.failures) == (0, 1)


async def test_a_scope_the_facts_cannot_hold_is_a_counted_failure(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = MemoryStore(clock)
    long_scope = "transfer:" + "x" * 200  # Prelude's charset, longer than a facts name
    await store.put_pending([PendingStep(USER, STEP, long_scope, clock() + 600)])
    proofs = TokenProofs(MemoryFactsStore(KEY))
    token = await issuer(store, proofs, tmp_path, clock).issue(USER, "chl_1", STEP, int(clock()))
    assert token.key == STEP
    assert proofs.failures == 1
