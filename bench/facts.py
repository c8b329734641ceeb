"""The facts figures' Redis part: users given a month of typical history through the
service's own :class:`~hook_service.facts.redis.RedisFactsStore`, and what they cost in Redis
memory (issue 11 point 6: at most 2 KB per active user)."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from hook_service.facts.attempts import AttemptFactory
from hook_service.facts.base import REVIEW, Proof
from hook_service.facts.device import DeviceKeys
from hook_service.facts.geo import Geo
from hook_service.facts.hashing import FactsKey
from hook_service.facts.redis import RedisFactsStore

from . import prepare
from .load import BenchError

FACTS_USERS = 500  # users given a month of history for the Redis memory figure


async def record_month(store: RedisFactsStore, attempts: AttemptFactory, index: int) -> None:
    """User ``index``'s :func:`prepare.typical_month` through the service's own facts store,
    ending now: each attempt observed, and the passed ones settled and proved."""
    history = prepare.typical_month(index)
    now = time.time() - sum(step.after for step in history)
    user = prepare.user_id(index)
    for step in history:
        now += step.after
        signals = {"ip": step.ip, "user_agent": step.user_agent, "platform": "WEB"}
        attempt = attempts.attempt(step.scope, signals, now)
        await store.observe(user, attempt, now)
        if step.proof is not None:
            steps = (step.proof,) if step.proof else ()
            await store.settle(user, attempt.settled(REVIEW, steps, now + 600), now)
            await store.prove(user, Proof(step.scope, step.proof or None), now)


async def bytes_per_user(url: str, facts_key: str, users: int = FACTS_USERS) -> float:
    """``used_memory`` growth of the Redis at ``url`` (a fresh one) per user, for ``users``
    users with :func:`record_month`; replay records (gone after 10 minutes) not included.

    One more user is given the same month and erased first: Redis 7 allocates a latency
    histogram (about 25 KB, ``latency-tracking``) for each command the first time it runs,
    scripts' ``redis.call`` included, which is a cost per server, not per user (about
    900 B per user of 500 when counted in)."""
    client = Redis.from_url(url)
    store = RedisFactsStore(client, key=FactsKey.from_base64(facts_key), timeout=5.0)
    attempts = AttemptFactory(FactsKey.from_base64(facts_key), DeviceKeys(), Geo())
    try:
        await record_month(store, attempts, users)  # the warm-up user, never counted
        await store.erase(prepare.user_id(users), time.time())
        before = int((await client.info("memory"))["used_memory"])
        for index in range(users):
            await record_month(store, attempts, index)
        after = int((await client.info("memory"))["used_memory"])
        if await client.dbsize() < 3 * users:  # history, times, latest per user
            raise BenchError("Redis does not hold the users' history")
        return (after - before) / users
    finally:
        await client.aclose()
