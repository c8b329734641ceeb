"""Our signing keys: the pure life cycle (design.md "Key life cycle").

``next`` (published, not signing) -> ``active`` (signing) -> ``retired`` (published until
``retire_at``) -> removed. The pure functions take ``now`` and a ``new_key`` factory, so tests
inject time and pre-generated keys. Storage lives in :mod:`hook_service.keys.backends`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service import errors

KeyState = Literal["next", "active", "retired"]
NewKey = Callable[[], rsa.RSAPrivateKey]

PRELUDE_JWKS_CACHE = 600  # contract sec. 5: Prelude caches our JWKS for 10 minutes
CLOCK_SKEW = 60  # design.md: one minute of skew between us and Prelude
# A next key must be published this long before it signs, so that every verifier whose cached
# copy of our JWKS is at most 10 minutes old (contract sec. 5) already knows its kid.
PUBLISH_LEAD = PRELUDE_JWKS_CACHE + CLOCK_SKEW
TIME_FIELDS = ("created_at", "activated_at", "retire_at")
KID = re.compile(r"[A-Za-z0-9_-]{43}")  # a SHA-256 thumbprint, base64url without padding
_STATES: tuple[str, ...] = get_args(KeyState)


def _b64u_uint(value: int) -> str:
    # RFC 7518 sec. 6.3.1: big-endian, minimal octets; RFC 7515 sec. 2: base64url, no padding.
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint: SHA-256 over the required members ``e``, ``kty``, ``n`` in
    lexicographic order, without whitespace (sec. 3.2-3.3), base64url without padding."""
    numbers = public_key.public_numbers()
    members = {"e": _b64u_uint(numbers.e), "kty": "RSA", "n": _b64u_uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def generate_rsa_key() -> rsa.RSAPrivateKey:
    """A new RSA-2048 key with e = 65537 (contract sec. 5: RSA >= 2048 bits)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _rfc3339(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the set. ``private_key`` is kept out of ``repr`` and equality."""

    kid: str
    state: KeyState
    created_at: int
    activated_at: int | None
    retire_at: int | None
    private_key: rsa.RSAPrivateKey = field(repr=False, compare=False)

    @classmethod
    def new(cls, private_key: rsa.RSAPrivateKey, state: KeyState, now: int) -> SigningKey:
        """Wrap a fresh key; ``kid`` is its RFC 7638 thumbprint (design.md)."""
        activated = now if state == "active" else None
        return cls(thumbprint(private_key.public_key()), state, now, activated, None, private_key)

    def public_jwk(self) -> dict[str, str]:
        """The RFC 7517 JWK of the public half: exactly kty, kid, use, alg, n, e (contract
        sec. 5; never d, p, q, dp, dq, qi)."""
        pub = self.private_key.public_key().public_numbers()
        jwk = {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256"}
        return {**jwk, "n": _b64u_uint(pub.n), "e": _b64u_uint(pub.e)}

    def record(self) -> dict[str, Any]:
        """Stored metadata: kid, state and the times as Unix seconds (no key material)."""
        return {"kid": self.kid, "state": self.state, **{n: getattr(self, n) for n in TIME_FIELDS}}

    @classmethod
    def from_record(cls, entry: Any, private_key: Callable[[str], rsa.RSAPrivateKey]) -> SigningKey:
        """Inverse of :meth:`record`, with the private key from ``private_key(kid)``; raises
        ``ValueError`` (naming the kid at most) on a malformed entry; the kid is checked
        before ``private_key`` sees it (a loader uses it to find the key)."""
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if not isinstance(kid, str) or not KID.fullmatch(kid):
            raise ValueError("key entry without a valid kid")
        state = entry.get("state")
        times = [entry.get(n) for n in TIME_FIELDS]
        if state not in _STATES or type(times[0]) is not int:
            raise ValueError(f"key {kid}: invalid state or created_at")
        if not all(t is None or type(t) is int for t in times):
            raise ValueError(f"key {kid}: times must be integers or null")
        return cls(kid, state, times[0], times[1], times[2], private_key(kid))

    def to_json(self) -> dict[str, Any]:
        """Admin API shape (design.md "Admin API"); times in RFC 3339 UTC or None."""
        times = {n: _rfc3339(getattr(self, n)) for n in TIME_FIELDS}
        return {"kid": self.kid, "state": self.state, **times}


@dataclass(frozen=True, slots=True)
class KeySet:
    """Exactly one active and one next key, any number of retired keys; ``version`` counts
    changes. Raises ``ValueError`` when those invariants do not hold."""

    keys: tuple[SigningKey, ...]
    version: int

    def __post_init__(self) -> None:
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise ValueError("key set holds the same kid twice")
        for state in ("active", "next"):
            if sum(k.state == state for k in self.keys) != 1:
                raise ValueError(f"key set needs exactly one {state} key")
        if any((k.state == "retired") != (k.retire_at is not None) for k in self.keys):
            raise ValueError("retire_at must be set on retired keys and only on them")

    @property
    def active(self) -> SigningKey:
        """The key that signs verification tokens."""
        return next(k for k in self.keys if k.state == "active")

    @property
    def next(self) -> SigningKey:
        """The key published ahead of its activation."""
        return next(k for k in self.keys if k.state == "next")

    def published(self, now: float) -> tuple[SigningKey, ...]:
        """Keys in the JWKS at ``now``: next, active and retired keys until ``retire_at``."""
        return tuple(k for k in self.keys if k.retire_at is None or k.retire_at > now)

    def jwks(self, now: float) -> dict[str, list[dict[str, str]]]:
        """RFC 7517 sec. 5 JWK Set of the published keys."""
        return {"keys": [k.public_jwk() for k in self.published(now)]}

    def get(self, kid: str) -> SigningKey | None:
        """The key with this kid, or None."""
        return next((k for k in self.keys if k.kid == kid), None)

    def to_json(self, now: float) -> dict[str, Any]:
        """Admin API body: ``{"keys": [...]}`` of the keys still in the set at ``now``
        (design.md "Admin API"); a retired key past ``retire_at`` is gone."""
        return {"keys": [k.to_json() for k in self.published(now)]}


def initial_key_set(now: int, new_key: NewKey) -> KeySet:
    """First start: an active and a next key, version 1."""
    active = SigningKey.new(new_key(), "active", now)
    return KeySet((active, SigningKey.new(new_key(), "next", now)), 1)


def rotate(
    ks: KeySet,
    now: int,
    token_ttl: int,
    new_key: NewKey,
    *,
    force: bool = False,
    publish_lead: int = PUBLISH_LEAD,
) -> KeySet:
    """next -> active, active -> retired, a new next; retired keys past ``retire_at`` go.

    The old active key stays published for the longest token lifetime plus Prelude's 10-minute
    JWKS cache (contract sec. 5, rotation plan step 3) plus clock skew. A next key published
    less than ``publish_lead`` (``HOOK_KEY_PUBLISH_LEAD``, default :data:`PUBLISH_LEAD`) ago
    is not promoted unless ``force``: a verifier with a cached JWKS would meet its kid unknown
    (Prelude refetches then; others may not)."""
    if token_ttl <= 0:
        raise ValueError("token_ttl must be positive")
    if too_early(ks, now, publish_lead) and not force:
        ready_at = ks.next.created_at + publish_lead
        raise errors.RotationTooEarly(
            f"the next key {ks.next.kid} has been published for {now - ks.next.created_at} s; "
            f"verifiers that cached our JWKS may not know it before {_rfc3339(ready_at)}. "
            "Rotate then, or force the rotation"
        )
    retire_at = now + token_ttl + PRELUDE_JWKS_CACHE + CLOCK_SKEW
    retired = replace(ks.active, state="retired", retire_at=retire_at)
    active = replace(ks.next, state="active", activated_at=now)
    fresh = SigningKey.new(new_key(), "next", now)
    still = [k for k in ks.published(now) if k.state == "retired"]
    return KeySet((active, fresh, retired, *still), ks.version + 1)


def too_early(ks: KeySet, now: int, publish_lead: int = PUBLISH_LEAD) -> bool:
    """Whether the next key is younger than the publish lead (a rotation would need force)."""
    return now < ks.next.created_at + publish_lead


def rotation_due(ks: KeySet, now: int, interval: int, publish_lead: int = PUBLISH_LEAD) -> bool:
    """Whether a scheduled rotation (``HOOK_KEY_ROTATION_INTERVAL``) should happen at ``now``:
    the active key has signed for ``interval`` seconds and the next key has been published for
    the lead. A scheduled rotation is never forced; after a revocation it waits for the lead."""
    activated = ks.active.activated_at
    started = ks.active.created_at if activated is None else activated
    return now >= started + interval and not too_early(ks, now, publish_lead)


def with_next(ks: KeySet, private_key: rsa.RSAPrivateKey, now: int) -> KeySet:
    """Install ``private_key`` as the next key (``keys import``); the old next key, which never
    signed, is dropped. The imported key is published from ``now``, so it waits for the
    publish lead like any new next key."""
    fresh = SigningKey.new(private_key, "next", now)
    if ks.get(fresh.kid) is not None:
        raise errors.InvalidRequest(f"key {fresh.kid} is already in the key set")
    kept = [k for k in ks.published(now) if k.state != "next"]
    return KeySet((*kept, fresh), ks.version + 1)


def revoke(ks: KeySet, kid: str, now: int, new_key: NewKey) -> KeySet:
    """Drop ``kid`` from the set (and the JWKS) now. Revoking the active key promotes next
    (activated_at = now) and creates a new next; revoking next creates a new next."""
    target = ks.get(kid)
    if target is None:
        raise errors.UnknownKey(f"no key with kid {kid!r} in the key set")
    active, nxt = ks.active, ks.next
    if target.state == "active":
        active = replace(nxt, state="active", activated_at=now)
    if target.state in ("active", "next"):
        nxt = SigningKey.new(new_key(), "next", now)
    retired = [k for k in ks.published(now) if k.state == "retired" and k.kid != kid]
    return KeySet((active, nxt, *retired), ks.version + 1)
