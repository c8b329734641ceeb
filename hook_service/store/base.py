"""Pending custom steps and the tokens they yield (design.md "POST /verification-token").

When the hook answers ``review`` with a custom step, it records a :class:`PendingStep` for
``(user_id, key)``. ``POST /verification-token`` later mints a token and calls
:meth:`Store.claim`, which consumes the step atomically and keeps the token for the claiming
challenge. The semantics, identical in both stores:

* **One pending step per (user_id, key), one token per pending step.** A claim consumes the
  pending step for one challenge; another challenge then gets ``StepAlreadyUsed``.
* **A claimed token belongs to its challenge until it expires** (issue 10, point 5): a retry
  by the same challenge gets the very token it was issued, whatever later hooks record for the
  same user and step. Tokens are kept per ``(user_id, key, challenge_id)``, apart from the
  pending step, so a new decision that re-arms the step never touches them.
* **A pending step never outlives the expiry its decision computed.** Each step carries the
  ``origin`` of the hook request that decided it: a replay of that request (same origin)
  changes nothing, neither extending the expiry nor re-arming a consumed step; a new request
  (another origin) replaces the pending step with its own.
* **A write either lands within its budget or not at all** (issue 10, point 4):
  ``put_pending(..., within=s)`` is refused by the store once ``s`` seconds have passed, so a
  hook that gave up on a slow store and answered ``on_error`` leaves nothing behind.

Two implementations: :class:`~hook_service.store.memory.MemoryStore` (one process) and
:class:`~hook_service.store.redis.RedisStore` (several processes/hosts sharing one Redis
server; each operation is one Lua script, so single use holds across instances).
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
    not yet claimed, and the issued tokens kept for their challenges' retries (until each
    token's expiry)."""

    pending_steps: int = 0
    issued_tokens: int = 0


@dataclass(frozen=True, slots=True)
class PendingStep:
    """A custom step the hook asked for; claimable until ``expires_at`` (Unix seconds).

    ``origin`` names the hook request whose decision created the step (a digest of its signed
    bytes, :func:`~hook_service.hook.stepup.request_origin`); ``""`` is never equal to another
    origin, so such a step always counts as a new decision."""

    user_id: str
    key: str
    scope: str
    expires_at: float
    origin: str = ""

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


class TokenSealer(Protocol):
    """Encryption of the tokens a shared store keeps at rest (issue 10, point 8):
    :class:`~hook_service.keys.backends.keyring.DataCipher` under the KEKs."""

    def seal(self, data: bytes, aad: bytes) -> str:
        """``data`` encrypted and bound to ``aad`` (the record's name), as text."""
        ...

    def open(self, sealed: str, aad: bytes) -> bytes:
        """The data of :meth:`seal`; raises ``DecryptError`` if it does not open."""
        ...


class Store(Protocol):
    """Pending steps and their tokens. Every backend failure raises ``errors.StoreUnavailable``."""

    async def put_pending(
        self, steps: Sequence[PendingStep], *, within: float | None = None
    ) -> None:
        """Record ``steps`` all-or-nothing (see the module docstring for a step already
        recorded). They are one decision's, so one user's: on a Redis Cluster one write
        touches one user's hash slot. With ``within``, the write is refused
        (``errors.StoreUnavailable``) unless it takes effect within that many seconds from
        now."""

    async def ensure_pending(
        self, steps: Sequence[PendingStep], *, within: float | None = None
    ) -> None:
        """Record each of ``steps`` that has no live record (pending or claimed) for its
        (user_id, key): never replaces a record, never extends one (issue 11 point 3, a
        replay). A claimed step keeps its record until its pending expiry, so a step given
        the expiry of the decision that claimed it can never be re-opened; ``within`` as for
        :meth:`put_pending`."""

    async def claim(
        self,
        user_id: str,
        key: str,
        issued: IssuedToken,
        now: float,
        guard: KeySetGuard | None = None,
        *,
        scope: str | None = None,
    ) -> Claimed | None:
        """Consume the pending step for ``issued``; see the module docstring.

        Returns ``(issued, True, scope)`` on first use and ``(stored token, False, scope)`` to
        a retry by the same challenge while that token is valid (``scope``: what the step was
        recorded for), and None (nothing claimed) when ``guard`` does not hold: the key set
        changed, so the caller signs again. With ``scope``, the step must have been recorded
        for that scope (the challenge's ``scope_requested``), compared in the same atomic
        operation. Raises ``errors.StepAlreadyUsed`` when the step was consumed by another
        challenge (or by this one, whose token has expired) and ``errors.NoPendingStep`` if
        missing, expired or recorded for another scope. A store that cannot check a guard
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


def wrong_scope(key: str, requested: str, recorded: str) -> str:
    """Why a challenge for scope ``requested`` cannot claim the ``key`` step recorded for
    ``recorded``: the detail of that ``NoPendingStep`` (404: no step is pending for the
    challenge's scope; the user starts again)."""
    return (
        f"the challenge is for scope {requested!r}, but the pending {key!r} step was recorded "
        f"for scope {recorded!r}"
    )


NO_PENDING = "no pending step for this user and key (never asked for, or expired)"
ALREADY_USED = "this step has already yielded a token to another challenge"
LATE_WRITE = "the store answered after the write's deadline; nothing was recorded"
