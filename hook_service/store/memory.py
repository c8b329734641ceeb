"""The in-memory :class:`~hook_service.store.base.Store`: one process, ``--dev`` and tests.

Same semantics as the Redis store (:mod:`hook_service.store.base`): pending steps per
``(user_id, key)``, claimed tokens per ``(user_id, key, challenge_id)``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from hook_service import errors
from hook_service.clock import Clock, system_clock
from hook_service.store.base import (
    ALREADY_USED,
    NO_PENDING,
    Claimed,
    KeySetGuard,
    PendingStep,
    check_issued,
    wrong_scope,
)
from hook_service.tokens.base import IssuedToken

_SWEEP_INTERVAL = 60.0  # seconds between MemoryStore sweeps of dead records


@dataclass(slots=True)
class _Pending:
    scope: str
    expires_at: float
    origin: str
    claimed_by: str | None = None


@dataclass(frozen=True, slots=True)
class _Token:
    issued: IssuedToken
    scope: str


class MemoryStore:
    """In-process store (the embedded default). Safe for one event loop or several threads:
    every operation runs under a lock without awaiting, so check-and-set is atomic (and a
    write can never land after its caller gave up: ``within`` needs no check here)."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._lock = threading.Lock()
        self._next_sweep = clock() + _SWEEP_INTERVAL

    def __len__(self) -> int:
        """Number of records held, pending steps and tokens (dead ones linger until the next
        sweep)."""
        return len(self._pending) + len(self._tokens)

    def __repr__(self) -> str:
        return f"MemoryStore(records={len(self)})"

    async def put_pending(
        self, steps: Sequence[PendingStep], *, within: float | None = None
    ) -> None:
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                # Bounded memory without a timer task: drop dead records once a minute.
                self._pending = {k: r for k, r in self._pending.items() if r.expires_at > now}
                self._tokens = {k: t for k, t in self._tokens.items() if t.issued.expires_at > now}
                self._next_sweep = now + _SWEEP_INTERVAL
            for step in steps:
                where = (step.user_id, step.key)
                old = self._pending.get(where)
                if old is not None and step.origin == old.origin != "" and now < old.expires_at:
                    continue  # a replay of the deciding request: nothing changes
                if step.expires_at > now:
                    self._pending[where] = _Pending(step.scope, step.expires_at, step.origin)
                else:  # an already-expired step still replaces (removes) the old one
                    self._pending.pop(where, None)

    async def ensure_pending(
        self, steps: Sequence[PendingStep], *, within: float | None = None
    ) -> None:
        now = self._clock()
        with self._lock:
            for step in steps:
                where = (step.user_id, step.key)
                old = self._pending.get(where)
                if (old is None or now >= old.expires_at) and step.expires_at > now:
                    self._pending[where] = _Pending(step.scope, step.expires_at, step.origin)

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
        if guard is not None:
            raise ValueError("the in-memory store cannot check a shared key set")
        check_issued(user_id, key, issued)
        with self._lock:
            token = self._tokens.get((user_id, key, issued.challenge_id))
            if token is not None and now < token.issued.expires_at:
                if scope is not None and scope != token.scope:
                    raise errors.NoPendingStep(wrong_scope(key, scope, token.scope))
                return token.issued, False
            record = self._pending.get((user_id, key))
            if record is None or now >= record.expires_at:
                raise errors.NoPendingStep(NO_PENDING)
            if record.claimed_by is not None:
                raise errors.StepAlreadyUsed(ALREADY_USED)
            if scope is not None and scope != record.scope:
                raise errors.NoPendingStep(wrong_scope(key, scope, record.scope))
            record.claimed_by = issued.challenge_id
            self._tokens[user_id, key, issued.challenge_id] = _Token(issued, record.scope)
            return issued, True

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
