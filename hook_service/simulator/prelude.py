"""Prelude's signing side: its app keys and JWKS, signed hook requests, challenge tokens.

Contract 2.2-2.3 (hook signature) and 6 (challenge token). One PEM file holds both of
Prelude's keys: the RSA key that signs hook requests and the Ed25519 key that signs challenge
tokens (contract 9.6: Prelude's app JWKS is taken to hold both, selected by kid).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

USER_AGENT: Final = "Prelude-SessionStepUpHook/1.0"
SIGNATURE_HEADER: Final = "X-Webhook-Signature"
KEY_ID_HEADER: Final = "X-Webhook-Signature-Key-Id"
# Contract 2.3 step 2: the webhooks page shows this prefix, the hook page does not.
SIGNATURE_PREFIX: Final = "rsassa-pss-sha256="
# Contract 6: how long the simulated challenge stays open; Prelude's value is not documented.
CHALLENGE_TTL: Final = 600
# Contract 6: the current_step of a challenge whose every step is done.
COMPLETED: Final = "completed"

_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.DOTALL)


class PreludeKeyError(Exception):
    """The Prelude key file is missing, unreadable or does not hold the two keys."""


def new_challenge_id() -> str:
    """A fresh challenge id in Prelude's style."""
    return "chl_sim_" + secrets.token_hex(12)


def new_user_id() -> str:
    """A fresh Prelude-style user id (``usr_`` + 27 characters, contract 2.1)."""
    return "usr_sim" + secrets.token_hex(12)


def new_session_id() -> str:
    """A fresh session id, the ``sid`` claim of a challenge token (contract 6)."""
    return "ses_sim_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a hook decision (contract 3), as the challenge lists it."""

    order: int
    key: str
    expiration_duration: int


