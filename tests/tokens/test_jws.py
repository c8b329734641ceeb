"""The token path's own compact JWS (tokens/jws.py): the same bytes as pyjwt when minting, and
a challenge-token fast path that only ever accepts what pyjwt accepts, with the same claims."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from hook_service import errors
from hook_service.keys import lifecycle as keys
from hook_service.tokens import jwt as jwt_module
from hook_service.tokens.jws import SignatureMismatch, parse_compact, sign_rs256, verify_eddsa
from hook_service.tokens.jwt import mint_verification_token, verify_challenge_token
from tests.support import ed25519_private_key, rsa_private_key

NOW = 1_760_000_000
CLAIMS = {
    "sub": "usr_1",
    "challenge_id": "chl_1",
    "current_step": "kyc_review",
    "exp": NOW + 600,
    "scope_requested": "transfer:write",
    "steps": [{"order": 1, "key": "kyc_review", "done": False}],
}


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def prelude_ed() -> ed25519.Ed25519PrivateKey:
    return ed25519_private_key("prelude_ed25519.pem")


@pytest.mark.parametrize(
    "user_id",
    ["usr_1", 'usr "quoted" \\ back/slash', "usr_\u00e9\u4e2d\U0001f600", "usr_\x00\x1f\u2028"],
)
def test_sign_rs256_is_byte_for_byte_pyjwt(user_id: str) -> None:
    # RSASSA-PKCS1-v1_5 is deterministic: the same header, claims and key give the same token.
    signing = keys.SigningKey.new(rsa_private_key("hook_rsa_1.pem"), "active", NOW)
    issued = mint_verification_token(
        signing, user_id=user_id, challenge_id="chl_\u00e9", key="kyc_review", now=NOW, ttl=300
    )
    claims = jwt.decode(
        issued.token,
        signing.private_key.public_key(),
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert list(claims) == ["sub", "challenge_id", "key", "status", "jti", "iat", "nbf", "exp"]
    assert claims["sub"] == user_id
    expected = jwt.encode(
        claims, signing.private_key, algorithm="RS256", headers={"typ": "JWT", "kid": signing.kid}
    )
    assert issued.token == expected
    assert sign_rs256(claims, signing.kid, signing.private_key) == expected


def token(key: ed25519.Ed25519PrivateKey, header: dict[str, Any], payload: bytes) -> str:
    signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(payload)}"
    return f"{signing_input}.{b64u(key.sign(signing_input.encode()))}"


def test_fast_path_reads_a_plain_challenge_token(prelude_ed: ed25519.Ed25519PrivateKey) -> None:
    text = jwt.encode(CLAIMS, prelude_ed, algorithm="EdDSA", headers={"kid": "prelude-ed-1"})
    parsed = parse_compact(text)
    assert parsed is not None and parsed.kid == "prelude-ed-1"
    assert verify_eddsa(parsed, prelude_ed.public_key()) == CLAIMS
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    # Said at once, not verified again through pyjwt (whose answer it would be anyway).
    with pytest.raises(SignatureMismatch):
        verify_eddsa(parsed, other)
    with pytest.raises(errors.InvalidSignature, match="signature does not verify"):
        verify_challenge_token(text, other, 0)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(text, other, algorithms=["EdDSA"], options={"verify_exp": False})


def _padded_header(key: ed25519.Ed25519PrivateKey, body: str) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"EdDSA","kid":"k1"}').decode()
    assert header.endswith("=")
    signing_input = f"{header}.{body}"
    return f"{signing_input}.{b64u(key.sign(signing_input.encode()))}"


def _shapes(key: ed25519.Ed25519PrivateKey) -> dict[str, str]:
    good = json.dumps(CLAIMS).encode()
    plain = token(key, {"alg": "EdDSA", "kid": "k1", "typ": "JWT"}, good)
    head, body, sig = plain.split(".")
    return {
        "padded signature": f"{head}.{body}.{sig}==",
        "padded header": _padded_header(key, body),
        "non-canonical signature": f"{head}.{body}.{sig[:-1]}{'B' if sig[-1] == 'A' else 'A'}",
        "four segments": f"{plain}.x",
        "two segments": f"{head}.{body}",
        "non-ascii": f"{head}.{body}.{sig}\u00e9",
        "junk in a segment": f"{head}.{body[:5]}!{body[5:]}.{sig}",
        "crit header": token(key, {"alg": "EdDSA", "kid": "k1", "crit": ["b64"]}, good),
        "b64 false": token(key, {"alg": "EdDSA", "kid": "k1", "b64": False}, good),
        "extra header": token(key, {"alg": "EdDSA", "kid": "k1", "x5u": "https://x"}, good),
        "alg none": token(key, {"alg": "none", "kid": "k1"}, good),
        "alg HS256": token(key, {"alg": "HS256", "kid": "k1"}, good),
        "no kid": token(key, {"alg": "EdDSA"}, good),
        "empty kid": token(key, {"alg": "EdDSA", "kid": ""}, good),
        "kid not a string": token(key, {"alg": "EdDSA", "kid": 7}, good),
        "typ not a string": token(key, {"alg": "EdDSA", "kid": "k1", "typ": 1}, good),
        "header a list": token(key, ["alg"], good),  # type: ignore[arg-type]
        "payload a list": token(key, {"alg": "EdDSA", "kid": "k1"}, b"[1]"),
        "payload not JSON": token(key, {"alg": "EdDSA", "kid": "k1"}, b"{nope"),
        "payload NaN": token(key, {"alg": "EdDSA", "kid": "k1"}, b'{"exp": NaN}'),
        "duplicate claims": token(
            key, {"alg": "EdDSA", "kid": "k1"}, b'{"sub": "a", "sub": "b", "exp": 1}'
        ),
    }


def _pyjwt(text: str, public: ed25519.Ed25519PublicKey) -> Any:
    try:
        return jwt.decode(text, public, algorithms=["EdDSA"], options={"verify_exp": False})
    except jwt.InvalidTokenError as exc:
        return type(exc)


def test_fast_path_accepts_only_what_pyjwt_accepts_with_the_same_claims(
    prelude_ed: ed25519.Ed25519PrivateKey,
) -> None:
    public = prelude_ed.public_key()
    shapes = _shapes(prelude_ed)
    accepted = []
    for name, text in shapes.items():
        parsed = parse_compact(text)
        try:
            fast = None if parsed is None else verify_eddsa(parsed, public)
        except SignatureMismatch:  # pyjwt refuses it for its signature too
            assert _pyjwt(text, public) is jwt.InvalidSignatureError, name
            continue
        if fast is not None:
            accepted.append(name)
            assert fast == _pyjwt(text, public), name
    # Only the plain shapes take the fast path; everything else is pyjwt's to judge.
    assert accepted == ["payload NaN", "duplicate claims"]


def _outcome(call: Any) -> Any:
    try:
        return call()
    except (errors.InvalidSignature, errors.InvalidRequest) as exc:
        return type(exc), exc.detail


def _pyjwt_alone(text: str, public: ed25519.Ed25519PublicKey) -> Any:
    return jwt_module._claims(jwt_module._decode(text, public), NOW, 30)


@pytest.mark.parametrize("position", range(0, 200, 7))
def test_any_altered_character_gets_what_pyjwt_alone_gives(
    prelude_ed: ed25519.Ed25519PrivateKey, position: int
) -> None:
    public = prelude_ed.public_key()
    good = jwt.encode(CLAIMS, prelude_ed, algorithm="EdDSA", headers={"kid": "prelude-ed-1"})
    refused = 0
    for replacement in "A_-.=":
        text = good[:position] + replacement + good[position + 1 :]
        if text == good:
            continue
        # The reference: the path before the fast one, pyjwt's decode then the claims' checks.
        expected = _outcome(lambda t=text: _pyjwt_alone(t, public))
        assert _outcome(lambda t=text: verify_challenge_token(t, public, NOW)) == expected
        refused += isinstance(expected, tuple)
    assert refused >= 3  # the alterations do reach the error paths
