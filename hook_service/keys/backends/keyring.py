"""Envelope encryption of our private signing keys (README, "Key management in production").

Each private key is serialised as PKCS#8 DER and sealed with AES-256-GCM under a key-encryption
key (KEK) from ``HOOK_KEY_ENCRYPTION_KEYS``: a fresh 96-bit random nonce per encryption (NIST SP
800-38D sec. 8.2.2) and the kid as associated data, so a ciphertext moved to another kid's entry
fails to decrypt instead of silently swapping keys. The envelope names its KEK by a short
fingerprint, so that while KEKs are being rotated every replica picks the right one.

:meth:`Keyring.authenticate` tags a whole document (HMAC-SHA-256 under a key derived from the
KEK with HKDF, RFC 5869, so the KEK itself is used for nothing but AES-GCM): whoever can write
to the store but holds no KEK cannot change the clear metadata next to the sealed keys either.

:meth:`Keyring.cipher` does the same for other data at rest (the verification tokens a Redis
store keeps, issue 10 point 8): AES-256-GCM under a key derived from each KEK with HKDF and a
label naming the purpose, the record's name as associated data.
Pure: no I/O, and neither KEKs nor plaintext ever reach a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEK_BYTES = 32
NONCE_BYTES = 12
ALGORITHM = "A256GCM"
MAC_ALGORITHM = "HS256"
_MAC_INFO = b"prelude-stepup-hook key set MAC v1"


class DecryptError(Exception):
    """A sealed key cannot be opened; the message names the kid and KEK fingerprint only."""


def fingerprint(kek: bytes) -> str:
    """A short, non-secret name for a KEK: the first 8 hex digits of SHA-256 over a label and
    the key (the label keeps it distinct from any other hash of the same bytes)."""
    return hashlib.sha256(b"prelude-stepup-hook KEK\x00" + kek).hexdigest()[:8]


def wrong_length(keks: Sequence[bytes]) -> int | None:
    """The position (from 1) of the first KEK that is not :data:`KEK_BYTES` long, or None:
    AES-256 takes exactly 32 bytes. Positions, never values, go into messages."""
    return next((i for i, kek in enumerate(keks, start=1) if len(kek) != KEK_BYTES), None)


def _derive(kek: bytes, info: bytes) -> bytes:
    # RFC 5869: a separate key per purpose, so no KEK ever serves two algorithms.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(kek)


def _mac_key(kek: bytes) -> bytes:
    return _derive(kek, _MAC_INFO)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Keyring:
    """The configured KEKs: the first seals, all of them open. ``repr`` shows fingerprints."""

    keks: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keks:
            raise ValueError("a keyring needs at least one key-encryption key")
        position = wrong_length(self.keks)
        if position is not None:
            raise ValueError(f"key-encryption key {position} is not {KEK_BYTES} bytes")

    def __repr__(self) -> str:
        return f"Keyring(fingerprints={self.fingerprints})"

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(fingerprint(kek) for kek in self.keks)

    @property
    def primary(self) -> str:
        """Fingerprint of the KEK that seals."""
        return fingerprint(self.keks[0])

    def seal(self, kid: str, key: rsa.RSAPrivateKey) -> dict[str, str]:
        """The envelope of ``key``: ``{"alg", "kek", "nonce", "ct"}`` (base64, ct includes the
        GCM tag)."""
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keks[0]).encrypt(nonce, der, kid.encode())
        return {"alg": ALGORITHM, "kek": self.primary, "nonce": _b64(nonce), "ct": _b64(sealed)}

    def open(self, kid: str, envelope: object) -> rsa.RSAPrivateKey:
        """The private key in ``envelope``, sealed for ``kid``; :class:`DecryptError` if no
        configured KEK opens it or the result is not an RSA key."""
        if not isinstance(envelope, dict) or envelope.get("alg") != ALGORITHM:
            raise DecryptError(f"key {kid}: not an {ALGORITHM} envelope")
        kek = self._kek_of(f"key {kid} is encrypted", envelope)
        try:
            nonce = base64.b64decode(str(envelope["nonce"]), validate=True)
            sealed = base64.b64decode(str(envelope["ct"]), validate=True)
            der = AESGCM(kek).decrypt(nonce, sealed, kid.encode())
            key = serialization.load_der_private_key(der, password=None)
        except (KeyError, ValueError, TypeError, InvalidTag, UnsupportedAlgorithm):
            raise DecryptError(
                f"key {kid}: KEK {fingerprint(kek)} does not open it (wrong key, or the "
                "ciphertext was altered or belongs to another kid)"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DecryptError(f"key {kid}: not an RSA key")
        return key

    def authenticate(self, data: bytes) -> dict[str, str]:
        """The tag of ``data`` under the first KEK: ``{"alg", "kek", "tag"}``."""
        tag = hmac.digest(_mac_key(self.keks[0]), data, "sha256")
        return {"alg": MAC_ALGORITHM, "kek": self.primary, "tag": _b64(tag)}

    def verify(self, what: str, mac: object, data: bytes) -> None:
        """Check a tag from :meth:`authenticate` over ``data`` (``what`` names it in errors);
        :class:`DecryptError` if it is missing, wrong, or under a KEK not configured."""
        if not isinstance(mac, dict) or mac.get("alg") != MAC_ALGORITHM:
            raise DecryptError(f"{what}: no {MAC_ALGORITHM} tag (altered outside the service?)")
        kek = self._kek_of(f"{what} is authenticated", mac)
        expected = hmac.digest(_mac_key(kek), data, "sha256")
        if not hmac.compare_digest(_b64(expected), str(mac.get("tag"))):
            raise DecryptError(
                f"{what}: its tag does not verify under KEK {fingerprint(kek)} (altered outside "
                "the service, or copied from another key set)"
            )

    def cipher(self, label: str) -> DataCipher:
        """A :class:`DataCipher` for one purpose, named by ``label`` (distinct per purpose)."""
        info = b"prelude-stepup-hook " + label.encode()
        return DataCipher(tuple((fingerprint(k), AESGCM(_derive(k, info))) for k in self.keks))

    def _kek_of(self, what: str, sealed: dict[str, object]) -> bytes:
        """The configured KEK named by ``sealed["kek"]``; :class:`DecryptError` (``what``
        "under KEK …, which is not in HOOK_KEY_ENCRYPTION_KEYS") when none is."""
        kek = self._find(str(sealed.get("kek")))
        if kek is None:
            raise DecryptError(
                f"{what} under KEK {sealed.get('kek')!s:.8}, which is not in "
                f"HOOK_KEY_ENCRYPTION_KEYS (configured: {', '.join(self.fingerprints)})"
            )
        return kek

    def _find(self, name: str) -> bytes | None:
        return next((k for k in self.keks if fingerprint(k) == name), None)


@dataclass(frozen=True, slots=True)
class DataCipher:
    """AES-256-GCM under keys derived from the KEKs (:meth:`Keyring.cipher`): the first
    seals, any opens, so rotating ``HOOK_KEY_ENCRYPTION_KEYS`` keeps data sealed under the
    old first KEK readable. Sealed text: ``<KEK fingerprint>.<base64 nonce + ciphertext>``."""

    keys: tuple[tuple[str, AESGCM], ...] = field(repr=False)

    def __repr__(self) -> str:
        return f"DataCipher(fingerprints={tuple(name for name, _ in self.keys)})"

    def seal(self, data: bytes, aad: bytes) -> str:
        name, aead = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonce, NIST SP 800-38D sec. 8.2.2
        return f"{name}.{_b64(nonce + aead.encrypt(nonce, data, aad))}"

    def open(self, sealed: str, aad: bytes) -> bytes:
        """The data of :meth:`seal` for ``aad``; :class:`DecryptError` (naming the KEK by
        fingerprint only) when no configured KEK opens it."""
        name, _, body = sealed.partition(".")
        aead = next((a for n, a in self.keys if n == name), None)
        if aead is None:
            raise DecryptError(
                f"sealed under KEK {name:.8}, which is not in HOOK_KEY_ENCRYPTION_KEYS"
            )
        try:
            raw = base64.b64decode(body, validate=True)
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except (ValueError, InvalidTag):
            raise DecryptError(
                f"KEK {name} does not open it (altered, or moved from another record)"
            ) from None


def keyring(keks: Sequence[bytes]) -> Keyring:
    """:class:`Keyring` from a sequence (``Settings.key_encryption_keys``)."""
    return Keyring(tuple(keks))
