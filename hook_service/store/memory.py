"""The in-memory :class:`~hook_service.store.base.Store`: one process, ``--dev`` and tests."""

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
    UserRecords,
    check_issued,
)
from hook_service.tokens.base import IssuedToken

_SWEEP_INTERVAL = 60.0  # seconds between MemoryStore sweeps of dead records


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
    ) -> Claimed | None:
        if guard is not None:
            raise ValueError("the in-memory store cannot check a shared key set")
        check_issued(user_id, key, issued)
        with self._lock:
            record = self._records.get((user_id, key))
            if record is None or now >= record.end:
                raise errors.NoPendingStep(NO_PENDING)
            if record.used is None:
                record.used = issued
                return Claimed(issued, True, record.scope)
            if record.used.challenge_id == issued.challenge_id and now < record.used.expires_at:
                return Claimed(record.used, False, record.scope)
            raise errors.StepAlreadyUsed(ALREADY_USED)

    async def user_records(self, user_id: str, now: float) -> UserRecords:
        with self._lock:
            alive = [r for (user, _), r in self._records.items() if user == user_id and now < r.end]
        issued = sum(1 for r in alive if r.used is not None)
        return UserRecords(pending_steps=len(alive) - issued, issued_tokens=issued)

    async def erase_user(self, user_id: str) -> int:
        with self._lock:
            mine = [k for k in self._records if k[0] == user_id]
            for k in mine:
                del self._records[k]
        return len(mine)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
