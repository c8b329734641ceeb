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
from hook_service._steps import COMPLETED
from hook_service.keys.lifecycle import SigningKey
from hook_service.store.base import wrong_scope
from hook_service.tokens.base import ChallengeClaims, ChallengeStep, IssuedToken
from hook_service.tokens.jws import (
    CompactJws,
    SignatureMismatch,
    parse_compact,
    sign_rs256,
    verify_eddsa,
)

__all__ = [
    "ChallengeClaims",
    "ChallengeStep",
    "CompactJws",
    "IssuedToken",
    "challenge_scope",
    "check_challenge_step",
    "mint_verification_token",
    "parse_compact",
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
    # Header {"alg": "RS256", "kid", "typ": "JWT"}: Prelude picks our JWKS key by kid (sec. 5).
    token = sign_rs256(claims, signing_key.kid, signing_key.private_key)
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


_MISMATCH = "challenge token signature does not verify"
_MAX_DATE = 2**53  # far past any date; every int up to it is exact as a float


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int subclass; json.loads also accepts NaN and Infinity (never expiring).
    # An int too large for a float (10**400) cannot be a date either, and must not be a 500.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, int) and abs(value) > _MAX_DATE)
        or not math.isfinite(value)
    ):
        raise errors.InvalidRequest(f"challenge_token claim {name} must be a NumericDate")
    return float(value)


def verify_challenge_token(
    token: str,
    public_key: Ed25519PublicKey,
    now: int,
    leeway: int = 30,
    *,
    parsed: CompactJws | None = None,
) -> ChallengeClaims:
    """Verify a Prelude challenge token (EdDSA, contract sec. 6) and return its claims;
    ``parsed``: :func:`parse_compact`'s reading of ``token``, if the caller has it already.

    Signature problems, another algorithm (alg confusion: none, HS*, RS*), expiry or a future
    ``nbf`` raise :class:`errors.InvalidSignature` ("challenge token ..."); a malformed token or
    a missing/invalid claim raises :class:`errors.InvalidRequest` naming the claim."""
    # The fast path takes only tokens pyjwt accepts with the same claims; a plain-shaped token
    # whose signature fails gets pyjwt's own answer at once; anything else goes through pyjwt,
    # which names what is wrong (tokens/jws.py).
    jws = parsed if parsed is not None else parse_compact(token)
    try:
        claims = None if jws is None else verify_eddsa(jws, public_key)
    except SignatureMismatch:
        raise errors.InvalidSignature(_MISMATCH) from None
    if claims is None:
        claims = _decode(token, public_key)
    return _claims(claims, now, leeway)


def _decode(token: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, public_key, algorithms=["EdDSA"], options=_DECODE_OPTIONS)
    except jwt.InvalidSignatureError:
        raise errors.InvalidSignature(_MISMATCH) from None
    except jwt.InvalidAlgorithmError:
        raise errors.InvalidSignature("challenge token is not signed with EdDSA") from None
    except jwt.DecodeError:
        raise errors.InvalidRequest("challenge_token is not a JWT") from None
    except jwt.InvalidTokenError:
        raise errors.InvalidSignature("challenge token rejected") from None
    return claims


def _claims(claims: dict[str, Any], now: int, leeway: int) -> ChallengeClaims:
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
    scope = claims.get("scope_requested")
    if scope is not None and (not isinstance(scope, str) or not scope):
        raise errors.InvalidRequest("challenge_token claim scope_requested must be a string")
    return ChallengeClaims(**values, scope_requested=scope, steps=_steps(claims.get("steps")))


def _steps(value: Any) -> tuple[ChallengeStep, ...] | None:
    """The ``steps`` claim; absent is ``None``, anything present but malformed is refused
    (a signed token that says something we cannot read must not pass for one that says
    nothing)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise errors.InvalidRequest("challenge_token claim steps must be a list")
    steps = []
    for index, item in enumerate(value):
        where = f"challenge_token claim steps[{index}]"
        if not isinstance(item, dict):
            raise errors.InvalidRequest(f"{where} must be an object")
        key, done = item.get("key"), item.get("done")
        if not isinstance(key, str) or not key:
            raise errors.InvalidRequest(f"{where}.key is missing or not a string")
        if not isinstance(done, bool):
            raise errors.InvalidRequest(f"{where}.done is missing or not a boolean")
        numbers: dict[str, int | None] = {}
        for name in ("order", "expiration_duration"):
            number = item.get(name)
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise errors.InvalidRequest(f"{where}.{name} must be an integer")
            numbers[name] = number
        steps.append(ChallengeStep(key, done, numbers["order"], numbers["expiration_duration"]))
    return tuple(steps)


def challenge_scope(claims: ChallengeClaims) -> str:
    """The scope the pending step must have been recorded for, once the challenge token shows
    that its ``current_step`` is one of its ``steps`` not yet ``done`` (issue 10, point 11):
    its ``scope_requested``. The comparison with the recorded scope is the store's, atomic
    with the claim (``scope=`` of :meth:`~hook_service.store.base.Store.claim`).

    Raises :class:`errors.InvalidRequest`. Fails closed: a token without ``scope_requested``
    or ``steps`` is refused, since nothing then shows that the challenge is the one the
    hook's decision opened (the contract's rule for what it cannot confirm). The
    explicit-fields form of ``POST /verification-token`` does not depend on these claims."""
    step = claims.current_step
    if claims.scope_requested is None:
        raise errors.InvalidRequest(
            "challenge_token has no scope_requested claim: it cannot be matched to the scope "
            "of the pending step (send user_id, challenge_id and key instead)"
        )
    if claims.steps is None:
        raise errors.InvalidRequest(
            "challenge_token has no steps claim: it cannot show that current_step is pending "
            "(send user_id, challenge_id and key instead)"
        )
    if step == COMPLETED:
        raise errors.InvalidRequest("the challenge is completed: no step is pending")
    matching = [s for s in claims.steps if s.key == step]
    if not matching:
        raise errors.InvalidRequest(f"current_step {step!r} is not one of the challenge's steps")
    if any(s.done for s in matching):
        raise errors.InvalidRequest(f"current_step {step!r} is already done in the challenge")
    return claims.scope_requested


def check_challenge_step(claims: ChallengeClaims, scope: str) -> None:
    """Refuse a challenge token that does not describe the pending step recorded for
    ``scope``: :func:`challenge_scope`'s checks, then ``scope_requested`` must be ``scope``
    (:class:`errors.NoPendingStep` otherwise, as the store's claim answers: no step is pending
    for the challenge's scope)."""
    requested = challenge_scope(claims)
    if requested != scope:
        raise errors.NoPendingStep(wrong_scope(claims.current_step, requested, scope))
