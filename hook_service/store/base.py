"""Pending custom steps and the one token each may yield (design.md "POST /verification-token").

When the hook answers ``review`` with a custom step, the endpoint records a :class:`PendingStep`
for ``(user_id, key)``. ``POST /verification-token`` later mints a token and calls
:meth:`Store.claim`, which consumes the step atomically: one pending step yields one token, a
retry with the same ``challenge_id`` gets that same token back, anything else is refused.

Two implementations share the semantics: :class:`~hook_service.store.memory.MemoryStore`
(one process) and :class:`~hook_service.store.redis.RedisStore` (several processes/hosts
sharing one Redis server; ``claim`` is one Lua script, so single use holds across instances).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hook_service.tokens.base import IssuedToken

Claimed = tuple[IssuedToken, bool]
"""What a claim gives: the token to hand out and whether this call stored it (True) or a retry
of the same challenge got the stored one back (False)."""


@dataclass(frozen=True, slots=True)
class PendingStep:
    """A custom step the hook asked for; claimable until ``expires_at`` (Unix seconds)."""

    user_id: str
    key: str
    scope: str
    expires_at: float

    def __post_init__(self) -> None:
        if not self.user_id or not self.key:
            raise ValueError("PendingStep needs a non-empty user_id and key")
        if not math.isfinite(self.expires_at):
            raise ValueError("PendingStep.expires_at must be a finite number")


@dataclass(frozen=True, slots=True)
class KeySetGuard:
    """A condition on a claim: the Redis key ``redis_key`` (the shared key set's version, see
    :class:`~hook_service.keys.backends.base.VersionedKeyStore`) still holds ``version``, the
    version of the set that signed. Checked in the claim's own script, so no revocation can
    slip in between. Only :class:`~hook_service.tokens.guards.VersionInClaim`, the issuer's
    claim guard for a key set on the store's own Redis, asks for it."""

    redis_key: str
    version: int


class Store(Protocol):
    """Pending steps and their tokens. Every backend failure raises ``errors.StoreUnavailable``."""

    async def put_pending(self, steps: Sequence[PendingStep]) -> None:
        """Record ``steps`` all-or-nothing, replacing any older record for each (user_id, key)."""

    async def ensure_pending(self, steps: Sequence[PendingStep]) -> None:
        """Record each of ``steps`` that has no live record (pending or claimed) for its
        (user_id, key): never replaces a record, never extends one (issue 11 point 3, a
        replay). A claimed record lives until its pending expiry and its token's, so a step
        given the expiry of the decision that claimed it can never be re-opened."""

    async def claim(
        self,
        user_id: str,
        key: str,
        issued: IssuedToken,
        now: float,
        guard: KeySetGuard | None = None,
    ) -> Claimed | None:
        """Consume the pending step for ``issued``; see the module docstring.

        Returns ``(issued, True)`` on first use and ``(stored token, False)`` to a retry by the
        same challenge while that token is valid, and None (nothing claimed) when ``guard``
        does not hold: the key set changed, so the caller signs again. Raises
        ``errors.StepAlreadyUsed`` for another challenge or an expired stored token and
        ``errors.NoPendingStep`` if missing or expired. A store that cannot check a guard
        (the in-memory one) raises ``ValueError`` when given one.
        """

    async def ping(self) -> None:
        """Raise ``errors.StoreUnavailable`` when the backend cannot be reached."""

    async def aclose(self) -> None:
        """Release connections."""


def check_issued(user_id: str, key: str, issued: IssuedToken) -> None:
    # A token minted for another (user, key) must never be stored under this record.
    if issued.user_id != user_id or issued.key != key:
        raise ValueError("issued token does not belong to this user_id and key")


NO_PENDING = "no pending step for this user and key (never asked for, or expired)"
ALREADY_USED = "this step has already yielded a token to another challenge"
