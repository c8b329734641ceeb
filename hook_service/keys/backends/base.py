"""The key-store interface and the rules every key store applies to what it reads.

:class:`KeyStore` is what every store does (the file store for one host, the Redis store for
several replicas); what only some stores can do is a capability of its own, asked for with
``isinstance`` on the protocol, never on a concrete class:

* :class:`LockingKeyStore`: a rotation lock with fencing tokens (the scheduler takes it; a
  store without it makes each change exclusive by itself, as the file store's ``flock``);
* :class:`EventedKeyStore`: the audit trail as a stream (``GET /admin/keys/events``);
* :class:`SealedKeyStore`: private keys sealed under the KEKs (``keys rewrap``);
* :class:`SeedableKeyStore`: a first key set copied in whole (``keys import --from-dir``);
* :class:`VersionedKeyStore`: the set's version in a Redis key, which a claim on the same
  Redis can check atomically (:class:`~hook_service.tokens.guards.VersionInClaim`).

The shared rules: :func:`parse_key_set` and :func:`key_set_from` read a stored key set (one
JSON shape for ``keyset.json`` and the sealed document), :func:`key_problem` checks a private
key (contract sec. 5: RSA of at least 2048 bits; RFC 7638: its thumbprint is its kid), and
:class:`LastGoodSet` refuses to sign from a set that could not be re-read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service import errors
from hook_service.keys.backends.keyring import Keyring
from hook_service.keys.events import KeyEvent
from hook_service.keys.lifecycle import KeySet, NewKey, SigningKey, thumbprint

Change = Callable[[KeySet, int], KeySet]
"""``(current key set, now) -> new key set``; raising leaves the store unchanged."""
Describe = Callable[[KeySet, KeySet, int], list[KeyEvent]]
"""``(before, after, now) -> audit events`` of a change."""

MIN_RSA_BITS = 2048  # contract sec. 5


class KeyStore(Protocol):
    """Where the key set lives. Reads are synchronous and served from memory; changes are
    async and atomic."""

    stale: str | None
    """Why the stored set could not be re-read, while the last good one serves (None: fine)."""
    new_key: NewKey

    def load_or_create(self) -> KeySet:
        """Load the key set, creating one on first start; :class:`errors.KeyStoreError`."""
        ...

    def load(self) -> KeySet:
        """Load an existing key set; :class:`errors.KeyStoreError` when there is none."""
        ...

    def current(self) -> KeySet:
        """The key set to publish (the last good one while :attr:`stale`)."""
        ...

    def signing_set(self) -> KeySet:
        """:meth:`current`, or :class:`errors.KeyStoreUnavailable` while it is stale."""
        ...

    async def refresh(self) -> KeySet:
        """The signing set after checking the shared copy now (a revocation elsewhere)."""
        ...

    async def change(
        self, change: Change, describe: Describe, *, fence: int | None = None
    ) -> tuple[KeySet, list[KeyEvent]]:
        """Apply ``change`` to the latest set atomically; ``fence`` is a
        :class:`LockingKeyStore` token (ignored by a store without locks)."""
        ...

    async def start(self) -> None:
        """Begin following changes made elsewhere (a no-op where reads already see them)."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LockingKeyStore(KeyStore, Protocol):
    """A store whose replicas share a rotation lock with fencing tokens."""

    async def acquire_lock(self, ttl: float) -> int | None:
        """The lock for ``ttl`` seconds and its fencing token, or None if it is held."""
        ...

    async def release_lock(self, token: int) -> None:
        """Free the lock if ``token`` still holds it."""
        ...


@runtime_checkable
class EventedKeyStore(KeyStore, Protocol):
    """A store that keeps the key audit events as a stream."""

    async def events(self, after: str | None, limit: int) -> tuple[list[KeyEvent], str | None]:
        """Up to ``limit`` events after stream id ``after`` and the next cursor (or None)."""
        ...


@runtime_checkable
class SealedKeyStore(KeyStore, Protocol):
    """A store that keeps private keys sealed under ``keyring`` and re-seals every key under
    its first KEK on each write."""

    @property
    def keyring(self) -> Keyring: ...


@runtime_checkable
class SeedableKeyStore(KeyStore, Protocol):
    """A store that can take a whole first key set from elsewhere."""

    def create_from(self, source: KeySet, actor: str) -> KeySet:
        """Store ``source`` as the first key set; :class:`errors.KeyStoreError` if one exists."""
        ...


@runtime_checkable
class VersionedKeyStore(KeyStore, Protocol):
    """A store that keeps the set's version under a Redis key of its own."""

    @property
    def version_key(self) -> str: ...


def parse_key_set(raw: str | bytes, what: str) -> tuple[dict[str, Any], list[Any], int]:
    """``(document, entries, version)`` of a stored key set; ``ValueError("not a valid
    <what>")`` for anything else (the parser's own message could quote the input)."""
    try:
        data = json.loads(raw)
        entries, version = data["keys"], data["version"]
        if not isinstance(entries, list) or type(version) is not int:
            raise TypeError
    except (ValueError, TypeError, KeyError, RecursionError):
        raise ValueError(f"not a valid {what}") from None
    return data, entries, version


def key_set_from(
    entries: list[Any], version: int, private_key: Callable[[str], rsa.RSAPrivateKey]
) -> KeySet:
    """The key set of parsed ``entries``, each private key from ``private_key(kid)``;
    ``ValueError`` (naming a kid at most) for an entry without a valid kid or a broken set."""
    return KeySet(tuple(SigningKey.from_record(e, private_key) for e in entries), version)


def key_problem(key: object, kid: str | None = None) -> str | None:
    """Why ``key`` cannot be one of our signing keys, or None: it must be an RSA private key
    of at least 2048 bits (contract sec. 5) and, given ``kid``, have that RFC 7638
    thumbprint (same kid = same key)."""
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        return f"not an RSA key of at least {MIN_RSA_BITS} bits"
    if kid is not None and thumbprint(key.public_key()) != kid:
        return f"key thumbprint does not match kid {kid}"
    return None


class LastGoodSet:
    """Mixin of the stores that keep serving the last good set while the stored one cannot be
    read (:attr:`stale` says why): they publish it, but never sign from it, since the change
    they cannot see may have been a revocation."""

    stale: str | None
    not_signing: ClassVar[str]
    """The detail of :class:`errors.KeyStoreUnavailable` while stale."""

    def current(self) -> KeySet:
        raise NotImplementedError

    def signing_set(self) -> KeySet:
        """:meth:`current`, unless it is stale: then :class:`errors.KeyStoreUnavailable`."""
        ks = self.current()
        if self.stale is not None:
            raise errors.KeyStoreUnavailable(self.not_signing)
        return ks
