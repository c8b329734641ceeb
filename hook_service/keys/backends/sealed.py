"""The key set as one sealed JSON document (the Redis key store's value), pure.

``{"format": 1, "version": N, "keys": [{kid, state, created_at, activated_at, retire_at,
"private_key": <envelope>}], "mac": <tag>}``: metadata in clear, each private key sealed by
:class:`~hook_service.keys.backends.keyring.Keyring` (AES-256-GCM, kid as associated data), and
the whole document, with the name of the key set it belongs to, tagged under the KEK. So
whoever can write to Redis but holds no KEK can neither read a key nor change which keys are
published or sign: a revoked key put back, a retired one kept, a next key promoted early, a
document copied from another key set all fail the tag. (Replaying an older document whole still
verifies; a running replica refuses to go back to a lower version.) Every encoding seals and
tags under the keyring's first KEK, so any write also moves the set onto it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service.keys.backends.base import key_problem, key_set_from, parse_key_set
from hook_service.keys.backends.keyring import DecryptError, Keyring
from hook_service.keys.lifecycle import KeySet

FORMAT = 1


def encode(ks: KeySet, keyring: Keyring, name: str) -> str:
    """The document for ``ks``, the key set called ``name`` (the Redis prefix); no private
    key in clear."""
    records = [{**k.record(), "private_key": keyring.seal(k.kid, k.private_key)} for k in ks.keys]
    document: dict[str, Any] = {"format": FORMAT, "version": ks.version, "keys": records}
    document["mac"] = keyring.authenticate(_tagged(document, name))
    return json.dumps(document)


def _tagged(document: dict[str, Any], name: str) -> bytes:
    # What the tag covers: everything but the tag, and the set's name; canonical JSON of the
    # parsed document, so what is verified is exactly what is then used.
    body = {k: v for k, v in document.items() if k != "mac"} | {"name": name}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def decode(
    raw: str | bytes | None, keyring: Keyring, known: Mapping[str, rsa.RSAPrivateKey], name: str
) -> KeySet:
    """The key set called ``name`` in ``raw``. Its tag is checked first; then keys in
    ``known`` are reused (same kid = same key, RFC 7638) and others are decrypted and must be
    RSA keys of at least 2048 bits whose thumbprint is their kid. Raises ``ValueError`` for a
    malformed document, :class:`DecryptError` for a tag that does not verify or a key no
    configured KEK opens."""
    if raw is None:
        raise ValueError("the key set is missing")
    data, entries, version = parse_key_set(raw, "key set document")
    keyring.verify("the key set document", data.get("mac"), _tagged(data, name))
    sealed = {e.get("kid"): e.get("private_key") for e in entries if isinstance(e, dict)}

    def private_key(kid: str) -> rsa.RSAPrivateKey:
        if kid in known:
            return known[kid]
        key = keyring.open(kid, sealed.get(kid))
        problem = key_problem(key, kid)
        if problem is not None:
            raise DecryptError(f"key {kid}: {problem}")
        return key

    return key_set_from(entries, version, private_key)
