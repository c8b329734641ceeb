"""Verify a verification token the way Prelude does at ``/stepup/continue`` (contract 4 and 5).

Written from the contract, independently of the service's own token code: RS256 only, ``kid``
looked up in the service's JWKS (cached 10 minutes, refetched once on an unknown kid), ``sub``,
``challenge_id`` and ``key`` equal to the challenge, ``status == "completed"``, ``iat`` and
``nbf`` not in the future, ``exp`` in the future but at most one hour ahead, and a ``jti`` never
seen before. The clock is injected, so a test or the rotation check can look at a later moment.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

Clock = Callable[[], float]

JWKS_CACHE_TTL: Final = 600.0  # Prelude caches our JWKS for 10 minutes (contract 5)
MAX_LIFETIME_AHEAD: Final = 3600  # exp at most one hour after verification (issue 3)
# Prelude's error for every rejected verification token (contract 4, /stepup/continue).
INVALID_VERIFICATION_TOKEN: Final = "invalid_verification_token"  # noqa: S105


class TokenRejected(Exception):
    """Prelude would refuse the token. ``rule`` names the check that failed."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Challenge:
    """What the verification token must match: the challenge token's claims."""

    sub: str
    challenge_id: str
    key: str


class JwksCache:
    """The service's JWKS as a verifier with a 10-minute cache sees it.

    ``fetch`` returns the JWKS document; an unknown kid triggers one refetch, even inside the
    10 minutes (contract 5: "re-fetches when it sees an unknown kid")."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[dict[str, Any]]],
        clock: Clock,
        ttl: float = JWKS_CACHE_TTL,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl = ttl
        self._keys: dict[str, dict[str, Any]] = {}
        self.fetched_at: float | None = None
        self.fetches = 0

    async def refresh(self) -> None:
        document = await self._fetch()
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise TokenRejected("jwks", "the JWKS has no keys array")
        self._keys = {
            jwk["kid"]: jwk
            for jwk in keys
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str)
        }
        self.fetched_at = self._clock()
        self.fetches += 1

    async def key(self, kid: str) -> dict[str, Any]:
        """The JWK for ``kid``; raises :class:`TokenRejected` if even a fresh JWKS lacks it."""
        if self.fetched_at is None or self._clock() - self.fetched_at >= self._ttl:
            await self.refresh()
        if kid not in self._keys:
            await self.refresh()
        jwk = self._keys.get(kid)
        if jwk is None:
            raise TokenRejected("kid", f"kid {kid!r} is not in the service's JWKS")
        return jwk

    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)


@dataclass(slots=True)
class TokenVerifier:
    """Prelude's check of verification tokens, remembering every ``jti`` it accepted."""

    jwks: JwksCache
    clock: Clock
    seen_jti: set[str] = field(default_factory=set)

    async def verify(
        self, token: str, challenge: Challenge, *, remember: bool = True
    ) -> dict[str, Any]:
        """The token's claims if Prelude would accept it now; raises :class:`TokenRejected`.

        ``remember=False`` re-checks a token already accepted once (the rotation check looks at
        the same token at several moments) without tripping the ``jti`` rule."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenRejected("format", f"not a JWT ({exc})") from None
        if header.get("alg") != "RS256":
            raise TokenRejected("alg", f"alg is {header.get('alg')!r}; only RS256 is accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("kid", "the header has no kid")
        jwk = await self.jwks.key(kid)
        if jwk.get("kty") != "RSA":
            raise TokenRejected("kid", f"kid {kid!r} is a {jwk.get('kty')!r} key, not RSA")
        if jwk.get("alg", "RS256") != "RS256":
            raise TokenRejected("kid", f"kid {kid!r} is published for {jwk['alg']!r}, not RS256")
        try:
            public_key = jwt.PyJWK.from_json(json.dumps(jwk), algorithm="RS256").key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError) as exc:
            raise TokenRejected("kid", f"kid {kid!r} is not a usable RSA key ({exc})") from None
        if not isinstance(public_key, RSAPublicKey):
            raise TokenRejected("kid", f"kid {kid!r} is not an RSA public key")
        try:
            # Time claims are checked below against the injected clock, not pyjwt's.
            claims: dict[str, Any] = jwt.decode(
                token,
                public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise TokenRejected("signature", f"RS256 signature does not verify ({exc})") from None
        self._check_claims(claims, challenge, self.clock(), fresh=remember)
        if remember:
            self.seen_jti.add(claims["jti"])
        return claims

    def _check_claims(
        self, claims: dict[str, Any], challenge: Challenge, now: float, *, fresh: bool
    ) -> None:
        for name in ("sub", "challenge_id", "key"):
            expected = getattr(challenge, name)
            if claims.get(name) != expected:
                raise TokenRejected(
                    name, f"{name} is {claims.get(name)!r}, the challenge has {expected!r}"
                )
        if claims.get("status") != "completed":
            raise TokenRejected("status", f"status is {claims.get('status')!r}, not 'completed'")
        times = {}
        for name in ("iat", "nbf", "exp"):
            value = claims.get(name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TokenRejected(name, f"{name} is {value!r}, not a number")
            times[name] = value
        if times["iat"] > now:
            raise TokenRejected("iat", f"iat is {times['iat'] - now:.0f} s in the future")
        if times["nbf"] > now:
            raise TokenRejected("nbf", f"nbf is {times['nbf'] - now:.0f} s in the future")
        if times["exp"] <= now:
            raise TokenRejected("exp", f"expired {now - times['exp']:.0f} s ago")
        if times["exp"] - now > MAX_LIFETIME_AHEAD:
            raise TokenRejected(
                "exp", f"exp is {times['exp'] - now:.0f} s ahead, more than {MAX_LIFETIME_AHEAD} s"
            )
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise TokenRejected("jti", "jti is missing")
        if fresh and jti in self.seen_jti:
            raise TokenRejected("jti", f"jti {jti!r} was already used by another token in this run")
