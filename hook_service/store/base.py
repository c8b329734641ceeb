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

import hashlib
import math
from base64 import urlsafe_b64encode
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from hook_service.tokens.base import IssuedToken


class Claimed(NamedTuple):
    """What a claim gives: the ``token`` to hand out, whether this call stored it (``fresh``,
    True) or a retry of the same challenge got the stored one back (False), and the ``scope``
    the pending step was recorded for (a first token is proof for that scope's attempt,
    design.md "Facts")."""

    token: IssuedToken
    fresh: bool
    scope: str


@dataclass(frozen=True, slots=True)
class UserRecords:
    """What a store holds for one user (``GET /admin/users/{user_id}/facts``): pending steps
    not yet claimed, and records of issued tokens still kept (until the later of the step's
    and the token's expiry)."""

    pending_steps: int = 0
    issued_tokens: int = 0


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

    async def claim(
        self,
        user_id: str,
        key: str,
        issued: IssuedToken,
        now: float,
        guard: KeySetGuard | None = None,
    ) -> Claimed | None:
        """Consume the pending step for ``issued``; see the module docstring.

        Returns ``(issued, True, scope)`` on first use and ``(stored token, False, scope)`` to
        a retry by the same challenge while that token is valid, and None (nothing claimed)
        when ``guard`` does not hold: the key set changed, so the caller signs again. Raises
        ``errors.StepAlreadyUsed`` for another challenge or an expired stored token and
        ``errors.NoPendingStep`` if missing or expired. A store that cannot check a guard
        (the in-memory one) raises ``ValueError`` when given one.
        """

    async def user_records(self, user_id: str, now: float) -> UserRecords:
        """Count the records of ``user_id`` that are alive at ``now``."""

    async def erase_user(self, user_id: str) -> int:
        """Delete every record of ``user_id`` (pending steps and issued-token records, alive or
        not yet swept); returns how many were deleted. Records of any other user, whatever
        their id (``*``, ``?``, ``[`` included), are untouched."""

    async def ping(self) -> None:
        """Raise ``errors.StoreUnavailable`` when the backend cannot be reached."""

    async def aclose(self) -> None:
        """Release connections."""


def user_tag(user_id: str) -> str:
    """A fixed-size tag for ``user_id`` (128-bit BLAKE2b, unpadded base64url): what the Redis
    store's keys and the privacy endpoints' logs name a user by, never the id itself."""
    data = user_id.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=16, person=b"hook-user").digest()
    return urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_issued(user_id: str, key: str, issued: IssuedToken) -> None:
    # A token minted for another (user, key) must never be stored under this record.
    if issued.user_id != user_id or issued.key != key:
        raise ValueError("issued token does not belong to this user_id and key")


NO_PENDING = "no pending step for this user and key (never asked for, or expired)"
ALREADY_USED = "this step has already yielded a token to another challenge"