@dataclass(frozen=True, slots=True)
class PreludeChallenge:
    """The challenge Prelude opens when the hook answers ``review`` (contract 1, step 4):
    what each of its challenge tokens says. Steps are taken in ``order``."""

    sub: str
    scope_requested: str
    steps: tuple[Step, ...]
    metadata: tuple[tuple[str, str], ...] = ()
    challenge_id: str = field(default_factory=new_challenge_id)
    sid: str = field(default_factory=new_session_id)

    @classmethod
    def open(
        cls,
        decision: dict[str, Any],
        *,
        sub: str,
        scope: str,
        metadata: dict[str, str] | None = None,
    ) -> PreludeChallenge:
        """The challenge for a (linted) ``review`` decision's steps."""
        steps = sorted(
            (
                Step(int(s["order"]), str(s["key"]), int(s["expiration_duration"]))
                for s in decision.get("steps") or []
            ),
            key=lambda step: step.order,
        )
        return cls(sub, scope, tuple(steps), tuple(sorted((metadata or {}).items())))

    def claims(self, current_step: str, now: float) -> dict[str, Any]:
        """The claims of the challenge token whose current step is ``current_step``: every
        earlier step ``done``, that one and later ones not (all done for ``"completed"``).
        Claim names as Prelude's JS SDK reads them (contract 6)."""
        keys = [step.key for step in self.steps]
        if current_step == COMPLETED:
            position = len(keys)
        elif current_step in keys:
            position = keys.index(current_step)
        else:
            raise ValueError(f"{current_step!r} is not a step of this challenge")
        return {
            "sub": self.sub,
            "sid": self.sid,
            "challenge_id": self.challenge_id,
            "scope_requested": self.scope_requested,
            "current_step": current_step,
            "steps": [
                {
                    "order": step.order,
                    "key": step.key,
                    "expiration_duration": step.expiration_duration,
                    "done": index < position,
                }
                for index, step in enumerate(self.steps)
            ],
            "metadata": dict(self.metadata),
            "grant_mode": "single-use",
            "exp": int(now) + CHALLENGE_TTL,
            "jti": secrets.token_hex(16),
        }


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) over the key's required members."""
    required = {"RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def _public_jwk(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    members: dict[str, Any]
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        members = {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
        alg = "PS256"  # hook signatures are RSASSA-PSS SHA-256 (contract 2.3)
    else:
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        members = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        alg = "EdDSA"
    return {"kty": members["kty"], "kid": thumbprint(members), "use": "sig", "alg": alg, **members}


@dataclass(frozen=True)
class PreludeKeys:
    """Prelude's two app keys. Private material stays out of ``repr`` and of :meth:`jwks`."""

    hook_key: rsa.RSAPrivateKey = field(repr=False)
    challenge_key: ed25519.Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> PreludeKeys:
        """Fresh keys: RSA-2048 (contract 5 asks at least that of RSA keys) and Ed25519."""
        return cls(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ed25519.Ed25519PrivateKey.generate(),
        )

    @classmethod
    def load(cls, path: Path) -> PreludeKeys:
        """Read the two unencrypted PEM private keys (any order) from ``path``."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PreludeKeyError(f"{path}: {exc.strerror}") from None
        hook_key: rsa.RSAPrivateKey | None = None
        challenge_key: ed25519.Ed25519PrivateKey | None = None
        for block in _PEM_BLOCK.findall(data):
            try:
                key = serialization.load_pem_private_key(block, password=None)
            except (ValueError, TypeError) as exc:
                raise PreludeKeyError(f"{path}: unreadable PEM block ({exc})") from None
            if isinstance(key, rsa.RSAPrivateKey):
                hook_key = key
            elif isinstance(key, ed25519.Ed25519PrivateKey):
                challenge_key = key
        if hook_key is None or challenge_key is None:
            raise PreludeKeyError(
                f"{path}: needs one RSA and one Ed25519 private key in PEM "
                "(create one with `hook-service simulate jwks --prelude-key PATH --create`)"
            )
        return cls(hook_key, challenge_key)

    def save(self, path: Path) -> None:
        """Write both keys to a new file with mode 0600; never overwrite an existing one."""
        pem = b"".join(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            for key in (self.hook_key, self.challenge_key)
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise PreludeKeyError(f"{path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as out:
            out.write(pem)

    @property
    def hook_kid(self) -> str:
        return str(_public_jwk(self.hook_key)["kid"])

    @property
    def challenge_kid(self) -> str:
        return str(_public_jwk(self.challenge_key)["kid"])

    def jwks(self) -> dict[str, Any]:
        """Prelude's app JWKS as the service fetches it (public members only)."""
        return {"keys": [_public_jwk(self.hook_key), _public_jwk(self.challenge_key)]}

    def sign(self, body: bytes, *, prefix: bool = False, salt: str = "max") -> str:
        """``X-Webhook-Signature`` for ``body``: RSASSA-PSS, SHA-256, MGF1-SHA-256, base64url.

        Contract 2.3 step 5 leaves the salt length open: ``"max"`` is what Go's
        ``rsa.SignPSS`` uses with nil options, ``"hash"`` is 32 bytes."""
        salt_length = padding.PSS.MAX_LENGTH if salt == "max" else padding.PSS.DIGEST_LENGTH
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)
        value = b64url(self.hook_key.sign(body, pss, hashes.SHA256()))
        return SIGNATURE_PREFIX + value if prefix else value

    def hook_headers(self, body: bytes, **sign_options: Any) -> dict[str, str]:
        """The headers Prelude sends with a hook request (contract 2.2)."""
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: self.sign(body, **sign_options),
            KEY_ID_HEADER: self.hook_kid,
        }

    def challenge_token(self, challenge: PreludeChallenge, current_step: str, now: float) -> str:
        """A challenge token as Prelude mints it (contract 6): an EdDSA JWT with
        :meth:`PreludeChallenge.claims`."""
        headers = {"kid": self.challenge_kid, "typ": "JWT"}
        claims = challenge.claims(current_step, now)
        return jwt.encode(claims, self.challenge_key, algorithm="EdDSA", headers=headers)

    def forged_challenge_token(
        self, challenge: PreludeChallenge, current_step: str, now: float
    ) -> str:
        """A challenge token that names Prelude's challenge kid but is signed by a throwaway
        Ed25519 key: what a service that decodes without verifying would accept."""
        claims = challenge.claims(current_step, now)
        other = ed25519.Ed25519PrivateKey.generate()
        headers = {"kid": self.challenge_kid, "typ": "JWT"}
        return jwt.encode(claims, other, algorithm="EdDSA", headers=headers)
