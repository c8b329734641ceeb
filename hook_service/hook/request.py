"""The delegation-hook request: parsing (contract 2.1) and signature verification (contract 2.3).

Pure: plain values in, plain values out; no HTTP framework, no I/O. The endpoint reads the raw
body, looks the key up by ``X-Webhook-Signature-Key-Id`` in Prelude's app JWKS
(:mod:`hook_service.prelude_keys`), calls :func:`verify_signature` over the *raw* bytes and
only then :func:`parse_hook_request`.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from hook_service import errors

# --- signature header format ---------------------------------------------------------------

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
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)


def parse_signature_header(value: str | None) -> bytes:
    """Decode an ``X-Webhook-Signature`` value into raw signature bytes.

    Accepts the forms listed in :data:`SIGNATURE_PREFIXES`, base64url with or without ``=``
    padding. Raises :class:`errors.InvalidSignature` when the header is missing or malformed;
    the message never echoes the value.
    """
    if value is None:
        raise errors.InvalidSignature("missing X-Webhook-Signature header")
    raw = value.strip(" \t")
    encoded = next((raw[len(p) :] for p in SIGNATURE_PREFIXES if raw.startswith(p)), None)
    if encoded is None:
        raise errors.InvalidSignature("X-Webhook-Signature has an unsupported prefix")
    match = _B64URL.fullmatch(encoded)
    if match is None:
        raise errors.InvalidSignature("X-Webhook-Signature is not base64url")
    pad = match.group(1)
    body_len = len(encoded) - len(pad)
    if pad and len(encoded) % 4:
        raise errors.InvalidSignature("X-Webhook-Signature has wrong base64 padding")
    if not pad and not SIGNATURE_PADDING_OPTIONAL and body_len % 4:
        raise errors.InvalidSignature("X-Webhook-Signature must be padded base64url")
    if body_len % 4 == 1 or body_len * 3 // 4 > _MAX_SIGNATURE_BYTES:
        raise errors.InvalidSignature("X-Webhook-Signature has an impossible length")
    try:
        return base64.urlsafe_b64decode(encoded[:body_len] + "=" * (-body_len % 4))
    except ValueError:  # pragma: no cover - binascii.Error; the checks above rule it out
        raise errors.InvalidSignature("X-Webhook-Signature is not base64url") from None


def verify_signature(body: bytes, signature: str | bytes, public_key: RSAPublicKey) -> None:
    """Verify Prelude's RSASSA-PSS SHA-256 signature over the raw request ``body``.

    ``signature`` is the ``X-Webhook-Signature`` header value (decoded with
    :func:`parse_signature_header`) or, as ``bytes``, an already decoded signature.
    PKCS#1 v1.5 signatures do not verify. Raises :class:`errors.InvalidSignature`.
    """
    sig = parse_signature_header(signature) if isinstance(signature, str) else signature
    if not isinstance(public_key, RSAPublicKey):
        raise errors.InvalidSignature("signature key is not an RSA key")
    try:
        public_key.verify(sig, body, _PSS, hashes.SHA256())
    except (_CryptoInvalidSignature, ValueError):
        raise errors.InvalidSignature("signature does not verify") from None


# --- request model -------------------------------------------------------------------------

PHONE_NUMBER: Final = "phone_number"
EMAIL_ADDRESS: Final = "email_address"


@dataclass(frozen=True, slots=True)
class Identifier:
    """One of the user's identifiers; ``type`` is usually ``email_address`` or ``phone_number``."""

    type: str
    value: str


