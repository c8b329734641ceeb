"""Pending steps in the bench's Redis, recorded through the service's own
:class:`~hook_service.store.redis.RedisStore` (the records the hook writes): the steps the
token pools claim, each token request finding its step as after a real hook call, and the
pending-step figure, what one step costs in Redis memory (goal: at most 300 B).

Like bench/facts.py for the users' history: the Redis part of the figures, no processes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

from redis.asyncio import Redis

from hook_service._redis_target import RedisTarget
from hook_service.collaborators import AT_REST_LABEL
from hook_service.keys.backends.keyring import keyring
from hook_service.store.base import PendingStep
from hook_service.store.redis import RedisStore

from . import prepare
from .load import BenchError

REDIS_STEPS = 100_000
STEP_TTL = 3600.0
CLUSTER_WRITES = 40  # concurrent writes on a cluster (the store's pool: 50 per node)


def _steps(users: list[str]) -> Iterator[list[PendingStep]]:
    expires_at = time.time() + STEP_TTL
    for start in range(0, len(users), 1000):
        yield [
            PendingStep(
                user_id=user, key="kyc_review", scope="transfer:write", expires_at=expires_at
            )
            for user in users[start : start + 1000]
        ]


async def record_pending(url: RedisTarget | str, users: list[str]) -> None:
    # Through the service's own RedisStore: the same records the hook writes.
    # It only records steps: a throwaway KEK seals the tokens it never claims.
    sealer = keyring([secrets.token_bytes(32)]).cipher(AT_REST_LABEL)
    cluster = isinstance(url, RedisTarget) and url.cluster
    store = RedisStore(url, sealer=sealer, timeout=5.0)
    try:
        for batch in _steps(users):
            if not cluster:
                await store.put_pending(batch)
                continue
            # On a cluster one write holds one user's steps (one slot): a write per user,
            # as many at once as the per-node pool allows.
            for start in range(0, len(batch), CLUSTER_WRITES):
                chunk = batch[start : start + CLUSTER_WRITES]
                await asyncio.gather(*(store.put_pending([step]) for step in chunk))
    finally:
        await store.aclose()


async def bytes_per_step(url: str) -> float:
    """``used_memory`` growth of the Redis at ``url`` (a fresh one) per pending step, for
    :data:`REDIS_STEPS` steps of as many users recorded with :func:`record_pending`."""
    client = Redis.from_url(url)  # a plain client for INFO; the records go through RedisStore
    try:
        before = int((await client.info("memory"))["used_memory"])
        await record_pending(url, [prepare.user_id(i) for i in range(REDIS_STEPS)])
        after = int((await client.info("memory"))["used_memory"])
        if await client.dbsize() != REDIS_STEPS:
            raise BenchError("Redis does not hold one record per pending step")
        return (after - before) / REDIS_STEPS
    finally:
        await client.aclose()
