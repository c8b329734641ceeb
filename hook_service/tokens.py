"""Verification tokens (RS256, contract sec. 4) and Prelude challenge tokens (EdDSA, sec. 6)."""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hook_service import errors
from hook_service.keys import SigningKey


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


@dataclass(frozen=True, slots=True)
class ChallengeClaims:
    """What a verified Prelude challenge token tells us (contract sec. 6)."""

    sub: str
    challenge_id: str
    current_step: str


# --- challenge tokens: compact JWS (RFC 7515 sec. 7.1) parsed here, verified with cryptography --
# pyjwt checks every base64url character in a Python loop (tens of us per token, and reading the kid
# first parsed the token a second time); this is the hot path of POST /verification-token, so the
# same checks are done here with one regex per segment.

# base64url without padding (RFC 7515 sec. 2), optionally padded as some issuers do (as pyjwt).
_SEGMENT: Final = re.compile(r"([A-Za-z0-9_-]*)(={0,2})")
_NOT_A_JWT: Final = "challenge_token is not a JWT"


def _segment(value: str) -> bytes:
    match = _SEGMENT.fullmatch(value)
    if match is None:
        raise errors.InvalidRequest(_NOT_A_JWT)
    data, pad = match.groups()
    if len(data) % 4 == 1 or (pad and len(value) % 4):
        raise errors.InvalidRequest(_NOT_A_JWT)
    decoded = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    # Canonical encodings only (as pyjwt): non-zero trailing bits would let one token have
    # several spellings.
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode("ascii") != data:
        raise errors.InvalidRequest(_NOT_A_JWT)
    return decoded


@dataclass(frozen=True, slots=True)
class _Jws:
    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def _parse_jws(token: str) -> _Jws:
    parts = token.split(".")
    if len(parts) != 3:
        raise errors.InvalidRequest(_NOT_A_JWT)
    header_segment, payload_segment, signature_segment = parts
    try:
        header = json.loads(_segment(header_segment))
    except (ValueError, RecursionError):  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise errors.InvalidRequest(_NOT_A_JWT) from None
    if not isinstance(header, dict):
        raise errors.InvalidRequest(_NOT_A_JWT)
    payload, signature = _segment(payload_segment), _segment(signature_segment)
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    return _Jws(header, signing_input, payload, signature)


def _kid(jws: _Jws) -> str:
    kid = jws.header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise errors.InvalidRequest("challenge_token header has no kid")
    return kid


def read_challenge_kid(token: str) -> str:
    """The ``kid`` of a challenge token's header, unverified: it only selects the key in
    Prelude's app JWKS. Raises :class:`errors.InvalidRequest` if ``token`` is not a JWT."""
    return _kid(_parse_jws(token))


def _verify_jws(jws: _Jws, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The claims of ``jws`` once its EdDSA signature verifies; the JOSE header is checked
    first (RFC 7515 sec. 4.1), and only EdDSA is accepted (no alg confusion: none, HS*, RS*)."""
    if jws.header.get("alg") != "EdDSA":
        raise errors.InvalidSignature("challenge token is not signed with EdDSA")
    kid = jws.header.get("kid")
    # RFC 7515 sec. 4.1.11: we implement no extension, so any `crit` is refused; "b64": false
    # (RFC 7797, unencoded payload) is such an extension.
    if "crit" in jws.header or jws.header.get("b64", True) is not True:
        raise errors.InvalidSignature("challenge token rejected")
    if (kid is not None and not isinstance(kid, str)) or not isinstance(
        public_key, Ed25519PublicKey
    ):
        raise errors.InvalidSignature("challenge token rejected")
    try:
        public_key.verify(jws.signature, jws.signing_input)
    except InvalidSignature:
        raise errors.InvalidSignature("challenge token signature does not verify") from None
    try:
        claims = json.loads(jws.payload)
    except (ValueError, RecursionError):
        raise errors.InvalidRequest(_NOT_A_JWT) from None
    if not isinstance(claims, dict):
        raise errors.InvalidRequest(_NOT_A_JWT)
    return claims


class ChallengeToken:
    """A challenge token parsed once (not yet verified): :attr:`kid` picks the key in Prelude's
    app JWKS, then :func:`verify_challenge_token` checks it. Raises
    :class:`errors.InvalidRequest` if ``token`` is not a JWT."""

    __slots__ = ("jws",)

    def __init__(self, token: str) -> None:
        self.jws = _parse_jws(token)

    @property
    def kid(self) -> str:
        """The header's ``kid`` (unverified); :class:`errors.InvalidRequest` if missing."""
        return _kid(self.jws)


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int subclass; json.loads also accepts NaN and Infinity (never expiring).
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise errors.InvalidRequest(f"challenge_token claim {name} must be a NumericDate")
    return float(value)


def verify_challenge_token(
    token: str | ChallengeToken, public_key: Ed25519PublicKey, now: int, leeway: int = 30
) -> ChallengeClaims:
    """Verify a Prelude challenge token (EdDSA, contract sec. 6) and return its claims.

    Signature problems, another algorithm (alg confusion: none, HS*, RS*), expiry or a future
    ``nbf`` raise :class:`errors.InvalidSignature` ("challenge token ..."); a malformed token or
    a missing/invalid claim raises :class:`errors.InvalidRequest` naming the claim."""
    parsed = token if isinstance(token, ChallengeToken) else ChallengeToken(token)
    claims = _verify_jws(parsed.jws, public_key)
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
