"""Replay records in both facts stores (issue 11 point 3): a request seen again within its
window is answered from its record and adds nothing to the history."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis

from hook_service.facts.base import Facts, FactsStore, Once, Replay
from hook_service.facts.redis import RedisFactsStore
from tests.facts.support import KEY, Requests
from tests.support import FakeClock

pytestmark = pytest.mark.anyio

USER = "usr_1"
WINDOW = 600


@pytest.fixture
def req(clock: FakeClock) -> Requests:
    return Requests(clock)


def once(text: str = "request-1", answer: str = "") -> Once:
    return Once(KEY.request(text.encode(), "sig"), WINDOW, answer)


async def test_a_replay_flood_moves_no_counter(store: FactsStore, req: Requests) -> None:
    first = await store.observe_once(USER, req.attempt(), req.clock(), once())
    assert isinstance(first, Facts) and first.attempts_1h == 0
    await store.settle(USER, req.attempt(), req.clock(), once(answer="the first answer"))
    replies = await asyncio.gather(
        *(store.observe_once(USER, req.attempt(), req.clock(), once()) for _ in range(50))
    )
    assert replies == [Replay("the first answer")] * 50
    assert await store.record(USER, req.attempt(), req.clock(), once()) == Replay(
        "the first answer"
    )
    facts = await store.observe(USER, req.attempt(), req.clock())
    assert (facts.attempts_1h, facts.attempts_24h) == (1, 1)  # only the first counted


async def test_concurrent_copies_count_once(store: FactsStore, req: Requests) -> None:
    results = await asyncio.gather(
        *(store.observe_once(USER, req.attempt(), req.clock(), once()) for _ in range(8))
    )
    assert sum(isinstance(r, Facts) for r in results) == 1
    assert [r for r in results if isinstance(r, Replay)] == [Replay("")] * 7  # undecided yet


async def test_outside_the_window_it_is_an_ordinary_attempt(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    await store.observe_once(USER, req.attempt(), clock(), once(answer="a"))
    clock.advance(WINDOW - 1)
    assert await store.observe_once(USER, req.attempt(), clock(), once()) == Replay("a")
    clock.advance(1)
    again = await store.observe_once(USER, req.attempt(), clock(), once(answer="b"))
    assert isinstance(again, Facts) and again.attempts_1h == 1
    assert await store.observe_once(USER, req.attempt(), clock(), once()) == Replay("b")


async def test_another_body_or_signature_is_another_request(
    store: FactsStore, req: Requests
) -> None:
    digests = {
        KEY.request(b"body", "sig"),
        KEY.request(b"body", "sig2"),
        KEY.request(b"body2", "sig"),
        KEY.request(b"body", None),
        KEY.request(b"sigbody", ""),
    }
    assert len(digests) == 5
    for digest in digests:
        result = await store.observe_once(USER, req.attempt(), req.clock(), Once(digest, WINDOW))
        assert isinstance(result, Facts)
    # Per user: the same digest for another user is that user's first.
    other = await store.observe_once("usr_2", req.attempt(), req.clock(), once())
    mine = await store.observe_once(USER, req.attempt(), req.clock(), once())
    assert isinstance(other, Facts) and isinstance(mine, Facts)


async def test_settle_keeps_the_end_of_the_record(
    store: FactsStore, req: Requests, clock: FakeClock
) -> None:
    attempt = req.attempt()
    await store.observe_once(USER, attempt, clock(), once())
    clock.advance(WINDOW - 10)
    await store.settle(USER, attempt, clock(), once(answer="late"))
    assert await store.observe_once(USER, req.attempt(), clock(), once()) == Replay("late")
    clock.advance(10)
    assert isinstance(await store.observe_once(USER, req.attempt(), clock(), once()), Facts)


async def test_a_recorded_answer_is_the_replay_answer(store: FactsStore, req: Requests) -> None:
    assert await store.record(USER, req.attempt(), req.clock(), once(answer="decided")) is None
    assert await store.record(USER, req.attempt(), req.clock(), once()) == Replay("decided")


async def test_erasure_removes_replay_records(store: FactsStore, req: Requests) -> None:
    await store.observe_once(USER, req.attempt(), req.clock(), once(answer="x"))
    await store.erase(USER, req.clock())
    assert isinstance(await store.observe_once(USER, req.attempt(), req.clock(), once()), Facts)


@pytest.mark.redis
async def test_redis_replay_records_carry_the_user_tag_and_expire(
    redis_url: str, clock: FakeClock
) -> None:
    raw = aredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisFactsStore(raw, key=KEY)
    req = Requests(clock)
    try:
        for n in range(3):
            await store.observe_once(USER, req.attempt(), clock(), once(f"r{n}", "x"))
        key = store.replay_key(USER)
        assert f"{{{KEY.user(USER)}}}" in key
        assert await raw.hlen(key) == 3
        assert 0 < await raw.pttl(key) <= WINDOW * 1000
        clock.advance(WINDOW)
        await store.observe_once(USER, req.attempt(), clock(), once("r9", "y"))
        assert await raw.hlen(key) == 1  # the three past their end are dropped
        stored = " ".join(str(v) for v in await raw.hvals(key))
        assert "r9" not in stored and "81.2.69" not in stored
    finally:
        await raw.aclose()
