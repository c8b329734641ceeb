"""The in-memory :class:`~hook_service.facts.base.FactsStore`: one process, ``--dev`` and tests.

Each operation runs under a lock without awaiting, so observe (read, then record) is atomic,
and so is the replay check before it. Users are filed under their keyed hash, as in Redis;
replay records beside their history (``{digest: (until, answer)}``), as in Redis.
"""

from __future__ import annotations

import threading
from typing import Any

from hook_service.facts import inventory, logic
from hook_service.facts.base import Attempt, Facts, Once, Proof, Replay
from hook_service.facts.hashing import FactsKey
from hook_service.facts.logic import History, Limits

_SWEEP_INTERVAL = 3600  # seconds (injected clock) between sweeps of users with nothing left


class MemoryFactsStore:
    """Facts of every user in a dict; the semantics are :mod:`hook_service.facts.logic`."""

    def __init__(self, key: FactsKey, limits: Limits | None = None) -> None:
        self._key = key
        self._limits = limits or Limits()
        self._users: dict[str, History] = {}
        self._replays: dict[str, dict[str, tuple[int, str]]] = {}
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
        n = logic.seconds(now)
        for tag, records in list(self._replays.items()):
            for digest in [d for d, (until, _) in records.items() if until <= n]:
                del records[digest]
            if not records:
                del self._replays[tag]

    def _replayed(self, user_id: str, now: float, once: Once) -> Replay | None:
        """The replay of ``once``, or None after writing its record (caller holds the lock)."""
        n = logic.seconds(now)
        records = self._replays.setdefault(self._key.user(user_id), {})
        held = records.get(once.digest)
        if held is not None and held[0] > n:
            return Replay(held[1])
        records[once.digest] = (n + once.window, once.answer)
        return None

    def _observe(self, user_id: str, attempt: Attempt, now: float, once: Once | None) -> Any:
        with self._lock:
            replay = None if once is None else self._replayed(user_id, now, once)
            if replay is not None:
                return replay
            history = self._history(user_id, now)
            facts = logic.facts(history, attempt, now, self._limits)
            logic.record(history, attempt, now, self._limits)
            logic.prune(history, now, self._limits)
            return facts

    async def observe(self, user_id: str, attempt: Attempt, now: float) -> Facts:
        facts: Facts = self._observe(user_id, attempt, now, None)
        return facts

    async def observe_once(
        self, user_id: str, attempt: Attempt, now: float, once: Once
    ) -> Facts | Replay:
        result: Facts | Replay = self._observe(user_id, attempt, now, once)
        return result

    async def record(
        self, user_id: str, attempt: Attempt, now: float, once: Once | None = None
    ) -> Replay | None:
        result = self._observe(user_id, attempt, now, once)
        return result if isinstance(result, Replay) else None

    async def settle(
        self, user_id: str, attempt: Attempt, now: float, once: Once | None = None
    ) -> None:
        with self._lock:
            logic.settle(self._history(user_id, now), attempt)
            if once is not None:
                records = self._replays.get(self._key.user(user_id), {})
                held = records.get(once.digest)
                if held is not None and held[0] > logic.seconds(now):
                    records[once.digest] = (held[0], once.answer)

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
            self._replays.pop(self._key.user(user_id), None)
            history = self._users.pop(self._key.user(user_id), None) or History()
            return inventory.inventory(history, now, self._limits)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
