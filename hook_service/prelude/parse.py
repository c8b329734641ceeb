"""Prelude's JWK Set (RFC 7517) parsed: its RSA keys (hook signatures) and Ed25519 keys
(challenge tokens), by kid, and every kid it holds (contract 2.3 step 4, contract 6).

A key that is unsupported or malformed is skipped with a log line naming its kid (never the
document); a document that is not a JWK Set at all raises :class:`FetchError`, as a failed
fetch does in :mod:`hook_service.prelude.jwks`.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from hook_service import logs

log = logging.getLogger(logs.PRELUDE)

MIN_RSA_BITS: Final = 2048  # contract 5 asks RSA >= 2048 of us; expect no less of Prelude


class FetchError(Exception):
    """A JWKS fetch or parse failure; ``str()`` is a short reason that is safe to log."""


@dataclass(frozen=True, slots=True)
class JwkSet:
    """The usable keys of one JWK Set, by kid."""

    rsa: Mapping[str, RSAPublicKey] = field(default_factory=dict)
    ed25519: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    # Every kid in the JWKS, usable or not: a known kid of the wrong type fails without a refetch.
    kids: frozenset[str] = frozenset()


def _b64url(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError("missing base64url member")
    return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)


def _rsa_key(jwk: Mapping[str, Any]) -> RSAPublicKey:
    n = int.from_bytes(_b64url(jwk.get("n")), "big")
    e = int.from_bytes(_b64url(jwk.get("e")), "big")
    if n.bit_length() < MIN_RSA_BITS:
        raise ValueError(f"RSA modulus shorter than {MIN_RSA_BITS} bits")
    return RSAPublicNumbers(e, n).public_key()


def _ed25519_key(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    if jwk.get("crv") != "Ed25519":
        raise ValueError("unsupported OKP curve")
    return Ed25519PublicKey.from_public_bytes(_b64url(jwk.get("x")))


def parse_jwks(raw: bytes) -> JwkSet:
    """Parse an RFC 7517 JWK Set. Unsupported or malformed keys are skipped (and logged), not
    fatal; raises :class:`FetchError` when ``raw`` is not a JWK Set at all."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise FetchError("invalid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise FetchError('not a JWK Set (no "keys" array)')
    rsa: dict[str, RSAPublicKey] = {}
    ed25519: dict[str, Ed25519PublicKey] = {}
    kids: set[str] = set()
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            log.warning("prelude JWKS: skipping a key without a kid")
            continue
        kid: str = jwk["kid"]
        kids.add(kid)
        kty = jwk.get("kty")
        if jwk.get("use", "sig") != "sig":  # RFC 7517 4.2: an "enc" key must not verify
            log.info("prelude JWKS: skipping kid=%r: use is not sig", kid[:64])
            continue
        try:
            if kty == "RSA" and kid not in rsa:
                rsa[kid] = _rsa_key(jwk)
            elif kty == "OKP" and kid not in ed25519:
                ed25519[kid] = _ed25519_key(jwk)
            elif kty not in ("RSA", "OKP"):
                log.info("prelude JWKS: skipping kid=%r: unsupported kty %r", kid[:64], kty)
        except (ValueError, TypeError) as exc:
            log.warning("prelude JWKS: skipping kid=%r (%s): %s", kid[:64], kty, exc)
    return JwkSet(rsa=rsa, ed25519=ed25519, kids=frozenset(kids))
