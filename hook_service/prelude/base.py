"""What the service needs of Prelude's app JWKS (contract 2.3 step 4 and contract 6): the RSA
key that verifies a hook signature and the Ed25519 key that verifies a challenge token, each
looked up by kid. :class:`~hook_service.prelude.jwks.PreludeJwks` is the implementation (a
cache of the JWKS from a file or a URL)."""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey


class AppJwks(Protocol):
    """Prelude's app JWKS as a key lookup; both lookups raise
    :class:`~hook_service.errors.InvalidSignature` for an unknown kid or one of the wrong type."""

    @property
    def loaded(self) -> bool:
        """Whether a JWKS has been read at least once (``/readyz``)."""
        ...

    async def rsa_key(self, kid: str) -> RSAPublicKey:
        """The RSA key that verifies hook signatures (contract 2.3)."""
        ...

    async def ed25519_key(self, kid: str) -> Ed25519PublicKey:
        """The Ed25519 key that verifies challenge tokens (contract 6)."""
        ...
