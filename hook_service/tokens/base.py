"""What the token part shares: the value types and the issuer's claim guard.

* :class:`IssuedToken`: a minted verification token (:mod:`hook_service.tokens.jwt` mints it);
* :class:`ChallengeClaims`: what a verified Prelude challenge token says;
* :class:`ClaimGuard`: how :class:`~hook_service.tokens.issuer.TokenIssuer` keeps a claim
  from passing a change of the key set (a revocation on another replica), with two
  implementations in :mod:`hook_service.tokens.guards`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hook_service.keys.lifecycle import KeySet

if TYPE_CHECKING:  # the store records IssuedTokens: it imports this module
    from hook_service.store.base import Claimed, Store


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A minted verification token and what it is bound to. ``token`` is a bearer secret."""

    token: str = field(repr=False)
    jti: str
    kid: str
    expires_at: int
    challenge_id: str
    user_id: str
    key: str

    def to_json(self) -> dict[str, Any]:
        """The ``POST /verification-token`` response body (design.md)."""
        return {
            "verification_token": self.token,
            "jti": self.jti,
            "kid": self.kid,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class ChallengeStep:
    """One entry of a challenge token's ``steps`` claim, as Prelude's JS SDK reads it
    (contract sec. 6: ``order``, ``key``, ``expiration_duration``, ``done``)."""

    key: str
    done: bool
    order: int | None = None
    expiration_duration: int | None = None


@dataclass(frozen=True, slots=True)
class ChallengeClaims:
    """What a verified Prelude challenge token tells us (contract sec. 6).

    ``scope_requested`` and ``steps`` are ``None`` when the token does not carry them: the
    contract has them from the JS SDK only, which tolerates their absence, so reading a token
    does too; :func:`~hook_service.tokens.jwt.check_challenge_step` is where their absence is
    refused."""

    sub: str
    challenge_id: str
    current_step: str
    scope_requested: str | None = None
    steps: tuple[ChallengeStep, ...] | None = None


class ClaimGuard(Protocol):
    """The issuer's collaborator between the key store and the pending-step store: which set
    signs, how the claim is made so that no change of the key set slips in between, and which
    set the claimed token is checked against."""

    async def signing_set(self) -> KeySet:
        """The key set to sign with now."""
        ...

    async def changed(self) -> KeySet:
        """The key set to sign with after :meth:`claim` reported a change."""
        ...

    async def claim(
        self,
        store: Store,
        issued: IssuedToken,
        now: float,
        signed_with: KeySet,
        scope: str | None = None,
    ) -> Claimed | None:
        """Claim the pending step for ``issued`` (recorded for ``scope``, when given); None
        (nothing claimed) when the key set is no longer ``signed_with``."""
        ...

    async def latest(self) -> KeySet:
        """The key set whose published keys the claimed token must be among."""
        ...
