"""Helpers shared by the application-level tests: Prelude's side of the wire, test keys, a
fake clock. Fixtures built on them live in conftest.py."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hook_service import keys
from hook_service.keys import generate_rsa_key

KEYS_DIR = Path(__file__).parent / "keys"
PRELUDE_JWKS_FILE = KEYS_DIR / "prelude_jwks.json"
PRELUDE_KID = "prelude-rsa-1"
CHALLENGE_KID = "prelude-ed-1"
API_KEY = "test-api-key-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"


def load_private_key(name: str) -> Any:
    """A pre-generated test key from tests/keys/ (never generated at test time)."""
    return serialization.load_pem_private_key((KEYS_DIR / name).read_bytes(), password=None)


class FakeClock:
    """An injectable clock that only moves when a test says so."""

    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sign_hook(
    body: bytes,
    *,
    key: str = "prelude_rsa.pem",
    kid: str = PRELUDE_KID,
    prefix: bool = True,
    salt_length: int = 32,
) -> dict[str, str]:
    """The headers Prelude sends with a hook request (contract 2.2 and 2.3)."""
    private_key = load_private_key(key)
    signature = private_key.sign(
        body,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length),
        hashes.SHA256(),
    )
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return {
        "Content-Type": "application/json",
        "User-Agent": "Prelude-SessionStepUpHook/1.0",
        "X-Webhook-Signature": ("rsassa-pss-sha256=" if prefix else "") + encoded,
        "X-Webhook-Signature-Key-Id": kid,
    }


def hook_body(
    *,
    scope: str = "transfer:write",
    user_id: str = "usr_39CfbdV8AsXQwdphtbJe4yH07aF",
    amount: str | None = "1500",
    phone: bool = True,
    platform: str = "WEB",
    **extra: Any,
) -> bytes:
    identifiers = [{"type": "email_address", "value": "user@example.com"}]
    if phone:
        identifiers.append({"type": "phone_number", "value": "+33612345678"})
    body: dict[str, Any] = {
        "scope_requested": scope,
        "user_id": user_id,
        "identifiers": identifiers,
        "signals": {"user_agent": "Mozilla/5.0", "platform": platform, "ip": "203.0.113.42"},
        "metadata": {} if amount is None else {"amount": amount, "currency": "USD"},
    }
    body.update(extra)
    return json.dumps(body).encode()


def challenge_token(
    *,
    sub: str = "usr_39CfbdV8AsXQwdphtbJe4yH07aF",
    challenge_id: str = "chl_1",
    current_step: str = "kyc_review",
    exp: float,
    key: str = "prelude_ed25519.pem",
    kid: str = CHALLENGE_KID,
) -> str:
    """A challenge token as Prelude mints it (contract 6): EdDSA JWT."""
    claims = {
        "sub": sub,
        "challenge_id": challenge_id,
        "current_step": current_step,
        "exp": int(exp),
        "jti": f"jti-{challenge_id}",
        "grant_mode": "single-use",
    }
    return jwt.encode(claims, load_private_key(key), algorithm="EdDSA", headers={"kid": kid})


class KeyFactory:
    """Hands out the pre-generated signing keys, then fresh ones (only long rotation tests)."""

    def __init__(self) -> None:
        self._supply = iter(hook_keys())

    def __call__(self) -> rsa.RSAPrivateKey:
        return next(self._supply, None) or generate_rsa_key()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- our own signing keys (tests/keys/hook_rsa_*.pem) ---------------------------------------


@functools.cache
def hook_keys() -> tuple[rsa.RSAPrivateKey, ...]:
    loaded = []
    for i in range(1, 5):
        key = serialization.load_pem_private_key(
            (KEYS_DIR / f"hook_rsa_{i}.pem").read_bytes(), password=None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        loaded.append(key)
    return tuple(loaded)


def key_supply(indices: list[int] | None = None) -> Callable[[], rsa.RSAPrivateKey]:
    """Hands out the pre-generated keys in order; fails the test when they run out."""
    supply = iter([hook_keys()[i] for i in (indices if indices is not None else range(4))])

    def take() -> rsa.RSAPrivateKey:
        key = next(supply, None)
        if key is None:
            pytest.fail("test needs more than the pre-generated keys")
        return key

    return take


def no_new_key() -> rsa.RSAPrivateKey:
    raise AssertionError("no key should be generated here")


def kid_of(i: int) -> str:
    return keys.thumbprint(hook_keys()[i].public_key())


def b64u_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def private_strings(key: rsa.RSAPrivateKey) -> list[str]:
    """Renderings of the private numbers that must never show up in output."""
    nums = key.private_numbers()
    out = []
    for v in (nums.d, nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp):
        out += [str(v)[:40], format(v, "x")[:40], keys._b64u_uint(v)[:40]]
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out += [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    return out
