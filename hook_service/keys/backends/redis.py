"""The key set shared by every replica through Redis (``HOOK_KEYSTORE=redis``).

Redis holds the key set as one sealed document (private keys encrypted, the whole tagged under
the KEK: :mod:`hook_service.keys.backends.sealed`); its layout and the Lua scripts that change
it are in :mod:`hook_service.keys.backends.redis_scripts`. This module keeps one replica's view
of it. Besides the core :class:`~hook_service.keys.backends.base.KeyStore` it has every
capability: a rotation lock, the event stream, sealed keys, seeding, a version key.

Each replica keeps the decrypted set in memory (``current()``/``signing_set()`` stay cheap and
synchronous), applies a change when the message arrives, and also polls the version every
``poll_interval`` (0.5 s), so a missed message is caught within 1 s (the loop is
:mod:`hook_service.keys.backends.redis_watch`; the start-up read is
:mod:`hook_service.keys.backends.redis_load`). If Redis cannot be read
the last good set keeps the JWKS up, :attr:`stale` says why, and signing stops until it can
(the unseen change might have been a revocation).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis as AsyncRedis

from hook_service import _redis, errors, logs
from hook_service.clock import Clock, system_clock
from hook_service.keys.backends import sealed as keydoc
from hook_service.keys.backends.base import Change, Describe, LastGoodSet
from hook_service.keys.backends.keyring import DecryptError, Keyring
from hook_service.keys.backends.redis_load import Draft, fetch
from hook_service.keys.backends.redis_scripts import KeySetKeys, Written
from hook_service.keys.backends.redis_watch import Watcher
from hook_service.keys.events import KeyEvent, diff, log_events
from hook_service.keys.lifecycle import KeySet, NewKey, generate_rsa_key, initial_key_set

log = logging.getLogger(logs.KEYSTORE)

_CAS_ATTEMPTS = 5


class RedisKeyStore(LastGoodSet):
    """See the module docstring. ``replica`` names this process in the audit events."""

    not_signing = "the shared key set cannot be read right now; not signing until it can"

    def __init__(
        self,
        url: str,
        keyring: Keyring,
        *,
        clock: Clock = system_clock,
        replica: str = "unknown",
        new_key: NewKey = generate_rsa_key,
        prefix: str = "hook:keys:",
        poll_interval: float = 0.5,
        timeout: float = 2.0,
    ) -> None:
        self._site = _redis.RedisSite(url)
        self._keyring = keyring
        self._clock = clock
        self.replica = replica
        self.new_key = new_key
        self._timeout = timeout
        self.prefix = prefix
        self._redis = KeySetKeys(prefix)
        self._cached: KeySet | None = None
        self._private: dict[str, rsa.RSAPrivateKey] = {}
        self._client: AsyncRedis | None = None
        self._watcher = Watcher(
            self._async,
            self._redis.channel,
            self._poll,
            interval=poll_interval,
            on_bug=self._poll_bug,
        )
        self._behind = 0
        self._lost = False  # Redis went back to an older set: its next set is read, not assumed
        self.stale: str | None = None
        """Why Redis could not be read, while the last good key set serves."""

    def __repr__(self) -> str:
        return f"RedisKeyStore(url={self._site.location!r}, keyring={self._keyring!r})"

    @property
    def keyring(self) -> Keyring:
        """The KEKs the keys are sealed under (every write seals under the first)."""
        return self._keyring

    @property
    def version_key(self) -> str:
        """The Redis key holding the set's version (a claim on this Redis may check it)."""
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
            return Draft(
                ks, events, body, self._redis.write_args(0, ks.version, body, events, None)
            )

        fetched = fetch(
            self._site, self._redis, timeout=self._timeout, first=first if create else None
        )
        if fetched.created is not None:
            ks, events, written = fetched.created
            log_events(events)
            return self._committed(ks, events, written)
        try:
            ks = self._decode(fetched.raw)
        except DecryptError as exc:
            raise errors.KeyStoreError(
                f"HOOK_KEY_ENCRYPTION_KEYS cannot decrypt the stored signing keys: {exc}"
            ) from None
        except ValueError as exc:
            raise errors.KeyStoreError(f"the key set in Redis is not valid: {exc}") from None
        self._install(ks)
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
                before = self._decode(await client.get(self._redis.set))
            now = int(self._clock())
            after = change(before, now)  # pure; its errors (e.g. unknown kid) go to the caller
            if after.version <= before.version:
                raise ValueError("a change must increase the key set version")
            events = describe(before, after, now)
            args = self._write_args(before.version, after, events, fence)
            with self._guard("change"):
                written = await self._redis.write(client, args)  # LockLost passes through
            if written is not None:
                return self._committed(after, events, written), events
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
            entries = await self._redis.read_events(self._async(), after, limit)
        out = []
        for entry_id, fields in entries[:limit]:
            try:
                out.append(KeyEvent.from_fields(entry_id, fields))
            except (KeyError, ValueError):
                log.warning("key event %s is malformed; skipped", entry_id)
        more = len(entries) > limit
        return out, (str(entries[limit - 1][0]) if more and limit else None)

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

    async def _check(self) -> None:
        client = self._async()
        raw = await client.get(self._redis.version)
        remote = 0 if raw is None else int(raw)
        if remote < self._version():
            # A write of ours can land between that GET and here; only a second look at an
            # older version means Redis lost data or was restored from an old backup.
            self._behind += 1
            if self._behind > 1:
                self._lost = True
                raise ValueError(
                    f"Redis holds key set version {remote}, older than {self._version()}; "
                    "not going back to it"
                )
            return
        self._behind = 0
        # After a loss, changes on the restored set can reach the version served here with
        # other keys: an equal number then says nothing, so the set itself is read.
        if remote > self._version() or (self._lost and remote == self._version()):
            self._install(self._decode(await client.get(self._redis.set)))
            return
        self._ok()

    # --- plumbing -----------------------------------------------------------------------

    def _async(self) -> AsyncRedis:
        if self._client is None:
            self._client = self._site.client(timeout=self._timeout)
        return self._client

    @contextlib.contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        """Redis and decryption failures become ``stale`` plus :class:`KeyStoreUnavailable`."""
        try:
            with self._site.guard(operation, lambda name: self._unreadable(operation, name)):
                yield
        except (DecryptError, ValueError) as exc:
            raise self._unreadable(operation, str(exc)) from None

    def _unreadable(self, operation: str, why: str) -> errors.KeyStoreUnavailable:
        reason = f"key set {operation} failed: {why}"
        if self.stale is None and self._cached is not None:
            log.error("%s; still publishing key set version %d", reason, self._cached.version)
        self.stale = reason
        return errors.KeyStoreUnavailable("the shared key set cannot be read right now")

    def _ok(self) -> None:
        if self.stale is not None:
            log.warning("key set readable again (version %d)", self._version())
        self.stale = None

    def _version(self) -> int:
        return 0 if self._cached is None else self._cached.version

    def _install(self, ks: KeySet) -> None:
        """Apply ``ks`` unless the set in memory is newer (a read that raced a newer write).
        Only a set at least as new ends a stale period: our own write onto an older set that
        Redis was restored to is not the set this replica serves. After such a loss a set at
        the version served replaces it: changes on the restored set reach that number too."""
        if ks.version > self._version() or (self._lost and ks.version == self._version()):
            self._cached = ks
            self._private = {k.kid: k.private_key for k in ks.keys}
            self._lost = False
        if ks.version >= self._version():
            self._ok()

    def _committed(self, ks: KeySet, events: list[KeyEvent], written: Written) -> KeySet:
        events[:] = [
            KeyEvent(**{**e.to_json(), "id": i})
            for e, i in zip(events, written.event_ids, strict=False)
        ]
        self._install(ks)
        return ks

    def _write_args(
        self, expected: int, ks: KeySet, events: list[KeyEvent], fence: int | None
    ) -> list[str]:
        body = keydoc.encode(ks, self._keyring, self.prefix)
        return self._redis.write_args(expected, ks.version, body, events, fence)

    def _decode(self, raw: str | bytes | None) -> KeySet:
        return keydoc.decode(raw, self._keyring, self._private, self.prefix)
