"""Key operations shared by the admin API, the CLI and the rotation scheduler.

:class:`KeyAdmin` composes the pure life cycle (:mod:`hook_service.keys.lifecycle`) with a
:class:`~hook_service.keys.backends.base.KeyStore` (the file store for one host, the Redis
store for several replicas), generates keys off the event loop, and turns every change into
audit events (:mod:`hook_service.keys.events`) that the store records and this module logs.
What only some stores can do (rewrap, the event stream) it asks of the store's capabilities.
It knows neither HTTP nor Redis.
"""

from __future__ import annotations

import logging

from anyio import to_thread
from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service import errors, logs
from hook_service.clock import Clock, system_clock
from hook_service.keys.backends.base import (
    Change,
    EventedKeyStore,
    KeyStore,
    SealedKeyStore,
)
from hook_service.keys.events import KeyEvent, diff, log_events, rewrapped
from hook_service.keys.lifecycle import (
    PUBLISH_LEAD,
    KeySet,
    NewKey,
    revoke,
    rotate,
    rotation_due,
    too_early,
    with_next,
)

log = logging.getLogger(logs.KEYS)

PRELUDE_CACHE_WARNING = (
    "Prelude may keep this key in its cached copy of our JWKS for up to 10 minutes"
)
FORCE_WARNING = (
    "forced rotation: the new signing key was published less than the publish lead ago; "
    "verifiers holding an older cached JWKS will meet an unknown kid and must refetch "
    "(Prelude does)"
)


class _Prepared:
    """A ``new_key`` that hands out a key generated beforehand (off the event loop), then
    falls back to generating (a retried change that needs another one: rare)."""

    def __init__(self, key: rsa.RSAPrivateKey | None, new_key: NewKey) -> None:
        self._key, self._new_key = key, new_key

    def __call__(self) -> rsa.RSAPrivateKey:
        key, self._key = self._key, None
        return key if key is not None else self._new_key()


class _NotDue(Exception):
    pass


class KeyAdmin:
    """Rotate, revoke, rewrap and import keys in ``store``, with audit events and logs."""

    def __init__(
        self,
        store: KeyStore,
        *,
        clock: Clock = system_clock,
        token_ttl: int = 300,
        publish_lead: int = PUBLISH_LEAD,
        replica: str = "unknown",
    ) -> None:
        self.store = store
        self._clock = clock
        self.token_ttl = token_ttl
        self.publish_lead = publish_lead
        self.replica = replica

    async def rotate(self, actor: str, *, force: bool = False) -> tuple[KeySet, str | None]:
        """next -> active; raises :class:`errors.RotationTooEarly` within the publish lead
        unless ``force``. Returns the new set and, for an early forced rotation, a warning."""
        now = int(self._clock())
        if not force and too_early(self.store.current(), now, self.publish_lead):
            # Raises RotationTooEarly before a key is paid for; the change re-checks anyway.
            self._rotate(self.store.current(), now, force=False)
        supply = await self._prepared(True)
        early = False

        def change(current: KeySet, at: int) -> KeySet:
            # Judged on the set the change applies to, not on this replica's copy: another
            # replica may have made a fresh next key that this one has not seen yet.
            nonlocal early
            early = too_early(current, at, self.publish_lead)
            return self._rotate(current, at, force=force, new_key=supply)

        ks, _ = await self._apply(change, actor)
        if early:
            log.warning("early rotation forced by %s (active kid=%s)", actor, ks.active.kid)
        return ks, FORCE_WARNING if early else None

    def due(self, interval: int) -> bool:
        """Whether a scheduled rotation is due, judged on the set in memory."""
        return rotation_due(self.store.current(), int(self._clock()), interval, self.publish_lead)

    async def rotate_if_due(self, interval: int, *, fence: int | None = None) -> KeySet | None:
        """The scheduler's rotation: only if due on the freshly read set (so two replicas, or
        a replica and an operator, never rotate twice for one interval); never forced."""
        supply = await self._prepared(True)

        def change(current: KeySet, now: int) -> KeySet:
            if not rotation_due(current, now, interval, self.publish_lead):
                raise _NotDue
            return self._rotate(current, now, force=False, new_key=supply)

        try:
            ks, _ = await self._apply(change, "scheduler", fence=fence)
        except _NotDue:
            return None
        return ks

    async def revoke(self, kid: str, actor: str) -> KeySet:
        """Drop ``kid`` now; revoking the active key promotes next and makes a new next."""
        known = self.store.current().get(kid)
        supply = await self._prepared(known is not None and known.state != "retired")
        ks, _ = await self._apply(
            lambda current, now: revoke(current, kid, now, supply), actor, revoked=kid
        )
        return ks

    async def rewrap(self, actor: str) -> list[KeyEvent]:
        """Re-encrypt every private key under the first KEK (the Redis store seals under it on
        every write; this write changes nothing else)."""
        if not isinstance(self.store, SealedKeyStore):
            raise errors.InvalidRequest("keys rewrap applies to the Redis key store only")
        _, events = await self._apply(
            lambda current, now: KeySet(current.keys, current.version + 1), actor, rewrap=True
        )
        return events

    async def events(self, after: str | None, limit: int) -> tuple[list[KeyEvent], str | None]:
        """Up to ``limit`` audit events after ``after`` and the next cursor, from a store that
        keeps them (:class:`errors.EventsUnavailable` otherwise: they are in the log)."""
        if not isinstance(self.store, EventedKeyStore):
            raise errors.EventsUnavailable(
                "the file key store writes key events to the service log only; the event "
                "stream needs HOOK_KEYSTORE=redis"
            )
        return await self.store.events(after, limit)

    async def import_next(self, private_key: rsa.RSAPrivateKey, actor: str) -> KeySet:
        """Install ``private_key`` as the next key (it waits for the publish lead)."""
        ks, _ = await self._apply(lambda current, now: with_next(current, private_key, now), actor)
        return ks

    async def replace_all(self, source: KeySet, actor: str) -> KeySet:
        """Replace the whole set with ``source`` (``keys import --from-dir --replace``)."""
        ks, _ = await self._apply(
            lambda current, now: KeySet(source.keys, max(current.version, source.version) + 1),
            actor,
        )
        return ks

    def _rotate(
        self, ks: KeySet, now: int, *, force: bool, new_key: NewKey | None = None
    ) -> KeySet:
        supply = new_key or self.store.new_key
        return rotate(ks, now, self.token_ttl, supply, force=force, publish_lead=self.publish_lead)

    async def _prepared(self, needed: bool) -> _Prepared:
        # RSA generation takes ~0.1 s of CPU: never on the event loop.
        key = await to_thread.run_sync(self.store.new_key) if needed else None
        return _Prepared(key, self.store.new_key)

    async def _apply(
        self,
        change: Change,
        actor: str,
        *,
        revoked: str | None = None,
        rewrap: bool = False,
        fence: int | None = None,
    ) -> tuple[KeySet, list[KeyEvent]]:
        def describe(before: KeySet, after: KeySet, now: int) -> list[KeyEvent]:
            if rewrap:
                return rewrapped(after, now=now, actor=actor, replica=self.replica)
            return diff(before, after, now=now, actor=actor, replica=self.replica, revoked=revoked)

        ks, events = await self.store.change(change, describe, fence=fence)
        log_events(events)
        return ks, events
