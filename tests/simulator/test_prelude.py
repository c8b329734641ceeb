"""The simulator's Prelude keys: hook signatures as contract 2.3 describes, a JWKS with public
members only, challenge tokens as contract 6 describes, and the key file."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc.jwk import OKPKey, RSAKey

from hook_service.simulator.prelude import (
    USER_AGENT,
    PreludeChallenge,
    PreludeKeyError,
    PreludeKeys,
)
from tests.simulator.support import sim_keys, write_key_file
from tests.support import PRELUDE_JWKS_FILE, private_strings

BODY = b'{"scope_requested":"transfer:write","user_id":"usr_1"}'


def raw_signature(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@pytest.mark.parametrize(("salt", "salt_length"), [("max", padding.PSS.MAX_LENGTH), ("hash", 32)])
def test_hook_signature_is_rsassa_pss_sha256_base64url(salt: str, salt_length: int) -> None:
    keys = sim_keys()
    value = keys.sign(BODY, salt=salt)
    assert "=" not in value and "+" not in value and "/" not in value
    # Verified with the exact salt length, so each option really signs as it says.
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)
    keys.hook_key.public_key().verify(raw_signature(value), BODY, pss, hashes.SHA256())


def test_prefixed_signature_and_headers() -> None:
    keys = sim_keys()
    prefixed = keys.sign(BODY, prefix=True)
    assert prefixed.startswith("rsassa-pss-sha256=")
    headers = keys.hook_headers(BODY)
    assert headers["User-Agent"] == USER_AGENT == "Prelude-SessionStepUpHook/1.0"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Webhook-Signature-Key-Id"] == keys.hook_kid
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    public = keys.hook_key.public_key()
    public.verify(raw_signature(headers["X-Webhook-Signature"]), BODY, pss, hashes.SHA256())


def test_jwks_is_public_with_rfc7638_kids() -> None:
    keys = sim_keys()
    document = keys.jwks()
    rsa_jwk, ed_jwk = document["keys"]
    assert set(rsa_jwk) == {"kty", "kid", "use", "alg", "n", "e"}
    assert set(ed_jwk) == {"kty", "crv", "kid", "use", "alg", "x"}
    # joserfc, another JOSE library, computes the same thumbprints.
    assert rsa_jwk["kid"] == RSAKey.import_key(rsa_jwk).thumbprint() == keys.hook_kid
    assert ed_jwk["kid"] == OKPKey.import_key(ed_jwk).thumbprint() == keys.challenge_kid
    # Same public keys as the test suite's Prelude JWKS (tests/keys/prelude_jwks.json).
    published = json.loads(PRELUDE_JWKS_FILE.read_text())["keys"]
    assert (rsa_jwk["n"], ed_jwk["x"]) == (published[0]["n"], published[1]["x"])
    text = json.dumps(document) + repr(keys)
    assert not [s for s in private_strings(keys.hook_key) if s in text]


# A review decision whose steps arrive out of order: Prelude takes them by `order`.
DECISION = {
    "status": "review",
    "steps": [
        {"order": 2, "key": "kyc_review", "expiration_duration": 86400},
        {"order": 1, "key": "verify_sms", "expiration_duration": 600},
    ],
}


def opened() -> PreludeChallenge:
    return PreludeChallenge.open(
        DECISION, sub="usr_1", scope="transfer:write", metadata={"amount": "1500"}
    )


def test_challenge_token_carries_the_claims_the_js_sdk_reads() -> None:
    keys, challenge = sim_keys(), opened()
    token = keys.challenge_token(challenge, "kyc_review", 1_760_000_000)
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"]) == ("EdDSA", keys.challenge_kid)
    claims = jwt.decode(
        token,
        keys.challenge_key.public_key(),
        algorithms=["EdDSA"],
        options={"verify_exp": False},
    )
    # contract 6: processChallengeToken of @prelude.so/js-sdk 0.6.0, plus jti and grant_mode
    assert claims == {
        "sub": "usr_1",
        "sid": challenge.sid,
        "challenge_id": challenge.challenge_id,
        "scope_requested": "transfer:write",
        "current_step": "kyc_review",
        "steps": [
            {"order": 1, "key": "verify_sms", "expiration_duration": 600, "done": True},
            {"order": 2, "key": "kyc_review", "expiration_duration": 86400, "done": False},
        ],
        "metadata": {"amount": "1500"},
        "grant_mode": "single-use",
        "exp": 1_760_000_600,
        "jti": claims["jti"],
    }
    assert challenge.challenge_id.startswith("chl_sim_") and challenge.sid.startswith("ses_sim_")
    again = jwt.decode(
        keys.challenge_token(challenge, "kyc_review", 1_760_000_000),
        options={"verify_signature": False},
    )
    assert again["jti"] != claims["jti"]  # every token of one challenge is a new one


@pytest.mark.parametrize(
    ("current", "done"),
    [("verify_sms", [False, False]), ("kyc_review", [True, False]), ("completed", [True, True])],
)
def test_earlier_steps_are_done_the_current_one_is_not(current: str, done: list[bool]) -> None:
    claims = opened().claims(current, 0)
    assert claims["current_step"] == current
    assert [(s["key"], s["done"]) for s in claims["steps"]] == list(
        zip(["verify_sms", "kyc_review"], done, strict=True)
    )


def test_a_step_outside_the_decision_is_a_simulator_bug() -> None:
    with pytest.raises(ValueError, match="'selfie' is not a step of this challenge"):
        opened().claims("selfie", 0)


def test_a_forged_challenge_token_names_preludes_kid_but_does_not_verify() -> None:
    keys, challenge = sim_keys(), opened()
    forged = keys.forged_challenge_token(challenge, "kyc_review", 1_760_000_000)
    assert jwt.get_unverified_header(forged)["kid"] == keys.challenge_kid
    unverified = jwt.decode(forged, options={"verify_signature": False})
    assert unverified["challenge_id"] == challenge.challenge_id
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            forged,
            keys.challenge_key.public_key(),
            algorithms=["EdDSA"],
            options={"verify_exp": False},
        )


def test_key_file_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "prelude.pem"
    sim_keys().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PreludeKeys.load(path).jwks() == sim_keys().jwks()
    with pytest.raises(PreludeKeyError, match="exists"):
        sim_keys().save(path)  # never overwrites


def test_key_file_with_both_keys_in_either_order(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "k.pem")
    swapped = tmp_path / "swapped.pem"
    text = path.read_text()
    cut = text.index("-----BEGIN", 1)
    swapped.write_text(text[cut:] + text[:cut])
    assert PreludeKeys.load(swapped).jwks() == PreludeKeys.load(path).jwks()


def test_bad_key_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(PreludeKeyError, match=r"missing\.pem: No such file"):
        PreludeKeys.load(tmp_path / "missing.pem")
    only_rsa = tmp_path / "rsa.pem"
    only_rsa.write_bytes((PRELUDE_JWKS_FILE.parent / "prelude_rsa.pem").read_bytes())
    with pytest.raises(PreludeKeyError, match=r"rsa\.pem: needs one RSA and one Ed25519"):
        PreludeKeys.load(only_rsa)
