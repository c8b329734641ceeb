"""Helpers shared by the store tests (``test_store.py``, ``test_redis.py``)."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

import pytest
from redis.crc import key_slot

from hook_service._redis_target import RedisTarget
from hook_service.store import redis_scripts
from hook_service.store.base import Claimed, PendingStep, Store
from hook_service.store.redis import RedisStore
from hook_service.tokens.base import IssuedToken
from tests.support import FakeClock, is_cluster, token_sealer


def user_in_one_slot(prefix: str = "hook:") -> bool:
    """Whether a user's pending steps and tokens share one cluster slot (their keys carry one
    hash tag per user), as the store's two scripts need on a Redis Cluster."""
    keys = [
        redis_scripts.record_key(prefix, "usr_1", "kyc_review"),
        redis_scripts.record_key(prefix, "usr_1", "verify_sms"),
        redis_scripts.token_key(prefix, "usr_1", "kyc_review", "chl_1"),
    ]
    return len({key_slot(k.encode()) for k in keys}) == 1


ON_CLUSTER = [
    pytest.mark.slow,
    # The per-user hash tag of the store's keys is another change (store/redis_scripts.py);
    # until it lands a claim on a cluster is refused as CROSSSLOT. Off by itself after it.
    pytest.mark.xfail(
        not user_in_one_slot(),
        reason="the store's keys carry no per-user hash tag yet: CROSSSLOT on a cluster",
        strict=False,
    ),
]
"""The marks of a store test on the Redis Cluster."""


class RedisServer(Protocol):
    """What these tests use of conftest's ``redis_server`` / ``redis_server_factory`` servers."""

    port: int

    @property
    def url(self) -> str: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


def redis_store(url: RedisTarget | str, clock: FakeClock, **options: Any) -> RedisStore:
    """A :class:`RedisStore` on ``url`` (a node of the tests' cluster, or a Sentinel target)
    sealing tokens as the service does (``TEST_KEK``)."""
    cluster = isinstance(url, str) and is_cluster(url)
    return RedisStore(url, sealer=token_sealer(), clock=clock, cluster=cluster, **options)


def pending(
    clock: FakeClock,
    *,
    user_id: str = "usr_1",
    key: str = "kyc_review",
    ttl: float = 600,
    scope: str = "transfer:write",
    origin: str = "",
) -> PendingStep:
    """A pending step; ``origin=""`` (the default) counts as a new decision every time."""
    return PendingStep(
        user_id=user_id, key=key, scope=scope, expires_at=clock() + ttl, origin=origin
    )


def issued(
    clock: FakeClock,
    *,
    challenge_id: str = "chl_1",
    user_id: str = "usr_1",
    key: str = "kyc_review",
    ttl: int = 300,
) -> IssuedToken:
    return IssuedToken(
        token=f"eyJhbGciOiJSUzI1NiJ9.{secrets.token_urlsafe(32)}.sig",
        jti=secrets.token_urlsafe(16),
        kid="kid-1",
        expires_at=int(clock()) + ttl,
        challenge_id=challenge_id,
        user_id=user_id,
        key=key,
    )


async def claim(
    store: Store, clock: FakeClock, token: IssuedToken, scope: str | None = None
) -> Claimed:
    claimed = await store.claim(token.user_id, token.key, token, clock(), scope=scope)
    assert claimed is not None  # None only answers a key-set guard, and none was given
    return claimed
