"""The hook signature (contract 2.3): the ``X-Webhook-Signature`` header format, RSASSA-PSS
SHA-256 verification over the raw body, and :class:`SignatureCheck`, which picks the key by kid
in Prelude's app JWKS and verifies.

Pure apart from the key lookup (an injected :class:`~hook_service.prelude.base.AppJwks`): no
HTTP framework. The endpoint passes the raw body and the two header values; nothing is parsed
or recorded before the check passes.
"""

from __future__ import annotations

import base64
import re
from typing import Final

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from hook_service import errors
from hook_service.prelude.base import AppJwks

# --- the header and the signature ----------------------------------------------------------

# Contract 2.3 steps 2-3 and section 9 question 5: the step-up hook page shows a bare base64url
# value, the webhooks page a value starting with "rsassa-pss-sha256=", and padding is not
# documented. Until Prelude settles it we accept every combination; "" means "no prefix".
# Change only these two constants when Prelude documents the exact form.
SIGNATURE_PREFIXES: Final[tuple[str, ...]] = ("rsassa-pss-sha256=", "")
SIGNATURE_PADDING_OPTIONAL: Final[bool] = True

# RSA-8192 gives 1024-byte signatures; anything longer cannot verify, so refuse to decode it.
_MAX_SIGNATURE_BYTES: Final = 1024
# base64url alphabet only (RFC 4648 section 5); "+" and "/" are the other alphabet and rejected.
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+(={0,2})")

# Contract 2.3 step 5: PSS with SHA-256 and MGF1-SHA-256. The salt length is undocumented, so
# AUTO (any salt length, verification only) covers Go's "equals hash" (32) and max-length salts.
_MALFORMED: Final = "malformed"  # the InvalidSignature reason of a header that cannot decode

_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)


def parse_signature_header(value: str | None) -> bytes:
    """Decode an ``X-Webhook-Signature`` value into raw signature bytes.

    Accepts the forms listed in :data:`SIGNATURE_PREFIXES`, base64url with or without ``=``
    padding. Raises :class:`errors.InvalidSignature` when the header is missing or malformed;
    the message never echoes the value.
    """
    if value is None:
        raise errors.InvalidSignature("missing X-Webhook-Signature header", "missing")
    raw = value.strip(" \t")
    encoded = next((raw[len(p) :] for p in SIGNATURE_PREFIXES if raw.startswith(p)), None)
    if encoded is None:
        raise errors.InvalidSignature("X-Webhook-Signature has an unsupported prefix", _MALFORMED)
    match = _B64URL.fullmatch(encoded)
    if match is None:
        raise errors.InvalidSignature("X-Webhook-Signature is not base64url", _MALFORMED)
    pad = match.group(1)
    body_len = len(encoded) - len(pad)
    if pad and len(encoded) % 4:
        raise errors.InvalidSignature("X-Webhook-Signature has wrong base64 padding", _MALFORMED)
    if not pad and not SIGNATURE_PADDING_OPTIONAL and body_len % 4:
        raise errors.InvalidSignature("X-Webhook-Signature must be padded base64url", _MALFORMED)
    if body_len % 4 == 1 or body_len * 3 // 4 > _MAX_SIGNATURE_BYTES:
        raise errors.InvalidSignature("X-Webhook-Signature has an impossible length", _MALFORMED)
    try:
        return base64.urlsafe_b64decode(encoded[:body_len] + "=" * (-body_len % 4))
    except ValueError:  # pragma: no cover - binascii.Error; the checks above rule it out
        raise errors.InvalidSignature("X-Webhook-Signature is not base64url", _MALFORMED) from None


def verify_signature(body: bytes, signature: str | bytes, public_key: RSAPublicKey) -> None:
    """Verify Prelude's RSASSA-PSS SHA-256 signature over the raw request ``body``.

    ``signature`` is the ``X-Webhook-Signature`` header value (decoded with
    :func:`parse_signature_header`) or, as ``bytes``, an already decoded signature.
    PKCS#1 v1.5 signatures do not verify. Raises :class:`errors.InvalidSignature`.
    """
    sig = parse_signature_header(signature) if isinstance(signature, str) else signature
    if not isinstance(public_key, RSAPublicKey):
        raise errors.InvalidSignature("signature key is not an RSA key", "wrong_key_type")
    try:
        public_key.verify(sig, body, _PSS, hashes.SHA256())
    except (_CryptoInvalidSignature, ValueError):
        raise errors.InvalidSignature("signature does not verify", "mismatch") from None


class SignatureCheck:
    """Contract 2.3 steps 2-5: decode the signature, look the RSA key up by kid in Prelude's app
    JWKS (``None``: none configured, every request refused) and verify the raw body with it.
    Raises :class:`errors.InvalidSignature`."""

    def __init__(self, keys: AppJwks | None) -> None:
        self._keys = keys

    async def verify(self, body: bytes, signature: str | None, key_id: str | None) -> None:
        """Check ``signature`` (the ``X-Webhook-Signature`` value) over ``body`` with the key
        ``key_id`` (``X-Webhook-Signature-Key-Id``) names; ``None`` means the header is absent."""
        kid = (key_id or "").strip()
        decoded = parse_signature_header(signature)
        if not kid:
            raise errors.InvalidSignature(
                "X-Webhook-Signature-Key-Id header is missing", "missing_key_id"
            )
        if self._keys is None:  # settings validation makes this unreachable
            raise errors.InvalidSignature("no Prelude JWKS is configured", "no_jwks")
        verify_signature(body, decoded, await self._keys.rsa_key(kid))
