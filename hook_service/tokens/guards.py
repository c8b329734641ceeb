"""The two claim guards of :class:`~hook_service.tokens.issuer.TokenIssuer`.

A token must never be signed, nor handed out again, past a revocation that happened on
another replica. Which guard holds that depends on where the two stores are, and is chosen
once, by :func:`hook_service.collaborators.claim_guard`:

* :class:`VersionInClaim`: the key set's version lives on the very Redis where the pending
  steps are claimed, so the claim's own script checks that the version that signed is still
  current (one round trip, no extra read);
* :class:`RereadKeySet`: anything else (the file store, or two Redis servers). The key set is
  re-read before signing and after claiming.
"""

from __future__ import annotations

from hook_service.keys.backends.base import KeyStore, VersionedKeyStore
from hook_service.keys.lifecycle import KeySet
from hook_service.store.base import Claimed, KeySetGuard, Store
from hook_service.tokens.base import IssuedToken


class RereadKeySet:
    """Re-read the shared key set before signing and after claiming (any key store)."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def __repr__(self) -> str:
        return f"RereadKeySet({type(self.keys).__name__})"

    async def signing_set(self) -> KeySet:
        return await self.keys.refresh()

    async def changed(self) -> KeySet:
        return await self.keys.refresh()

    async def claim(
        self,
        store: Store,
        issued: IssuedToken,
        now: float,
        signed_with: KeySet,
        scope: str | None = None,
    ) -> Claimed | None:
        return await store.claim(issued.user_id, issued.key, issued, now, scope=scope)

    async def latest(self) -> KeySet:
        return await self.keys.refresh()


class VersionInClaim:
    """The claim itself checks the key set's version (``keys`` on the store's own Redis)."""

    def __init__(self, keys: VersionedKeyStore) -> None:
        self.keys = keys

    def __repr__(self) -> str:
        return f"VersionInClaim({self.keys.version_key!r})"

    async def signing_set(self) -> KeySet:
        # The set in memory: if another replica changed it since, the claim says so.
        return self.keys.signing_set()

    async def changed(self) -> KeySet:
        return await self.keys.refresh()

    async def claim(
        self,
        store: Store,
        issued: IssuedToken,
        now: float,
        signed_with: KeySet,
        scope: str | None = None,
    ) -> Claimed | None:
        guard = KeySetGuard(self.keys.version_key, signed_with.version)
        return await store.claim(issued.user_id, issued.key, issued, now, guard, scope=scope)

    async def latest(self) -> KeySet:
        # The claim has just seen this version current (or the stored token's retry did).
        return self.keys.current()