@dataclass(frozen=True, slots=True)
class HookRequest:
    """A parsed hook request (contract 2.1). Mappings hold plain ``dict`` values: treat as
    read-only; they are handed to CEL as they are."""

    scope_requested: str
    user_id: str
    identifiers: tuple[Identifier, ...]
    signals: Mapping[str, Any]
    metadata: Mapping[str, str]
    # Derived once here because cel_context() runs on every hook call (the hot path).
    _has_phone: bool = field(init=False, repr=False, compare=False)
    _has_email: bool = field(init=False, repr=False, compare=False)
    _cel_identifiers: list[dict[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        types = {i.type for i in self.identifiers}
        object.__setattr__(self, "_has_phone", PHONE_NUMBER in types)
        object.__setattr__(self, "_has_email", EMAIL_ADDRESS in types)
        cel_ids = [{"type": i.type, "value": i.value} for i in self.identifiers]
        object.__setattr__(self, "_cel_identifiers", cel_ids)

    @property
    def has_phone(self) -> bool:
        """Whether any identifier has type ``phone_number``."""
        return self._has_phone

    @property
    def has_email(self) -> bool:
        """Whether any identifier has type ``email_address``."""
        return self._has_email

    def cel_context(self) -> dict[str, Any]:
        """The CEL variables of a policy ``when`` expression (design.md "Policy file").

        A fresh top-level dict each call; nested values are shared, never copied, and must not
        be mutated. cel-expr-python only accepts plain dicts and lists.
        """
        signals = self.signals if isinstance(self.signals, dict) else dict(self.signals)
        metadata = self.metadata if isinstance(self.metadata, dict) else dict(self.metadata)
        return {
            "scope": self.scope_requested,
            "user_id": self.user_id,
            "identifiers": self._cel_identifiers,
            "signals": signals,
            "metadata": metadata,
            "has_phone": self._has_phone,
            "has_email": self._has_email,
        }


# --- parsing -------------------------------------------------------------------------------

# Contract 2.1 / 7: Prelude's scope pattern ^[a-zA-Z0-9.\-_:]+$ (fullmatch, so no trailing "\n").
SCOPE_PATTERN: Final = re.compile(r"[a-zA-Z0-9.\-_:]+")
# Metadata keys in this charset are named as "metadata.<key>" in errors, others quoted.
_PLAIN_KEY: Final = re.compile(r"[a-zA-Z0-9.\-_:]{1,40}")
# A JSON "\uD800".."\uDFFF" escape; only then can the parsed text hold a lone surrogate.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> NoReturn:
    # Python's json accepts NaN/Infinity; RFC 8259 JSON does not, and CEL maths on them is odd.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # e.g. 1e400 overflows to inf
        raise ValueError("number out of range")
    return number


def load_json(body: bytes) -> Any:
    """Decode a request body as strict RFC 8259 JSON; :class:`errors.InvalidRequest` otherwise.

    Used for every JSON body the service accepts, so all endpoints share the same hardening
    (UTF-8 only, no NaN/Infinity, no overflowing numbers, bounded nesting, no lone surrogates)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidRequest("request body is not valid UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; so are huge ints
        raise errors.InvalidRequest("request body is not valid JSON") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate would break UTF-8 logs, Redis, CEL
            raise errors.InvalidRequest("request body has an unpaired surrogate escape") from None
    return data


def _string(data: Mapping[str, Any], key: str, name: str | None = None) -> str:
    name = name or key
    value = data.get(key)
    if value is None:
        raise errors.InvalidRequest(f"{name} is required")
    if not isinstance(value, str):
        raise errors.InvalidRequest(f"{name} must be a string")
    return value


def _collection(data: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    # Absent or null means empty: Go's encoding/json writes nil slices/maps as null, and
    # contract 2.1 allows missing metadata and empty identifiers.
    value = data.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise errors.InvalidRequest(f"{key} must be an {'array' if kind is list else 'object'}")
    return value


def _metadata_name(key: str) -> str:
    return f"metadata.{key}" if _PLAIN_KEY.fullmatch(key) else f"metadata[{json.dumps(key[:40])}]"


def parse_hook_request(body: bytes) -> HookRequest:
    """Parse and validate a hook request body (contract 2.1).

    Lenient where Prelude may evolve (unknown fields ignored everywhere, unknown identifier
    types kept, metadata beyond Prelude's documented limits accepted), strict on types.
    Raises :class:`errors.InvalidRequest` whose detail names the offending field.
    """
    data = load_json(body)
    if not isinstance(data, dict):
        raise errors.InvalidRequest("request body must be a JSON object")
    scope = _string(data, "scope_requested")
    if not SCOPE_PATTERN.fullmatch(scope):
        raise errors.InvalidRequest(r"scope_requested must match ^[a-zA-Z0-9.\-_:]+$")
    user_id = _string(data, "user_id")
    if not user_id:
        raise errors.InvalidRequest("user_id must not be empty")

    identifiers: list[Identifier] = []
    for index, item in enumerate(_collection(data, "identifiers", list)):
        if not isinstance(item, dict):
            raise errors.InvalidRequest(f"identifiers[{index}] must be an object")
        identifiers.append(
            Identifier(
                type=_string(item, "type", f"identifiers[{index}].type"),
                value=_string(item, "value", f"identifiers[{index}].value"),
            )
        )

    signals = _collection(data, "signals", dict)
    metadata = _collection(data, "metadata", dict)
    for key, value in metadata.items():
        # Prelude's documented limits (5 entries, 12/32 chars) are Prelude's to enforce; a
        # 400 here would break step-up the day Prelude relaxes them. Only the type is ours.
        if not isinstance(value, str):
            raise errors.InvalidRequest(f"{_metadata_name(key)} must be a string")

    return HookRequest(
        scope_requested=scope,
        user_id=user_id,
        identifiers=tuple(identifiers),
        signals=signals,
        metadata=metadata,
    )
