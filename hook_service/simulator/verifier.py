"""Verify a verification token the way Prelude does at ``/stepup/continue`` (contract 4 and 5).

Written from the contract, independently of the service's own token code: RS256 only, ``kid``
looked up in the service's JWKS (cached 10 minutes, refetched once on an unknown kid), ``sub``,
``challenge_id`` and ``key`` equal to the challenge, ``status == "completed"``, ``iat`` and
``nbf`` not in the future, ``exp`` in the future but at most one hour ahead, a ``jti`` never
seen before, and a challenge token not expired. Each refusal carries the code Prelude would
answer (contract 4 and 6). The clock is injected, so a test or the rotation check can look at a
later moment.
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

# Prelude's refusals at /stepup/continue, the codes its SDKs map (contract 4 and 6). Which
# check yields which code is inferred from the names (contract 9.1): a token that is not valid
# in itself is invalid_verification_token; one for another user or challenge, or for a step
# already done, token_mismatch; a jti seen before, token_reused; status not "completed",
# step_not_completed; a key the challenge does not have, step_not_found; a later step while
# the current one is not done, step_bypassed; a challenge token past its exp,
# expired_challenge_token. The noqa: codes, not secrets.
INVALID_VERIFICATION_TOKEN: Final = "invalid_verification_token"  # noqa: S105
TOKEN_MISMATCH: Final = "token_mismatch"  # noqa: S105
TOKEN_REUSED: Final = "token_reused"  # noqa: S105
STEP_NOT_COMPLETED: Final = "step_not_completed"
STEP_NOT_FOUND: Final = "step_not_found"
STEP_BYPASSED: Final = "step_bypassed"
EXPIRED_CHALLENGE_TOKEN: Final = "expired_challenge_token"  # noqa: S105


class TokenRejected(Exception):
    """Prelude would refuse the token. ``rule`` names the check that failed, ``code`` is the
    error Prelude would answer ``/stepup/continue`` with."""

    def __init__(self, rule: str, detail: str, code: str = INVALID_VERIFICATION_TOKEN) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail
        self.code = code


@dataclass(frozen=True, slots=True)
class Challenge:
    """What the verification token must match: the challenge token's claims. ``key`` is its
    current step; ``steps`` its ``(key, done)`` pairs in order and ``expires_at`` its ``exp``,
    when known (a challenge given only by its fields has neither)."""

    sub: str
    challenge_id: str
    key: str
    steps: tuple[tuple[str, bool], ...] = ()
    expires_at: float | None = None

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Challenge:
        """The challenge a challenge token's claims describe (contract 6)."""
        steps = tuple((str(s["key"]), bool(s["done"])) for s in claims.get("steps") or [])
        exp = claims.get("exp")
        return cls(
            str(claims["sub"]),
            str(claims["challenge_id"]),
            str(claims["current_step"]),
            steps,
            float(exp) if isinstance(exp, int | float) else None,
        )

    def refusal_for_key(self, key: Any) -> str:
        """Prelude's code for a token whose ``key`` is not the current step."""
        if not self.steps:
            return TOKEN_MISMATCH
        done = dict(self.steps)
        if key not in done:
            return STEP_NOT_FOUND
        return TOKEN_MISMATCH if done[key] else STEP_BYPASSED


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
        now = self.clock()
        if challenge.expires_at is not None and challenge.expires_at <= now:
            raise TokenRejected(
                "challenge",
                f"the challenge token expired {now - challenge.expires_at:.0f} s ago",
                EXPIRED_CHALLENGE_TOKEN,
            )
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
        self._check_claims(claims, challenge, now, fresh=remember)
        if remember:
            self.seen_jti.add(claims["jti"])
        return claims

    def _check_claims(
        self, claims: dict[str, Any], challenge: Challenge, now: float, *, fresh: bool
    ) -> None:
        for name in ("sub", "challenge_id"):
            expected = getattr(challenge, name)
            if claims.get(name) != expected:
                raise TokenRejected(
                    name,
                    f"{name} is {claims.get(name)!r}, the challenge has {expected!r}",
                    TOKEN_MISMATCH,
                )
        key = claims.get("key")
        if key != challenge.key:
            raise TokenRejected(
                "key",
                f"key is {key!r}, the challenge's current step is {challenge.key!r}",
                challenge.refusal_for_key(key),
            )
        if claims.get("status") != "completed":
            raise TokenRejected(
                "status",
                f"status is {claims.get('status')!r}, not 'completed'",
                STEP_NOT_COMPLETED,
            )
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
            raise TokenRejected(
                "jti", f"jti {jti!r} was already used by another token in this run", TOKEN_REUSED
            )
