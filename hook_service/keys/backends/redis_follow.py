"""One replica's view of the shared key set, and how it follows what Redis holds.

:class:`FollowedSet` keeps the last good set in memory (decrypted) with its sealed document as
Redis held it, and on each look at Redis (:meth:`FollowedSet._check`, from the watcher's poll or
before signing) follows a newer set, or after data loss puts its own copy back, sealed and
tagged as it was, version kept (the restore script decides atomically; see
:mod:`hook_service.keys.backends.redis_scripts`), or says why it cannot: :attr:`stale`, logged
once per distinct cause, while the JWKS of the last good set stays published and nothing signs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service import _redis, errors, logs
from hook_service.clock import Clock
from hook_service.keys.backends import sealed as keydoc
from hook_service.keys.backends.base import LastGoodSet
from hook_service.keys.backends.keyring import DecryptError, Keyring
from hook_service.keys.backends.redis_scripts import KeySetKeys, Written, digest, parse_origin
from hook_service.keys.events import RESTORE_ACTOR, KeyEvent, log_events, restored
from hook_service.keys.lifecycle import KeySet

log = logging.getLogger(logs.KEYSTORE)

Mark = tuple[str, int, str]
"""A parsed ``origin`` mark: (kind, version, digest)."""


class FollowedSet(LastGoodSet):
    """The state and the following half of
    :class:`~hook_service.keys.backends.redis.RedisKeyStore`."""

    not_signing = "the shared key set cannot be read right now; not signing until it can"

    def __init__(
        self,
        site: _redis.RedisSite,
        keyring: Keyring,
        prefix: str,
        *,
        clock: Clock,
        replica: str,
        timeout: float,
    ) -> None:
        self._site = site
        self._keyring = keyring
        self._clock = clock
        self.replica = replica
        self._timeout = timeout
        self.prefix = prefix
        self._redis = KeySetKeys(prefix, site.cluster)
        self._cached: KeySet | None = None
        self._raw = ""  # the sealed document of _cached, as Redis holds it (what a restore writes)
        self._digest = ""  # its digest, as origin marks name documents
        self._private: dict[str, rsa.RSAPrivateKey] = {}
        self._client: _redis.AsyncClient | None = None
        self._causes: set[str] = set()  # why not readable, each logged once while stale
        self._behind = 0
        self._lost = False  # Redis went back to an older set: its next set is read, not assumed
        self.stale: str | None = None
        """Why Redis could not be read, while the last good key set serves."""

    @property
    def keyring(self) -> Keyring:
        """The KEKs the keys are sealed under (every write seals under the first)."""
        return self._keyring

    def current(self) -> KeySet:
        raise NotImplementedError

    async def _check(self) -> None:
        """One look at Redis: follow a newer set, put this replica's copy back after data
        loss (or over a marked set it may replace), or raise why not."""
        client = self._async()
        remote, mark = await self._look(client)
        if self._may_restore(remote, mark):
            if await self._restore(client, remote):
                return
            remote, mark = await self._look(client)  # another replica's copy won: follow it
        ours = self._version()
        if remote is None or remote < ours:
            # A write of ours can land between that GET and here; only a second look at an
            # older version means Redis holds an older set (restored from an old backup?).
            self._behind += 1
            if self._behind > 1:
                self._lost = True
                raise ValueError(
                    f"Redis at {self._site.location} holds key set version {remote or 0}, "
                    f"older than version {ours} served here (restored from an old backup?); "
                    "not going back to it. To adopt it restart the replicas; to have a running "
                    f"replica put its copy back delete {self._redis.version}"
                )
            return
        self._behind = 0
        # After a loss, changes on the restored set can reach the version served here with
        # other keys, and a set put back by another replica may be another one at the same
        # version: an equal number then says nothing, so the set itself is read.
        other = mark is not None and mark[2] != self._digest
        if remote > ours or self._lost or other:
            raw = await client.get(self._redis.set)
            self._install(self._decode(raw), str(raw), replace=True)
            return
        self._ok()

    async def _look(self, client: _redis.AsyncClient) -> tuple[int | None, Mark | None]:
        version, mark = await client.mget(self._redis.version, self._redis.origin)
        return (None if version is None else int(version)), parse_origin(mark)

    def _may_restore(self, remote: int | None, mark: Mark | None) -> bool:
        """Whether the restore script would take this copy (it decides, atomically): Redis
        holds no version, or a marked set older than ours, or created at the same version."""
        if self._cached is None or remote is None:
            return self._cached is not None
        if mark is None or mark[1] != remote or mark[2] == self._digest:
            return False
        ours = self._version()
        return ours > remote or (ours == remote and mark[0] == "created")

    async def _restore(self, client: _redis.AsyncClient, remote: int | None) -> bool:
        assert self._cached is not None
        ks, body = self._cached, self._raw
        events = restored(ks, now=int(self._clock()), actor=RESTORE_ACTOR, replica=self.replica)
        written = await self._redis.restore(client, ks.version, body, events)
        if written is None:
            log.info("another replica put its copy of the key set back first; following it")
            return False
        log.warning(
            "Redis at %s %s (lost data: a restart without persistence, a flush, an eviction?); "
            "put back version %d (%d keys) from this replica's copy, sealed as it was",
            self._site.location,
            "held no key set"
            if remote is None
            else f"held a set put back or created after a loss (version {remote})",
            ks.version,
            len(ks.keys),
        )
        log_events(events)
        self._behind, self._lost = 0, False
        self._committed(ks, events, written, body)
        return True

    def _async(self) -> _redis.AsyncClient:
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
        if self._cached is not None and why not in self._causes:
            self._causes.add(why)  # once per distinct cause until readable again
            log.error(
                "%s; still publishing key set version %d, not signing",
                reason,
                self._cached.version,
            )
        self.stale = reason
        return errors.KeyStoreUnavailable("the shared key set cannot be read right now")

    def _ok(self) -> None:
        if self.stale is not None:
            log.warning("key set readable again (version %d)", self._version())
        self.stale = None
        self._causes.clear()

    def _version(self) -> int:
        return 0 if self._cached is None else self._cached.version

    def _install(self, ks: KeySet, raw: str, *, replace: bool = False) -> None:
        """Apply ``ks`` (sealed as ``raw``) unless the set in memory is newer (a read that raced
        a newer write). Only a set at least as new ends a stale period: our own write onto an
        older set that Redis was restored to is not the set this replica serves. With
        ``replace`` (Redis holds another set at the version served: after a loss, changes on
        the restored set reach that number too) a set at the same version replaces it."""
        if ks.version > self._version() or (replace and ks.version == self._version()):
            self._cached, self._raw, self._digest = ks, raw, digest(raw)
            self._private = {k.kid: k.private_key for k in ks.keys}
            self._lost = False
        if ks.version >= self._version():
            self._ok()

    def _committed(self, ks: KeySet, events: list[KeyEvent], written: Written, raw: str) -> KeySet:
        events[:] = [
            KeyEvent(**{**e.to_json(), "id": i})
            for e, i in zip(events, written.event_ids, strict=False)
        ]
        self._install(ks, raw)
        return ks

    def _decode(self, raw: str | bytes | None) -> KeySet:
        return keydoc.decode(raw, self._keyring, self._private, self.prefix)
