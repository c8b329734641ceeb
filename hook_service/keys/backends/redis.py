"""The key set shared by every replica through Redis (``HOOK_KEYSTORE=redis``).

Redis holds the key set as one sealed document (private keys encrypted, the whole tagged under
the KEK: :mod:`hook_service.keys.backends.sealed`); its layout and the Lua scripts that change
it are in :mod:`hook_service.keys.backends.redis_scripts`. Besides the core
:class:`~hook_service.keys.backends.base.KeyStore` this store has every capability: a rotation
lock, the event stream, sealed keys, seeding, a version key.

Each replica keeps the decrypted set in memory (``current()``/``signing_set()`` stay cheap and
synchronous), applies a change when the message arrives, and also polls the version every
``poll_interval`` (0.5 s), so a missed message is caught within 1 s. If Redis cannot be read
the last good set keeps the JWKS up, :attr:`stale` says why, and signing stops until it can
(the unseen change might have been a revocation); if Redis lost the set, the replica puts its
copy back. The parts: the start-up read (:mod:`~hook_service.keys.backends.redis_load`), the
replica's view and how it follows Redis (:mod:`~hook_service.keys.backends.redis_follow`), the
watcher loop (:mod:`~hook_service.keys.backends.redis_watch`).
"""

from __future__ import annotations

import contextlib
import logging
import time

from hook_service import _redis, errors, logs
from hook_service._redis_target import RedisTarget
from hook_service.clock import Clock, system_clock
from hook_service.keys.backends import sealed as keydoc
from hook_service.keys.backends.base import Change, Describe
from hook_service.keys.backends.keyring import DecryptError, Keyring
from hook_service.keys.backends.redis_follow import FollowedSet
from hook_service.keys.backends.redis_load import PEER_WAIT, Draft, fetch
from hook_service.keys.backends.redis_scripts import origin
from hook_service.keys.backends.redis_watch import Watcher
from hook_service.keys.events import KeyEvent, diff, log_events
from hook_service.keys.lifecycle import KeySet, NewKey, generate_rsa_key, initial_key_set

log = logging.getLogger(logs.KEYSTORE)

_CAS_ATTEMPTS = 5
# The replicas' acknowledgement of a change must come this much before the client gives up.
_REPLY_MARGIN = 0.1


