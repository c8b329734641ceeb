"""Verification tokens (RS256, contract sec. 4) and challenge tokens (EdDSA, contract sec. 6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from joserfc import jwt as jose_jwt
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import KeySet as JoseKeySet

from hook_service import errors
from hook_service.keys import lifecycle as keys
from hook_service.keys.lifecycle import KeySet
from hook_service.tokens.jwt import (
    ChallengeClaims,
    ChallengeStep,
    IssuedToken,
    challenge_scope,
    check_challenge_step,
    mint_verification_token,
    read_challenge_kid,
    verify_challenge_token,
)
from tests.support import ed25519_private_key, rsa_private_key

NOW = 1_760_000_000
TTL = 300


# ``new_key`` is conftest's: tests/keys/hook_rsa_1..4.pem in order.
@pytest.fixture
def key_set(new_key: Callable[[], rsa.RSAPrivateKey]) -> KeySet:
    return keys.initial_key_set(NOW, new_key)


@pytest.fixture
def prelude_ed() -> ed25519.Ed25519PrivateKey:
    return ed25519_private_key("prelude_ed25519.pem")


@pytest.fixture
def prelude_ed_other() -> ed25519.Ed25519PrivateKey:
    return ed25519_private_key("prelude_ed25519_other.pem")


def mint(key_set: KeySet, now: int = NOW, **kw: Any) -> IssuedToken:
    args: dict[str, Any] = {"user_id": "usr_1", "challenge_id": "chl_1", "key": "kyc_review"}
    return mint_verification_token(key_set.active, now=now, ttl=TTL, **(args | kw))


def jose_decode(token: str, jwks: Any) -> Any:
    return jose_jwt.decode(token, JoseKeySet.import_key_set(jwks), algorithms=["RS256"])


# --- verification tokens ------------------------------------------------------------------


def test_mint_header_and_claims_pyjwt(key_set: KeySet) -> None:
    now = int(time.time())  # pyjwt checks exp/nbf/iat against the real clock
    issued = mint(key_set, now=now)
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": key_set.active.kid}
    claims = jwt.decode(
        issued.token,
        key_set.active.private_key.public_key(),
        algorithms=["RS256"],
        options={"require": ["sub", "exp", "nbf", "iat", "jti"]},
    )
    assert claims == {
        "sub": "usr_1",
        "challenge_id": "chl_1",
        "key": "kyc_review",
        "status": "completed",
        "jti": issued.jti,
        "iat": now,
        "nbf": now,
        "exp": now + TTL,
    }
    assert (issued.kid, issued.expires_at) == (key_set.active.kid, now + TTL)
    assert (issued.user_id, issued.challenge_id, issued.key) == ("usr_1", "chl_1", "kyc_review")


def test_mint_verifies_with_joserfc_against_our_jwks(key_set: KeySet) -> None:
    issued = mint(key_set)
    jwks = key_set.jwks(NOW)
    decoded = jose_decode(issued.token, jwks)
    assert decoded.header["alg"] == "RS256"
    assert decoded.header["kid"] in {jwk["kid"] for jwk in jwks["keys"]}
    assert decoded.header["kid"] == key_set.active.kid
    assert decoded.claims == {
        "sub": "usr_1",
        "challenge_id": "chl_1",
        "key": "kyc_review",
        "status": "completed",
        "jti": issued.jti,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + TTL,
    }


def test_next_key_does_not_verify_active_token(key_set: KeySet) -> None:
    issued = mint(key_set)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            issued.token,
            key_set.next.private_key.public_key(),
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )


def test_jti_is_unique_and_128_bits(key_set: KeySet) -> None:
    jtis = [mint(key_set).jti for _ in range(200)]
    assert len(set(jtis)) == len(jtis)
    for jti in jtis:
        assert len(base64.urlsafe_b64decode(jti + "==")) == 16


def test_issued_token_hides_token_in_repr(key_set: KeySet) -> None:
    issued = mint(key_set)
    assert issued.token not in repr(issued)
    assert issued.jti in repr(issued)
    assert issued.to_json() == {
        "verification_token": issued.token,
        "jti": issued.jti,
        "kid": key_set.active.kid,
        "expires_at": NOW + TTL,
    }


def test_mint_refuses_non_active_key_and_bad_ttl(key_set: KeySet) -> None:
    with pytest.raises(ValueError, match="not active"):
        mint_verification_token(
            key_set.next, user_id="u", challenge_id="c", key="k", now=NOW, ttl=TTL
        )
    with pytest.raises(ValueError, match="ttl"):
        mint_verification_token(
            key_set.active, user_id="u", challenge_id="c", key="k", now=NOW, ttl=0
        )


def test_old_token_verifies_until_retire_at_after_rotation(
    key_set: KeySet, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    old = mint(key_set)
    # Rotate as soon as the next key has been published long enough (keys.PUBLISH_LEAD).
    rotate_at = NOW + keys.PUBLISH_LEAD
    rotated = keys.rotate(key_set, rotate_at, TTL, new_key)
    retire_at = rotate_at + TTL + 600 + 60
    decoded = jose_decode(old.token, rotated.jwks(retire_at - 1))
    assert decoded.claims["jti"] == old.jti
    pyjwk = jwt.PyJWKSet.from_dict(rotated.jwks(retire_at - 1))[old.kid]
    assert jwt.decode(old.token, pyjwk, algorithms=["RS256"], options={"verify_exp": False})
    with pytest.raises(InvalidKeyIdError, match=old.kid):
        jose_decode(old.token, rotated.jwks(retire_at))
    with pytest.raises(KeyError):
        jwt.PyJWKSet.from_dict(rotated.jwks(retire_at))[old.kid]
    new = mint(rotated, now=rotate_at)
    assert new.kid == rotated.active.kid != old.kid
    assert jwt.get_unverified_header(new.token)["kid"] == new.kid
    assert jose_decode(new.token, rotated.jwks(rotate_at)).claims["jti"] == new.jti


# --- challenge tokens ---------------------------------------------------------------------

CLAIMS: dict[str, Any] = {
    "sub": "usr_1",
    "challenge_id": "chl_1",
    "current_step": "kyc_review",
    "exp": NOW + 120,
    "jti": "c-1",
}


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge(key: ed25519.Ed25519PrivateKey, claims: dict[str, Any] | None = None) -> str:
    payload = CLAIMS if claims is None else claims
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": "prelude-ed-1"})


def raw_token(header: dict[str, Any], payload: bytes, sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(payload)}"
    return f"{signing_input}.{b64u(sign(signing_input.encode()))}"


def assert_bad_signature(token: str, public_key: ed25519.Ed25519PublicKey) -> str:
    with pytest.raises(errors.InvalidSignature) as info:
        verify_challenge_token(token, public_key, NOW)
    assert info.value.detail.startswith("challenge token")
    return info.value.detail


def assert_invalid_request(token: str, public_key: ed25519.Ed25519PublicKey) -> str:
    with pytest.raises(errors.InvalidRequest) as info:
        verify_challenge_token(token, public_key, NOW)
    return info.value.detail


def test_valid_challenge_token(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    token = challenge(prelude_ed)
    assert read_challenge_kid(token) == "prelude-ed-1"
    claims = verify_challenge_token(token, prelude_ed.public_key(), NOW)
    assert claims == ChallengeClaims(sub="usr_1", challenge_id="chl_1", current_step="kyc_review")


def test_read_challenge_kid_rejects_non_jwt_and_missing_kid(
    prelude_ed: ed25519.Ed25519PrivateKey,
) -> None:
    for bad in ("", "abc", "a.b.c", "eyJhbGciOiJFZERTQSJ9"):
        with pytest.raises(errors.InvalidRequest, match="challenge_token"):
            read_challenge_kid(bad)
    no_kid = jwt.encode(CLAIMS, prelude_ed, algorithm="EdDSA")
    with pytest.raises(errors.InvalidRequest, match="kid"):
        read_challenge_kid(no_kid)


def test_wrong_key_is_invalid_signature(
    prelude_ed: ed25519.Ed25519PrivateKey, prelude_ed_other: ed25519.Ed25519PrivateKey
) -> None:
    assert_bad_signature(challenge(prelude_ed_other), prelude_ed.public_key())


def test_tampered_payload_is_invalid_signature(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    header, _, signature = challenge(prelude_ed).split(".")
    forged = b64u(json.dumps({**CLAIMS, "sub": "usr_attacker"}).encode())
    assert_bad_signature(f"{header}.{forged}.{signature}", prelude_ed.public_key())


def test_alg_none_is_rejected(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    token = raw_token({"alg": "none", "typ": "JWT"}, json.dumps(CLAIMS).encode(), lambda _: b"")
    assert_bad_signature(token, prelude_ed.public_key())


@pytest.mark.parametrize("encoding", ["raw", "pem"])
def test_hs256_with_public_key_bytes_is_rejected(
    prelude_ed: ed25519.Ed25519PrivateKey, encoding: str
) -> None:
    public = prelude_ed.public_key()
    secret = (
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if encoding == "raw"
        else public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = raw_token(
        {"alg": "HS256", "typ": "JWT", "kid": "prelude-ed-1"},
        json.dumps(CLAIMS).encode(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    detail = assert_bad_signature(token, public)
    assert "EdDSA" in detail


def test_rs256_token_is_rejected(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    rsa_key = rsa_private_key("prelude_rsa.pem")
    token = jwt.encode(CLAIMS, rsa_key, algorithm="RS256", headers={"kid": "prelude-ed-1"})
    assert_bad_signature(token, prelude_ed.public_key())


def test_expiry_uses_injected_now_and_leeway(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    public = prelude_ed.public_key()
    # far in the past for the real clock: only the injected `now` decides
    token = challenge(prelude_ed, {**CLAIMS, "exp": NOW - 29})
    assert verify_challenge_token(token, public, NOW).sub == "usr_1"
    with pytest.raises(errors.InvalidSignature, match=r"^challenge token has expired"):
        verify_challenge_token(token, public, NOW, leeway=0)
    assert "expired" in assert_bad_signature(
        challenge(prelude_ed, {**CLAIMS, "exp": NOW - 30}), public
    )


def test_future_nbf_is_rejected(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    public = prelude_ed.public_key()
    ok = challenge(prelude_ed, {**CLAIMS, "nbf": NOW + 30})
    assert verify_challenge_token(ok, public, NOW).challenge_id == "chl_1"
    assert "not valid yet" in assert_bad_signature(
        challenge(prelude_ed, {**CLAIMS, "nbf": NOW + 31}), public
    )


@pytest.mark.parametrize("claim", ["exp", "sub", "challenge_id", "current_step"])
def test_missing_claim_is_invalid_request(
    prelude_ed: ed25519.Ed25519PrivateKey, claim: str
) -> None:
    claims = {k: v for k, v in CLAIMS.items() if k != claim}
    detail = assert_invalid_request(challenge(prelude_ed, claims), prelude_ed.public_key())
    assert claim in detail


@pytest.mark.parametrize(
    ("claim", "value"),
    [("sub", 42), ("challenge_id", None), ("current_step", ""), ("exp", "soon"), ("exp", True)],
)
def test_wrongly_typed_claim_is_invalid_request(
    prelude_ed: ed25519.Ed25519PrivateKey, claim: str, value: Any
) -> None:
    token = challenge(prelude_ed, {**CLAIMS, claim: value})
    assert claim in assert_invalid_request(token, prelude_ed.public_key())


def test_infinite_exp_is_invalid_request(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    payload = json.dumps({**CLAIMS, "exp": float("inf")}).encode()  # b'... "exp": Infinity}'
    assert b"Infinity" in payload
    token = raw_token({"alg": "EdDSA", "typ": "JWT"}, payload, prelude_ed.sign)
    assert "exp" in assert_invalid_request(token, prelude_ed.public_key())


@pytest.mark.parametrize("claim", ["exp", "nbf"])
def test_a_date_too_large_for_a_float_is_invalid_request_not_a_crash(
    prelude_ed: ed25519.Ed25519PrivateKey, claim: str
) -> None:
    # 10**400 is a valid JSON integer; as a float it overflows (math.isfinite raised).
    payload = b'{"sub":"u","challenge_id":"c","current_step":"kyc_review","exp":9999999999,'
    payload = payload.replace(b'"exp":9999999999', b'"%s":1%s' % (claim.encode(), b"0" * 400))
    if claim == "nbf":
        payload += b'"exp":9999999999,'
    payload = payload.rstrip(b",") + b"}"
    token = raw_token({"alg": "EdDSA", "typ": "JWT"}, payload, prelude_ed.sign)
    assert claim in assert_invalid_request(token, prelude_ed.public_key())


def test_a_parsed_challenge_token_keeps_the_token_out_of_its_repr(
    prelude_ed: ed25519.Ed25519PrivateKey,
) -> None:
    from hook_service.tokens.jws import parse_compact

    token = challenge(prelude_ed, CLAIMS)
    parsed = parse_compact(token)
    assert parsed is not None
    text = repr(parsed)
    assert all(segment not in text for segment in token.split("."))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "a.b", "e30.e30.e30.e30"])
def test_not_a_jwt_is_invalid_request(prelude_ed: ed25519.Ed25519PrivateKey, token: str) -> None:
    assert "challenge_token" in assert_invalid_request(token, prelude_ed.public_key())


def test_signed_non_object_payload_is_invalid_request(
    prelude_ed: ed25519.Ed25519PrivateKey,
) -> None:
    token = raw_token({"alg": "EdDSA", "typ": "JWT"}, b"[1, 2]", prelude_ed.sign)
    assert "challenge_token" in assert_invalid_request(token, prelude_ed.public_key())


# --- the claims Prelude's JS SDK reads: scope_requested and steps (contract sec. 6) -------

SDK_STEPS = [
    {"order": 1, "key": "verify_sms", "expiration_duration": 600, "done": True},
    {"order": 2, "key": "kyc_review", "expiration_duration": 86400, "done": False},
]
SDK_CLAIMS: dict[str, Any] = {
    **CLAIMS,
    "sid": "ses_1",
    "scope_requested": "transfer:write",
    "steps": SDK_STEPS,
    "metadata": {"amount": "1500"},
    "grant_mode": "single-use",
}


def full_claims(prelude_ed: ed25519.Ed25519PrivateKey, **changes: Any) -> ChallengeClaims:
    claims = {k: v for k, v in {**SDK_CLAIMS, **changes}.items() if v is not None}
    return verify_challenge_token(challenge(prelude_ed, claims), prelude_ed.public_key(), NOW)


def test_scope_and_steps_are_read(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    claims = full_claims(prelude_ed)
    assert claims.scope_requested == "transfer:write"
    assert claims.steps == (
        ChallengeStep("verify_sms", True, 1, 600),
        ChallengeStep("kyc_review", False, 2, 86400),
    )
    # unknown members of a step are ignored, order and expiration_duration may be absent
    sparse = full_claims(prelude_ed, steps=[{"key": "kyc_review", "done": False, "new": 1}])
    assert sparse.steps == (ChallengeStep("kyc_review", False),)


def test_a_token_without_scope_or_steps_still_reads(
    prelude_ed: ed25519.Ed25519PrivateKey,
) -> None:
    # The SDK tolerates their absence, so reading does; check_challenge_step refuses it.
    claims = full_claims(prelude_ed, scope_requested=None, steps=None)
    assert (claims.scope_requested, claims.steps) == (None, None)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"scope_requested": ""}, "claim scope_requested must be a string"),
        ({"scope_requested": ["transfer:write"]}, "claim scope_requested must be a string"),
        ({"steps": {"key": "kyc_review"}}, "claim steps must be a list"),
        ({"steps": ["kyc_review"]}, "claim steps[0] must be an object"),
        ({"steps": [{"done": False}]}, "claim steps[0].key is missing or not a string"),
        ({"steps": [SDK_STEPS[0], {"key": "kyc_review"}]}, "steps[1].done is missing"),
        ({"steps": [{"key": "k", "done": "false"}]}, "steps[0].done is missing or not a boolean"),
        ({"steps": [{"key": "k", "done": False, "order": "1"}]}, "steps[0].order must be an"),
        (
            {"steps": [{"key": "k", "done": False, "expiration_duration": True}]},
            "steps[0].expiration_duration must be an integer",
        ),
    ],
)
def test_malformed_scope_or_steps_is_invalid_request(
    prelude_ed: ed25519.Ed25519PrivateKey, changes: dict[str, Any], detail: str
) -> None:
    token = challenge(prelude_ed, {**SDK_CLAIMS, **changes})
    assert detail in assert_invalid_request(token, prelude_ed.public_key())


def test_check_passes_the_pending_step_of_the_scope(
    prelude_ed: ed25519.Ed25519PrivateKey,
) -> None:
    check_challenge_step(full_claims(prelude_ed), "transfer:write")  # does not raise
    assert challenge_scope(full_claims(prelude_ed)) == "transfer:write"


def test_check_refuses_another_scope_as_no_pending_step(
    prelude_ed: ed25519.Ed25519PrivateKey,
) -> None:
    # The store's claim gives the same answer when it compares the scopes (atomically).
    claims = full_claims(prelude_ed, scope_requested="profile:read")
    with pytest.raises(errors.NoPendingStep) as info:
        check_challenge_step(claims, "transfer:write")
    assert info.value.status_code == 404
    assert info.value.detail == (
        "the challenge is for scope 'profile:read', but the pending 'kyc_review' step was "
        "recorded for scope 'transfer:write'"
    )


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"scope_requested": None}, "challenge_token has no scope_requested claim"),
        ({"steps": None}, "challenge_token has no steps claim"),
        ({"steps": []}, "current_step 'kyc_review' is not one of the challenge's steps"),
        ({"steps": SDK_STEPS[:1]}, "current_step 'kyc_review' is not one of the challenge's"),
        (
            {"steps": [SDK_STEPS[0], {**SDK_STEPS[1], "done": True}]},
            "current_step 'kyc_review' is already done in the challenge",
        ),
        (
            # a repeated key counts as done when any entry is: fail closed
            {"steps": [*SDK_STEPS, {**SDK_STEPS[1], "order": 3, "done": True}]},
            "current_step 'kyc_review' is already done",
        ),
        (
            {"current_step": "completed", "steps": [{**s, "done": True} for s in SDK_STEPS]},
            "the challenge is completed: no step is pending",
        ),
    ],
)
def test_check_refuses_another_scope_or_a_step_not_pending(
    prelude_ed: ed25519.Ed25519PrivateKey, changes: dict[str, Any], detail: str
) -> None:
    claims = full_claims(prelude_ed, **changes)
    with pytest.raises(errors.InvalidRequest) as info:
        check_challenge_step(claims, "transfer:write")
    assert info.value.detail.startswith(detail)
    assert info.value.status_code == 400
