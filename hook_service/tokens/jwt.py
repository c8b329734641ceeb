"""Verification tokens (RS256, contract sec. 4) and Prelude challenge tokens (EdDSA, sec. 6).

Pure JWT work on plain values; the value types are in :mod:`hook_service.tokens.base`.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hook_service import errors
from hook_service.keys.lifecycle import SigningKey
from hook_service.tokens.base import ChallengeClaims, IssuedToken

__all__ = [
    "ChallengeClaims",
    "IssuedToken",
    "mint_verification_token",
    "read_challenge_kid",
    "verify_challenge_token",
]


def mint_verification_token(
    signing_key: SigningKey, *, user_id: str, challenge_id: str, key: str, now: int, ttl: int
) -> IssuedToken:
    """Sign a verification token for a completed custom step (contract sec. 4, design.md).

    Header ``{"alg": "RS256", "typ": "JWT", "kid"}``; claims ``sub``, ``challenge_id``, ``key``,
    ``status: "completed"``, ``jti``, ``iat = nbf = now``, ``exp = now + ttl``. Only the active
    key signs: a retired key leaves the JWKS before such a token would expire."""
    if signing_key.state != "active":
        raise ValueError(f"key {signing_key.kid} is {signing_key.state}, not active")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    # 128 random bits; Prelude rejects a reused jti (contract sec. 4)
    jti = secrets.token_urlsafe(16)
    claims = {
        "sub": user_id,
        "challenge_id": challenge_id,  # top-level string: the JS SDK reads it (contract sec. 4)
        "key": key,
        "status": "completed",
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    }
    headers = {"typ": "JWT", "kid": signing_key.kid}  # Prelude picks our JWKS key by kid (sec. 5)
    token = jwt.encode(claims, signing_key.private_key, algorithm="RS256", headers=headers)
    return IssuedToken(
        token=token,
        jti=jti,
        kid=signing_key.kid,
        expires_at=now + ttl,
        challenge_id=challenge_id,
        user_id=user_id,
        key=key,
    )


def read_challenge_kid(token: str) -> str:
    """The ``kid`` of a challenge token's header, unverified: it only selects the key in
    Prelude's app JWKS. Raises :class:`errors.InvalidRequest` if ``token`` is not a JWT."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise errors.InvalidRequest("challenge_token is not a JWT") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise errors.InvalidRequest("challenge_token header has no kid")
    return kid


# pyjwt checks the signature only; time claims are checked below against the injected ``now``.
_DECODE_OPTIONS: jwt.types.Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int subclass; json.loads also accepts NaN and Infinity (never expiring).
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise errors.InvalidRequest(f"challenge_token claim {name} must be a NumericDate")
    return float(value)


def verify_challenge_token(
    token: str, public_key: Ed25519PublicKey, now: int, leeway: int = 30
) -> ChallengeClaims:
    """Verify a Prelude challenge token (EdDSA, contract sec. 6) and return its claims.

    Signature problems, another algorithm (alg confusion: none, HS*, RS*), expiry or a future
    ``nbf`` raise :class:`errors.InvalidSignature` ("challenge token ..."); a malformed token or
    a missing/invalid claim raises :class:`errors.InvalidRequest` naming the claim."""
    try:
        claims = jwt.decode(token, public_key, algorithms=["EdDSA"], options=_DECODE_OPTIONS)
    except jwt.InvalidSignatureError:
        raise errors.InvalidSignature("challenge token signature does not verify") from None
    except jwt.InvalidAlgorithmError:
        raise errors.InvalidSignature("challenge token is not signed with EdDSA") from None
    except jwt.DecodeError:
        raise errors.InvalidRequest("challenge_token is not a JWT") from None
    except jwt.InvalidTokenError:
        raise errors.InvalidSignature("challenge token rejected") from None
    exp = _numeric(claims, "exp")
    if exp is None:
        raise errors.InvalidRequest("challenge_token claim exp is missing")
    if exp <= now - leeway:  # same boundary as RFC 7519 sec. 4.1.4 / pyjwt
        raise errors.InvalidSignature("challenge token has expired")
    nbf = _numeric(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise errors.InvalidSignature("challenge token is not valid yet")
    values = {}
    for name in ("sub", "challenge_id", "current_step"):
        value = claims.get(name)
        if not isinstance(value, str) or not value:
            raise errors.InvalidRequest(f"challenge_token claim {name} is missing or not a string")
        values[name] = value
    return ChallengeClaims(**values)