class RedisKeyStore(FollowedSet):
    """See the module docstring. ``replica`` names this process in the audit events;
    ``cluster``: ``url`` is a node of a Redis Cluster (the set's keys share one hash tag)."""

    def __init__(
        self,
        url: RedisTarget | str,
        keyring: Keyring,
        *,
        clock: Clock = system_clock,
        replica: str = "unknown",
        new_key: NewKey = generate_rsa_key,
        prefix: str = "hook:keys:",
        poll_interval: float = 0.5,
        timeout: float = 2.0,
        peer_wait: float = PEER_WAIT,
        cluster: bool = False,
    ) -> None:
        super().__init__(
            _redis.RedisSite(url, cluster=cluster),
            keyring,
            prefix,
            clock=clock,
            replica=replica,
            timeout=timeout,
        )
        self.new_key = new_key
        self._peer_wait = peer_wait
        self._watcher = Watcher(
            self._async,
            self._redis.channel,
            self._poll,
            interval=poll_interval,
            on_bug=self._poll_bug,
        )

    def __repr__(self) -> str:
        return f"RedisKeyStore({self._site.location!r}, keyring={self._keyring!r})"

    @property
    def version_key(self) -> str:
        """The Redis key holding the set's version (a claim on this Redis may check it; not
        on a cluster, where it is in another slot than the user's records)."""
        return self._redis.version

    # --- start-up and the CLI: synchronous ----------------------------------------------

    def load_or_create(self) -> KeySet:
        """Load the shared key set; on first start create one (another replica starting at
        the same moment may win: then its set is used). Start-up errors are ConfigErrors."""
        return self._load_sync(create=True)

    def load(self) -> KeySet:
        """Load the shared key set; :class:`errors.KeyStoreError` when Redis holds none."""
        return self._load_sync(create=False)

    def create_from(self, source: KeySet, actor: str) -> KeySet:
        """Store ``source`` as the first key set (``keys import --from-dir``); a
        :class:`errors.KeyStoreError` if Redis already holds one."""
        ks = self._load_sync(create=True, initial=source, actor=actor)
        if ks is not source:
            raise errors.KeyStoreError(
                f"Redis already holds a key set (version {ks.version}); nothing was imported "
                "(--replace overwrites it)"
            )
        return ks

    def _load_sync(
        self, *, create: bool, initial: KeySet | None = None, actor: str = "startup"
    ) -> KeySet:
        def first() -> Draft:
            now = int(self._clock())
            ks = initial or initial_key_set(now, self.new_key)
            events = diff(None, ks, now=now, actor=actor, replica=self.replica)
            body = keydoc.encode(ks, self._keyring, self.prefix)
            # A set made up here, not imported, yields to a running replica's copy until changed.
            mark = "" if initial else origin("created", ks.version, body)
            args = self._redis.write_args(0, ks.version, body, events, None, mark)
            return Draft(ks, events, body, args)

        fetched = fetch(
            self._site,
            self._redis,
            timeout=self._timeout,
            first=first if create else None,
            peer_wait=self._peer_wait,
        )
        if fetched.created is not None:
            ks, events, written = fetched.created
            if initial is None:
                log.warning(
                    "Redis at %s held no key set and no running replica follows one: created "
                    "a new one (version %d). Expected on a first start; otherwise the previous "
                    "set is lost from Redis and its kids are no longer published (docs/keys.md)",
                    self._site.location,
                    ks.version,
                )
            log_events(events)
            return self._committed(ks, events, written, fetched.raw)
        try:
            ks = self._decode(fetched.raw)
        except DecryptError as exc:
            raise errors.KeyStoreError(
                f"HOOK_KEY_ENCRYPTION_KEYS cannot decrypt the stored signing keys: {exc}"
            ) from None
        except ValueError as exc:
            raise errors.KeyStoreError(f"the key set in Redis is not valid: {exc}") from None
        self._install(ks, fetched.raw)
        return ks

    # --- the hot path: synchronous, from memory ------------------------------------------

    def current(self) -> KeySet:
        """The key set last applied (a change by any replica lands within ~1 s)."""
        if self._cached is None:
            return self.load_or_create()
        return self._cached

    async def refresh(self) -> KeySet:
        """Check the version in Redis now and apply a newer set (one GET when unchanged), so a
        revocation that returned on another replica is never signed past here."""
        with self._guard("refresh"):
            await self._check()
        return self.signing_set()

    # --- changes ------------------------------------------------------------------------

    async def change(
        self, change: Change, describe: Describe, *, fence: int | None = None
    ) -> tuple[KeySet, list[KeyEvent]]:
        """Read the latest set, apply ``change(set, now)`` and write it if nobody wrote in
        between (else re-read and retry). Every write seals every key under the first KEK.
        Raises :class:`errors.LockLost` when ``fence`` is older than the last token issued."""
        client = self._async()
        for _attempt in range(_CAS_ATTEMPTS):
            with self._guard("change"):
                raw = await client.get(self._redis.set)
                if raw is None:  # data loss: put this replica's copy back first
                    await self._check()
                    raw = await client.get(self._redis.set)
                before = self._decode(raw)
            now = int(self._clock())
            after = change(before, now)  # pure; its errors (e.g. unknown kid) go to the caller
            if after.version <= before.version:
                raise ValueError("a change must increase the key set version")
            events = describe(before, after, now)
            body = keydoc.encode(after, self._keyring, self.prefix)
            args = self._redis.write_args(before.version, after.version, body, events, fence)
            until = time.monotonic() + self._timeout - _REPLY_MARGIN
            with self._guard("change"):
                try:  # LockLost passes through
                    written = await self._redis.write(self._site, client, args, until=until)
                except _redis.NotReplicated:
                    # Not "stale": the set served here is still right. The change stands on the
                    # master and is followed by the next poll, unless a failover loses it.
                    raise errors.KeyStoreUnavailable(
                        "the key set change reached Redis but not HOOK_REDIS_MIN_REPLICAS "
                        "replicas in time, so it may be lost in a failover; GET /admin/keys "
                        "shows whether it stands"
                    ) from None
            if written is not None:
                return self._committed(after, events, written, body), events
        raise errors.KeyStoreUnavailable("the key set kept changing during this change; retry")

    async def events(self, after: str | None, limit: int) -> tuple[list[KeyEvent], str | None]:
        """Up to ``limit`` audit events after stream id ``after`` (oldest first) and the cursor
        for the next page, or None when there is no more."""

        def failed(name: str) -> errors.KeyStoreUnavailable:
            return errors.KeyStoreUnavailable(
                f"the key event stream cannot be read right now: {name}"
            )

        # The audit trail, not the key set: a failure here must not stop signing (no stale).
        with self._site.guard("events", failed):
            return await self._redis.events(self._async(), after, limit)

    async def acquire_lock(self, ttl: float) -> int | None:
        """The rotation lock for ``ttl`` seconds and its fencing token, or None if held."""
        with self._guard("lock"):
            return await self._redis.acquire_lock(self._async(), ttl)

    async def release_lock(self, token: int) -> None:
        """Free the rotation lock if ``token`` still holds it."""
        with self._guard("unlock"):
            await self._redis.release_lock(self._async(), token)

    # --- following other replicas -------------------------------------------------------

    async def start(self) -> None:
        """Follow changes by other replicas: pub/sub plus a version poll."""
        await self._watcher.start()

    async def aclose(self) -> None:
        await self._watcher.aclose()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _poll(self) -> None:
        # _guard sets stale (and logs once); the next good poll clears it.
        with contextlib.suppress(errors.KeyStoreUnavailable), self._guard("poll"):
            await self._check()

    def _poll_bug(self) -> None:
        self.stale = "key set poll failed unexpectedly (see the log)"
