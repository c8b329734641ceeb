"""hook/history.py with the decider (issue 11 points 3 and 6): facts read only where rules need
them, everything else recorded in the background, replays answered from their record. Against
the memory stores and a real Redis (paused for a hung store)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from hook_service import errors
from hook_service.facts.attempts import AttemptFactory
from hook_service.facts.base import Attempt, Facts, FactsStore, Once
from hook_service.facts.geo import Geo
from hook_service.facts.memory import MemoryFactsStore
from hook_service.facts.redis import RedisFactsStore
from hook_service.hook.decider import RECORD_TIMEOUT, UNDECIDED, Decided, HookDecider
from hook_service.hook.history import Background, HookHistory, decode_answer, encode_answer
from hook_service.hook.parse import parse_hook_request
from hook_service.policy.base import Decision, Step
from hook_service.policy.engine import Policy, example_policy_path
from hook_service.store.base import Store
from hook_service.store.memory import MemoryStore
from hook_service.store.redis import RedisStore
from tests.conftest import RedisServer
from tests.facts.support import device_keys
from tests.store.support import claim, issued, pending
from tests.support import (
    TEST_FACTS_KEY,
    USER_ID,
    FakeClock,
    free_port,
    hook_body,
    token_sealer,
)

pytestmark = pytest.mark.anyio

SIG = "rsassa-pss-sha256=captured"
KYC_POLICY = {  # a scope whose rules do not read facts, with a custom step
    "version": 1,
    "custom_steps": ["kyc_review"],
    "scopes": {
        "loan:write": {"rules": [{"name": "kyc", "status": "review", "steps": ["kyc_review"]}]}
    },
}


class Spy(MemoryFactsStore):
    """A real memory store that counts how it is called."""

    def __init__(self) -> None:
        super().__init__(TEST_FACTS_KEY)
        self.calls: list[str] = []

    async def observe(self, user_id: str, attempt: Attempt, now: float) -> Facts:
        self.calls.append("observe")
        return await super().observe(user_id, attempt, now)

    async def observe_once(self, user_id: str, attempt: Attempt, now: float, once: Once) -> Any:
        self.calls.append("observe_once")
        return await super().observe_once(user_id, attempt, now, once)

    async def record(self, user_id: str, attempt: Attempt, now: float, once: Any = None) -> Any:
        self.calls.append("record")
        return await super().record(user_id, attempt, now, once)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def stores(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[tuple[Store, FactsStore]]:
    if request.param == "memory":
        yield MemoryStore(clock), MemoryFactsStore(TEST_FACTS_KEY)
        return
    url = request.getfixturevalue("redis_url")
    store, facts = (
        RedisStore(url, sealer=token_sealer(), clock=clock),
        RedisFactsStore(url, key=TEST_FACTS_KEY),
    )
    yield store, facts
    await store.aclose()
    await facts.aclose()


def make(
    store: Store,
    facts: FactsStore,
    clock: FakeClock,
    *,
    policy: Policy | None = None,
    window: int = 600,
    background: Background | None = None,
    record_timeout: float = RECORD_TIMEOUT,
) -> tuple[HookDecider, HookHistory]:
    attempts = AttemptFactory(TEST_FACTS_KEY, device_keys(), Geo())
    history = HookHistory(facts, attempts, clock, window=window, background=background)
    policy = policy or Policy.load(example_policy_path())
    return HookDecider(
        policy, store, clock, history=history, record_timeout=record_timeout
    ), history


async def send(decider: HookDecider, body: bytes, signature: str | None = SIG) -> Decided:
    """One hook call as StepUpHook makes it: the parsed body, its raw bytes and signature."""
    return await decider.answer(parse_hook_request(body), body=body, signature=signature)


async def attempts_so_far(facts: FactsStore, clock: FakeClock, user_id: str = USER_ID) -> int:
    """attempts_1h as a new attempt of the user would see it (that attempt is then counted)."""
    attempt = AttemptFactory(TEST_FACTS_KEY, device_keys(), Geo()).attempt("x:y", {}, clock())
    return (await facts.observe(user_id, attempt, clock())).attempts_1h


async def test_a_replay_flood_moves_no_counter(
    stores: tuple[Store, FactsStore], clock: FakeClock
) -> None:
    decider, history = make(*stores, clock)
    body = hook_body(amount="20")
    first = await send(decider, body)
    assert (first.decision.rule, first.replay) == ("otp-only", False)
    await history.background.drain()
    flood = await asyncio.gather(*(send(decider, body) for _ in range(50)))
    assert {(d.decision, d.replay) for d in flood} == {(first.decision, True)}
    await history.background.drain()
    assert await attempts_so_far(stores[1], clock) == 1


async def test_a_replay_gets_the_first_decision_and_never_a_second_token(
    stores: tuple[Store, FactsStore], clock: FakeClock
) -> None:
    store, facts = stores
    decider, history = make(store, facts, clock)
    body = hook_body(amount="1500")
    first = await send(decider, body)
    assert first.decision.rule == "large-transfer"
    token = issued(clock, user_id=USER_ID, challenge_id="chl_first")
    assert await claim(store, clock, token) == (token, True, "transfer:write")
    await history.background.drain()
    clock.advance(60)
    again = await send(decider, body)
    assert again.replay and again.decision == first.decision
    assert [s.key for s in again.decision.steps] == ["verify_sms", "kyc_review"]
    with pytest.raises(errors.StepAlreadyUsed):
        await claim(store, clock, issued(clock, user_id=USER_ID, challenge_id="chl_replay"))
    assert await claim(store, clock, token) == (
        token,
        False,
        "transfer:write",
    )  # the first's retry still works


async def test_a_replay_makes_sure_a_missing_step_exists(
    stores: tuple[Store, FactsStore], clock: FakeClock
) -> None:
    store, facts = stores
    decider, history = make(store, facts, clock)
    body = hook_body(amount="1500")
    await send(decider, body)
    await history.background.drain()
    await store.put_pending([pending(clock, user_id=USER_ID, ttl=-1)])  # the step is gone
    again = await send(decider, body)
    assert again.replay
    token = issued(clock, user_id=USER_ID)
    assert await claim(store, clock, token) == (token, True, "transfer:write")


async def test_a_replay_in_a_scope_without_facts_does_not_reopen_its_step(
    stores: tuple[Store, FactsStore], clock: FakeClock
) -> None:
    store, facts = stores
    policy = Policy.from_mapping(KYC_POLICY)
    decider, history = make(store, facts, clock, policy=policy)
    body = hook_body(scope="loan:write")
    first = await send(decider, body)
    await claim(store, clock, issued(clock, user_id=USER_ID, challenge_id="chl_first"))
    await history.background.drain()
    again = await send(decider, body)
    assert again.replay and again.decision == first.decision
    with pytest.raises(errors.StepAlreadyUsed):
        await claim(store, clock, issued(clock, user_id=USER_ID, challenge_id="chl_replay"))
    assert await attempts_so_far(facts, clock) == 1


async def test_a_replay_of_an_undecided_request_answers_on_error(clock: FakeClock) -> None:
    facts = MemoryFactsStore(TEST_FACTS_KEY)
    decider, history = make(MemoryStore(clock), facts, clock)
    body = hook_body(amount="20")
    once = history.once(body, SIG)
    assert once is not None  # the first copy, still being decided
    attempt = AttemptFactory(TEST_FACTS_KEY, device_keys(), Geo()).attempt(
        "transfer:write", {}, clock()
    )
    assert isinstance(await facts.observe_once(USER_ID, attempt, clock(), once), Facts)
    replay = await send(decider, body)
    assert replay.replay
    decided = replay.decision
    assert (decided.rule, decided.error, decided.cause) == (
        "on_error",
        UNDECIDED,
        "undecided_replay",
    )


async def test_a_replay_of_a_tampered_record_answers_on_error(clock: FakeClock) -> None:
    # A record changed in the store to carry a rule no policy can name (X-Hook-Rule could not
    # encode it): the replay answers on_error, never a 500 (the header) to Prelude.
    facts = MemoryFactsStore(TEST_FACTS_KEY)
    decider, history = make(MemoryStore(clock), facts, clock)
    body = hook_body(amount="20")
    once = history.once(body, SIG)
    assert once is not None
    attempt = AttemptFactory(TEST_FACTS_KEY, device_keys(), Geo()).attempt(
        "transfer:write", {}, clock()
    )
    assert isinstance(await facts.observe_once(USER_ID, attempt, clock(), once), Facts)
    decision = Decision("continue", "single-use", 300, (), "\u2603")
    await facts.settle(
        USER_ID, attempt, clock(), replace(once, answer=encode_answer(decision, (), 1.0))
    )
    replay = (await send(decider, body)).decision
    assert (replay.rule, replay.cause, replay.status) == ("on_error", "internal_error", "block")


async def test_a_replay_of_a_failed_request_answers_on_error_again(clock: FakeClock) -> None:
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0", sealer=token_sealer(), clock=clock)
    try:
        decider, history = make(dead, MemoryFactsStore(TEST_FACTS_KEY), clock)
        body = hook_body(amount="1500")  # a custom step: the dead store fails it
        first = await send(decider, body)
        await history.background.drain()
        again = await send(decider, body)
    finally:
        await dead.aclose()
    assert (first.decision.rule, first.replay) == ("on_error", False)
    assert (again.decision.rule, again.replay) == ("on_error", True)


async def test_outside_the_window_or_with_another_signature_it_is_an_attempt(
    stores: tuple[Store, FactsStore], clock: FakeClock
) -> None:
    decider, history = make(*stores, clock, window=600)
    body = hook_body(amount="20")
    answers = []
    for signature, wait in ((SIG, 0), (SIG, 600), ("rsassa-pss-sha256=another", 0)):
        clock.advance(wait)
        answers.append(await send(decider, body, signature))
        await history.background.drain()
    assert [a.replay for a in answers] == [False, False, False]
    assert await attempts_so_far(stores[1], clock) == 3


async def test_without_signature_checks_the_body_alone_is_compared(clock: FakeClock) -> None:
    decider, history = make(MemoryStore(clock), MemoryFactsStore(TEST_FACTS_KEY), clock)
    body = hook_body(amount="20")
    first = await send(decider, body, None)
    await history.background.drain()
    again = await send(decider, body, None)
    other = hook_body(amount="21")
    third = await send(decider, other, None)
    assert (first.replay, again.replay, third.replay) == (False, True, False)


async def test_a_window_of_zero_turns_the_replay_check_off(clock: FakeClock) -> None:
    facts = MemoryFactsStore(TEST_FACTS_KEY)
    decider, history = make(MemoryStore(clock), facts, clock, window=0)
    body = hook_body(amount="20")
    for _ in range(3):
        assert not (await send(decider, body)).replay
    await history.background.drain()
    assert await attempts_so_far(facts, clock) == 3


async def test_a_policy_without_facts_never_observes(clock: FakeClock) -> None:
    spy = Spy()
    policy = Policy.from_mapping({**KYC_POLICY, "default": {"status": "continue"}})
    decider, history = make(MemoryStore(clock), spy, clock, policy=policy)
    for scope in ("loan:write", "other:scope"):
        body = hook_body(scope=scope)
        await send(decider, body)
    await history.background.drain()
    assert spy.calls == ["record", "record"]
    # The example policy observes only transfer:write, never profile:read.
    spy.calls.clear()
    decider, history = make(MemoryStore(clock), spy, clock)
    for scope in ("profile:read", "transfer:write"):
        await decider.answer(parse_hook_request(hook_body(scope=scope, amount="20")))
    await history.background.drain()
    assert sorted(spy.calls) == ["observe", "record"]  # the record in the background


@pytest.mark.redis
async def test_a_hung_store_answers_on_error_within_the_budget_for_a_facts_scope(
    redis_server: RedisServer, redis_url: str, clock: FakeClock
) -> None:
    assert RECORD_TIMEOUT < 1.0  # facts and pending steps together stay under 1 s
    # The stores' own timeouts are far longer than the budget: the budget decides.
    store = RedisStore(redis_url, sealer=token_sealer(), clock=clock, timeout=10)
    facts = RedisFactsStore(redis_url, key=TEST_FACTS_KEY, timeout=10)
    decider, _ = make(store, facts, clock)
    try:
        await facts.ping()
        redis_server.pause()
        try:
            started = time.monotonic()
            decided = await decider.answer(parse_hook_request(hook_body(amount="20")))
            elapsed = time.monotonic() - started
        finally:
            redis_server.resume()
    finally:
        await store.aclose()
        await facts.aclose()
    assert (decided.decision.rule, decided.decision.error) == ("on_error", "store timed out")
    assert elapsed < 5  # the budget, not the stores' 10 s


@pytest.mark.redis
async def test_a_hung_store_neither_delays_nor_changes_a_scope_without_facts(
    redis_server: RedisServer, redis_url: str, clock: FakeClock
) -> None:
    store = RedisStore(redis_url, sealer=token_sealer(), clock=clock, timeout=10)
    facts = RedisFactsStore(redis_url, key=TEST_FACTS_KEY, timeout=10)
    decider, history = make(store, facts, clock, background=Background(timeout=10))
    try:
        await facts.ping()
        redis_server.pause()
        try:
            body = hook_body(scope="profile:read")
            decided = await send(decider, body)
            assert len(history.background) == 1  # recording, not waited for
        finally:
            redis_server.resume()
        await history.background.drain(timeout=10)
        assert (decided.decision.rule, decided.decision.status) == ("allow", "continue")
        assert await attempts_so_far(facts, clock) == 1  # recorded once the store answered
    finally:
        await store.aclose()
        await facts.aclose()


async def test_background_writes_are_bounded_and_drained() -> None:
    background = Background(timeout=10, limit=2)
    hang = asyncio.Event()
    for _ in range(3):
        background.run("record", hang.wait)
    assert (len(background), background.dropped) == (2, 1)
    await background.drain(timeout=0.01)  # shutdown: what is left is cancelled
    assert len(background) == 0
    timed_out = Background(timeout=0.01)
    timed_out.run("record", hang.wait)
    await timed_out.drain()
    assert len(timed_out) == 0


def test_a_replayed_answer_decodes_to_the_same_body_and_revision() -> None:
    steps = (Step(1, "verify_sms", 600), Step(2, "kyc_review", 86400))
    decision = Decision("review", "single-use", 300, steps, "large-transfer", revision="r" * 64)
    answered = decode_answer(encode_answer(decision, ("kyc_review",), 1234.5))
    assert answered.decision == decision
    assert answered.decision.revision == "r" * 64
    # The replay answer is sent from its body: the same bytes as the first answer.
    assert answered.decision.body == decision.body
    assert json.loads(answered.decision.body)["steps"][1]["key"] == "kyc_review"
    failed = replace(decision, status="block", steps=(), rule="on_error", error="store down")
    again = decode_answer(encode_answer(failed, (), 1.0)).decision
    assert again.error == "store down" and again.body == failed.body


def test_replays_of_one_answer_share_one_decision_and_each_keeps_its_own_steps() -> None:
    steps = (Step(1, "verify_sms", 600), Step(2, "kyc_review", 86400))
    decision = Decision("review", "single-use", 300, steps, "large-transfer", revision="r" * 64)
    first = decode_answer(encode_answer(decision, ("kyc_review",), 1234.5))
    second = decode_answer(encode_answer(decision, ("kyc_review",), 9999.0))
    # The decision is shared (its body encoded once); what differs per request does not.
    assert first.decision is second.decision
    assert (first.until, second.until) == (1234.5, 9999.0)
    other = decode_answer(encode_answer(replace(decision, granted_for=301), (), 1.0))
    assert other.decision is not first.decision
    assert json.loads(other.decision.body)["granted_for"] == 301
    assert other.custom == ()


@pytest.mark.parametrize(
    "record",
    [
        '{"s":"continue","g":"single-use","f":300,"t":[],"r":"x","c":[],"u":1,"e":["no"]}',
        '{"s":"continue","g":"single-use","f":300,"t":[[1,"a"]],"r":"x","c":[],"u":1}',
        '{"s":"continue","g":"single-use","f":"many","t":[],"r":"x","c":[],"u":1}',
        '{"s":"continue","g":"single-use","f":300,"t":[],"r":"x","c":[]}',
        '{"s":"continue","g":"single-use","f":1e400,"t":[],"r":"x","c":[],"u":1}',
        '{"s":"continue","g":"single-use","f":Infinity,"t":[],"r":"x","c":[],"u":1}',
        "[" * 100_000 + "]" * 100_000,
        "[]",
        # A lone surrogate: the body cannot be encoded.
        '{"s":"continue\ud800","g":"single-use","f":300,"t":[],"r":"x","c":[],"u":1}',
        # Rules no policy can name (KEY_PATTERN), which X-Hook-Rule could not carry as is.
        '{"s":"continue","g":"single-use","f":300,"t":[],"r":"\u2603","c":[],"u":1}',
        '{"s":"continue","g":"single-use","f":300,"t":[],"r":"a b","c":[],"u":1}',
        '{"s":"continue","g":"single-use","f":300,"t":[],"r":"","c":[],"u":1}',
        # Answers no policy can give (policy/schema.py, contract 3).
        '{"s":"maybe","g":"single-use","f":300,"t":[],"r":"x","c":[],"u":1}',
        '{"s":"continue","g":"forever","f":300,"t":[],"r":"x","c":[],"u":1}',
        '{"s":"continue","g":"single-use","f":0,"t":[],"r":"x","c":[],"u":1}',
        '{"s":"continue","g":"single-use","f":86401,"t":[],"r":"x","c":[],"u":1}',
        '{"s":"review","g":"single-use","f":300,"t":[],"r":"x","c":[],"u":1}',
        '{"s":"block","g":"single-use","f":300,"t":[[1,"verify_sms",600]],"r":"x","c":[],"u":1}',
        '{"s":"review","g":"single-use","f":300,"t":[[2,"verify_sms",600]],"r":"x","c":[],"u":1}',
        '{"s":"review","g":"single-use","f":300,"t":[[1,"verify_sms",0]],"r":"x","c":[],"u":1}',
        '{"s":"review","g":"single-use","f":300,"t":[[1,"a b",600]],"r":"x","c":[],"u":1}',
    ],
)
def test_a_malformed_replay_record_is_a_value_error(record: str) -> None:
    with pytest.raises(ValueError, match="malformed replay record"):
        decode_answer(record)
