"""Automatic rotation every ``HOOK_KEY_ROTATION_INTERVAL`` (off by default).

Every replica runs :class:`RotationScheduler`; exactly one rotates per interval. Each tick it
asks whether a rotation is due (on the injected clock, against the key set in memory); if so it
takes the store's rotation lock, which comes with a fencing token, and rotates only if the
freshly read set is still due. The Redis store's write refuses a fencing token older than the
last one issued, so a replica that stalls past its lock (a GC pause, a frozen VM) cannot rotate
when it wakes up; the compare-and-set on the version means the winner's rotation is seen by
everyone else's due check. A store without a rotation lock (not a
:class:`~hook_service.keys.backends.base.LockingKeyStore`: the file store) makes each change
exclusive by itself (its ``flock``, one host), and the due check is repeated inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hook_service import logs
from hook_service.errors import ConfigError, HookError
from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends.base import LockingKeyStore

log = logging.getLogger(logs.KEYS)

LOCK_TTL = 30.0  # seconds; a rotation (key generation + one write) takes well under one


class RotationScheduler:
    """Checks every ``tick`` seconds of real time whether a rotation is due by the injected
    clock; ``checks`` and ``rotations`` count what it did (tests, logs)."""

    def __init__(
        self, admin: KeyAdmin, interval: int, *, tick: float = 1.0, lock_ttl: float = LOCK_TTL
    ) -> None:
        self.admin = admin
        self.interval = interval
        self.tick = tick
        self.lock_ttl = lock_ttl
        self.checks = 0
        self.rotations = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="key rotation scheduler")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        last_error = ""
        while True:
            try:
                await self.check()
                last_error = ""
            except (HookError, ConfigError) as exc:  # Redis down, lock lost: try next tick
                if str(exc) != last_error:  # once per distinct failure, not every tick
                    log.warning("scheduled key rotation skipped: %s", exc)
                last_error = str(exc)
            except Exception:  # a bug must not end the schedule silently
                log.exception("scheduled key rotation failed")
            await asyncio.sleep(self.tick)

    async def check(self) -> bool:
        """One tick: rotate if due and the lock is ours; True if this replica rotated."""
        self.checks += 1
        if not self.admin.due(self.interval):
            return False
        store = self.admin.store
        if not isinstance(store, LockingKeyStore):
            rotated = await self.admin.rotate_if_due(self.interval)
        else:
            token = await store.acquire_lock(self.lock_ttl)
            if token is None:  # another replica is rotating; its write will reach us
                return False
            try:
                rotated = await self.admin.rotate_if_due(self.interval, fence=token)
            finally:
                await store.release_lock(token)
        if rotated is None:
            return False
        self.rotations += 1
        log.info("scheduled key rotation: active kid=%s", rotated.active.kid)
        return True
