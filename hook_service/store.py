"""Pending custom steps and the one token each may yield (design.md "POST /verification-token").

When the hook answers ``review`` with a custom step, the endpoint records a :class:`PendingStep`
for ``(user_id, key)``. ``POST /verification-token`` later mints a token and calls
:meth:`Store.claim`, which consumes the step atomically: one pending step yields one token, a
retry with the same ``challenge_id`` gets that same token back, anything else is refused.

Two implementations share the semantics: :class:`MemoryStore` (one process) and
:class:`~hook_service.redisstore.RedisStore` (several processes/hosts sharing one Redis server;
``claim`` is one Lua script, so single use holds across instances).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from . import errors
from .clock import Clock, system_clock
from .tokens import IssuedToken

_SWEEP_INTERVAL = 60.0  # seconds between MemoryStore sweeps of dead records


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
    :mod:`hook_service.rediskeystore`) still holds ``version``, the version of the set that
    signed. Checked in the claim's own script, so no revocation can slip in between."""

    redis_key: str
    version: int


class Store(Protocol):
    """Pending steps and their tokens. Every backend failure raises ``errors.StoreUnavailable``."""

    async def put_pending(self, steps: Sequence[PendingStep]) -> None:
        """Record ``steps`` all-or-nothing, replacing any older record for each (user_id, key)."""

    redis_url: str | None
    """The Redis that :meth:`claim` runs on (None for the in-memory store): a
    :class:`KeySetGuard` only means something for a key set kept on this same Redis."""

    async def claim(
        self,
        user_id: str,
        key: str,
        issued: IssuedToken,
        now: float,
        guard: KeySetGuard | None = None,
    ) -> tuple[IssuedToken, bool]:
        """Consume the pending step for ``issued``; see the module docstring.

        Returns ``(issued, True)`` on first use and ``(stored token, False)`` to a retry by the
        same challenge while that token is valid. Raises ``errors.StepAlreadyUsed`` for another
        challenge or an expired stored token, ``errors.NoPendingStep`` if missing or expired,
        and ``errors.KeySetChanged`` (nothing claimed) when ``guard`` does not hold.
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


@dataclass(slots=True)
class _Record:
    scope: str
    expires_at: float
    used: IssuedToken | None = None

    @property
    def end(self) -> float:
        # Contract: record lifetime after claim is max(pending expiry, token expiry).
        return self.expires_at if self.used is None else max(self.expires_at, self.used.expires_at)


class MemoryStore:
    """In-process store (the embedded default). Safe for one event loop or several threads:
    every operation runs under a lock without awaiting, so check-and-set is atomic."""

    redis_url: str | None = None

    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()
        self._next_sweep = clock() + _SWEEP_INTERVAL

    def __len__(self) -> int:
        """Number of records held (dead ones linger until the next sweep)."""
        return len(self._records)

    def __repr__(self) -> str:
        return f"MemoryStore(records={len(self._records)})"

    async def put_pending(self, steps: Sequence[PendingStep]) -> None:
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                # Bounded memory without a timer task: drop dead records once a minute.
                self._records = {k: r for k, r in self._records.items() if r.end > now}
                self._next_sweep = now + _SWEEP_INTERVAL
            for step in steps:
                if step.expires_at > now:
                    self._records[step.user_id, step.key] = _Record(step.scope, step.expires_at)
                else:  # an already-expired step still overwrites (removes) the old record
                    self._records.pop((step.user_id, step.key), None)

    async def claim(
        self,
        user_id: str,
        key: str,
        issued: IssuedToken,
        now: float,
        guard: KeySetGuard | None = None,
    ) -> tuple[IssuedToken, bool]:
        if guard is not None:
            raise ValueError("the in-memory store cannot check a shared key set")
        check_issued(user_id, key, issued)
        with self._lock:
            record = self._records.get((user_id, key))
            if record is None or now >= record.end:
                raise errors.NoPendingStep(NO_PENDING)
            if record.used is None:
                record.used = issued
                return issued, True
            if record.used.challenge_id == issued.challenge_id and now < record.used.expires_at:
                return record.used, False
            raise errors.StepAlreadyUsed(ALREADY_USED)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
