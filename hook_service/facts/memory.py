"""The in-memory :class:`~hook_service.facts.base.FactsStore`: one process, ``--dev`` and tests.

Each operation runs under a lock without awaiting, so observe (read, then record) is atomic.
Users are filed under their keyed hash, as in Redis.
"""

from __future__ import annotations

import threading
from typing import Any

from hook_service.facts import inventory, logic
from hook_service.facts.base import Attempt, Facts, Proof
from hook_service.facts.hashing import FactsKey
from hook_service.facts.logic import History, Limits

_SWEEP_INTERVAL = 3600  # seconds (injected clock) between sweeps of users with nothing left


class MemoryFactsStore:
    """Facts of every user in a dict; the semantics are :mod:`hook_service.facts.logic`."""

    def __init__(self, key: FactsKey, limits: Limits | None = None) -> None:
        self._key = key
        self._limits = limits or Limits()
        self._users: dict[str, History] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0

    def __repr__(self) -> str:
        return f"MemoryFactsStore(users={len(self._users)})"

    def _history(self, user_id: str, now: float) -> History:
        """The user's history, pruned (caller holds the lock)."""
        self._sweep(now)
        history = self._users.setdefault(self._key.user(user_id), History())
        logic.prune(history, now, self._limits)
        return history

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = int(now) + _SWEEP_INTERVAL
        for tag, history in list(self._users.items()):
            logic.prune(history, now, self._limits)
            if inventory.is_empty(history, now, self._limits):
                del self._users[tag]

    async def observe(self, user_id: str, attempt: Attempt, now: float) -> Facts:
        with self._lock:
            history = self._history(user_id, now)
            facts = logic.facts(history, attempt, now, self._limits)
            logic.record(history, attempt, now, self._limits)
            logic.prune(history, now, self._limits)
            return facts

    async def record(self, user_id: str, attempt: Attempt, now: float) -> None:
        await self.observe(user_id, attempt, now)

    async def settle(self, user_id: str, attempt: Attempt, now: float) -> None:
        with self._lock:
            logic.settle(self._history(user_id, now), attempt)

    async def prove(self, user_id: str, proof: Proof, now: float) -> bool:
        with self._lock:
            history = self._history(user_id, now)
            marked = logic.prove(history, proof, now)
            logic.prune(history, now, self._limits)
            return marked

    async def report_fraud(self, user_id: str, now: float) -> None:
        with self._lock:
            logic.report_fraud(self._history(user_id, now), now, self._limits)

    async def show(self, user_id: str, now: float) -> dict[str, Any]:
        with self._lock:
            history = self._users.get(self._key.user(user_id)) or History()
            logic.prune(history, now, self._limits)
            return inventory.describe(history, now, self._limits)

    async def erase(self, user_id: str, now: float) -> dict[str, int]:
        with self._lock:
            history = self._users.pop(self._key.user(user_id), None) or History()
            return inventory.inventory(history, now, self._limits)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
