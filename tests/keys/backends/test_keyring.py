"""Envelope encryption of private keys: AES-256-GCM, kid as associated data, KEK fingerprints."""

from __future__ import annotations

import base64

import pytest

from hook_service.keys.backends.keyring import (
    ALGORITHM,
    DecryptError,
    Keyring,
    fingerprint,
    keyring,
)
from hook_service.keys.lifecycle import thumbprint
from tests.support import hook_keys, kid_of, private_strings

KEK_A = bytes(range(32))
KEK_B = bytes(range(32, 64))


def test_round_trip_gives_back_the_same_key() -> None:
    ring = keyring([KEK_A])
    envelope = ring.seal(kid_of(0), hook_keys()[0])
    assert set(envelope) == {"alg", "kek", "nonce", "ct"}
    assert envelope["alg"] == ALGORITHM and envelope["kek"] == fingerprint(KEK_A)
    assert len(base64.b64decode(envelope["nonce"])) == 12  # 96-bit nonce
    opened = ring.open(kid_of(0), envelope)
    assert thumbprint(opened.public_key()) == kid_of(0)
    assert opened.private_numbers() == hook_keys()[0].private_numbers()


def test_every_seal_uses_a_fresh_nonce() -> None:
    ring = keyring([KEK_A])
    first, second = (ring.seal(kid_of(0), hook_keys()[0]) for _ in range(2))
    assert first["nonce"] != second["nonce"] and first["ct"] != second["ct"]


def test_the_kid_is_bound_as_associated_data() -> None:
    ring = keyring([KEK_A])
    envelope = ring.seal(kid_of(0), hook_keys()[0])
    # The ciphertext of key 0 stored under key 1's kid: refused, not silently swapped.
    with pytest.raises(DecryptError, match=kid_of(1)):
        ring.open(kid_of(1), envelope)


def test_an_altered_ciphertext_is_refused() -> None:
    ring = keyring([KEK_A])
    envelope = ring.seal(kid_of(0), hook_keys()[0])
    raw = bytearray(base64.b64decode(envelope["ct"]))
    raw[10] ^= 1
    with pytest.raises(DecryptError, match="altered"):
        ring.open(kid_of(0), {**envelope, "ct": base64.b64encode(bytes(raw)).decode()})


def test_the_fingerprint_picks_the_kek_and_every_configured_kek_decrypts() -> None:
    old = keyring([KEK_A]).seal(kid_of(0), hook_keys()[0])
    rotated = keyring([KEK_B, KEK_A])  # new KEK first: it seals, the old one still opens
    assert rotated.open(kid_of(0), old).private_numbers() == hook_keys()[0].private_numbers()
    assert rotated.seal(kid_of(0), hook_keys()[0])["kek"] == fingerprint(KEK_B)


def test_an_unknown_kek_is_named_by_fingerprint_only() -> None:
    sealed = keyring([KEK_A]).seal(kid_of(0), hook_keys()[0])
    with pytest.raises(DecryptError) as caught:
        keyring([KEK_B]).open(kid_of(0), sealed)
    message = str(caught.value)
    assert fingerprint(KEK_A) in message and "HOOK_KEY_ENCRYPTION_KEYS" in message
    assert base64.b64encode(KEK_A).decode() not in message and KEK_A.hex() not in message


def test_a_kek_with_a_forged_fingerprint_fails_authentication() -> None:
    sealed = keyring([KEK_A]).seal(kid_of(0), hook_keys()[0])
    with pytest.raises(DecryptError, match="does not open it"):
        keyring([KEK_B]).open(kid_of(0), {**sealed, "kek": fingerprint(KEK_B)})


def test_envelopes_and_reprs_hold_no_plaintext_or_kek() -> None:
    ring = keyring([KEK_A, KEK_B])
    envelope = ring.seal(kid_of(0), hook_keys()[0])
    text = repr(ring) + str(envelope)
    for secret in private_strings(hook_keys()[0]):
        assert secret not in text
    assert KEK_A.hex() not in text and base64.b64encode(KEK_A).decode() not in text
    assert fingerprint(KEK_A) in repr(ring)


@pytest.mark.parametrize("keks", [(), (b"short",)])
def test_a_keyring_needs_32_byte_keks(keks: tuple[bytes, ...]) -> None:
    with pytest.raises(ValueError):
        Keyring(keks)


@pytest.mark.parametrize("envelope", [None, {}, {"alg": "A128GCM"}, {"alg": ALGORITHM}])
def test_malformed_envelopes_are_refused(envelope: object) -> None:
    with pytest.raises(DecryptError):
        keyring([KEK_A]).open(kid_of(0), envelope)


# --- DataCipher: other data at rest (verification tokens in the Redis store) --------------


def test_a_data_cipher_round_trips_and_binds_its_associated_data() -> None:
    cipher = Keyring((KEK_A,)).cipher("verification-token-at-rest")
    sealed = cipher.seal(b"eyJhbGciOi.payload.sig", b"hook:t:abc")
    assert cipher.open(sealed, b"hook:t:abc") == b"eyJhbGciOi.payload.sig"
    assert cipher.seal(b"same", b"k") != cipher.seal(b"same", b"k")  # fresh nonce
    assert "eyJ" not in sealed and "payload" not in sealed
    with pytest.raises(DecryptError, match="moved from another record"):
        cipher.open(sealed, b"hook:t:other")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptError):
        cipher.open(tampered, b"hook:t:abc")


def test_a_data_cipher_seals_under_the_first_kek_opens_under_any_and_keys_by_label() -> None:
    old = Keyring((KEK_A,)).cipher("verification-token-at-rest")
    rotated = Keyring((KEK_B, KEK_A)).cipher("verification-token-at-rest")
    sealed = old.seal(b"token", b"aad")
    assert rotated.open(sealed, b"aad") == b"token"
    assert rotated.seal(b"token", b"aad").startswith(fingerprint(KEK_B) + ".")
    with pytest.raises(DecryptError, match="not in HOOK_KEY_ENCRYPTION_KEYS"):
        old.open(rotated.seal(b"token", b"aad"), b"aad")
    other_purpose = Keyring((KEK_A,)).cipher("another-purpose")
    with pytest.raises(DecryptError):  # a distinct label derives a distinct key
        other_purpose.open(sealed, b"aad")
    assert KEK_A.hex() not in repr(old) and fingerprint(KEK_A) in repr(old)
