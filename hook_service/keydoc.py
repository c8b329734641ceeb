"""The key set as one sealed JSON document (the Redis key store's value), pure.

``{"format": 1, "version": N, "keys": [{kid, state, created_at, activated_at, retire_at,
"private_key": <envelope>}]}``: metadata in clear, each private key sealed by
:class:`~hook_service.keycrypt.Keyring` (AES-256-GCM, kid as associated data). Every encoding
seals under the keyring's first KEK, so any write also moves keys onto it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from .keycrypt import DecryptError, Keyring
from .keys import KID, KeySet, SigningKey, thumbprint

FORMAT = 1


def encode(ks: KeySet, keyring: Keyring) -> str:
    """The document for ``ks``; no private key in clear."""
    records = [{**k.record(), "private_key": keyring.seal(k.kid, k.private_key)} for k in ks.keys]
    return json.dumps({"format": FORMAT, "version": ks.version, "keys": records})


def decode(
    raw: str | bytes | None, keyring: Keyring, known: Mapping[str, rsa.RSAPrivateKey]
) -> KeySet:
    """The key set in ``raw``. Keys in ``known`` are reused (same kid = same key, RFC 7638);
    others are decrypted and must be RSA keys of at least 2048 bits whose thumbprint is their
    kid. Raises ``ValueError`` for a malformed document, :class:`DecryptError` for a key no
    configured KEK opens."""
    if raw is None:
        raise ValueError("the key set is missing")
    try:
        data = json.loads(raw)
        entries, version = data["keys"], data["version"]
        if not isinstance(entries, list) or type(version) is not int:
            raise TypeError
    except (ValueError, TypeError, KeyError, RecursionError):
        raise ValueError("not a valid key set document") from None
    sealed = {e.get("kid"): e.get("private_key") for e in entries if isinstance(e, dict)}

    def private_key(kid: str) -> rsa.RSAPrivateKey:
        if kid in known:
            return known[kid]
        key = keyring.open(kid, sealed.get(kid))
        if thumbprint(key.public_key()) != kid or key.key_size < 2048:
            raise DecryptError(f"key {kid}: not the RSA key of at least 2048 bits it names")
        return key

    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or not KID.fullmatch(str(entry.get("kid"))):
            raise ValueError("key entry without a valid kid")
        keys.append(SigningKey.from_record(entry, private_key))
    return KeySet(tuple(keys), version)
