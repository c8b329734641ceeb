"""Helpers shared by the store tests (``test_store.py``, ``test_redisstore.py``)."""

from __future__ import annotations

import secrets
from typing import Protocol

from hook_service.store.base import Claimed, PendingStep, Store
from hook_service.tokens.base import IssuedToken
from tests.support import FakeClock


class RedisServer(Protocol):
    """What these tests use of conftest's ``redis_server`` / ``redis_server_factory`` servers."""

    port: int

    @property
    def url(self) -> str: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


def pending(
    clock: FakeClock, *, user_id: str = "usr_1", key: str = "kyc_review", ttl: float = 600
) -> PendingStep:
    return PendingStep(user_id=user_id, key=key, scope="transfer:write", expires_at=clock() + ttl)


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


async def claim(store: Store, clock: FakeClock, token: IssuedToken) -> Claimed:
    claimed = await store.claim(token.user_id, token.key, token, clock())
    assert claimed is not None  # None only answers a key-set guard, and none was given
    return claimed
