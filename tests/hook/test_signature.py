"""hook/signature.py: the X-Webhook-Signature header and RSASSA-PSS verification (contract 2.3),
and SignatureCheck, which looks the key up by kid in Prelude's app JWKS."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from hook_service import errors
from hook_service.hook.signature import SignatureCheck, parse_signature_header, verify_signature
from hook_service.prelude.jwks import PreludeJwks
from tests.hook.support import BODY
from tests.support import PRELUDE_JWKS_FILE, PRELUDE_KID, rsa_private_key, sign_hook

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def prelude_key() -> RSAPrivateKey:
    return rsa_private_key("prelude_rsa.pem")


@pytest.fixture(scope="module")
def public_key(prelude_key: RSAPrivateKey) -> RSAPublicKey:
    return prelude_key.public_key()


def pss(body: bytes, key: RSAPrivateKey, salt_length: int = 32) -> bytes:
    return key.sign(
        body,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length),
        hashes.SHA256(),
    )


def header(sig: bytes, *, prefix: str = "rsassa-pss-sha256=", padded: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(sig).decode()
    return prefix + (encoded if padded else encoded.rstrip("="))


# --- header format and verification ------------------------------------------------------


@pytest.mark.parametrize("salt_length", [32, padding.PSS.MAX_LENGTH], ids=["salt32", "saltmax"])
def test_verify_accepts_any_pss_salt_length(
    prelude_key: RSAPrivateKey, public_key: RSAPublicKey, salt_length: int
) -> None:
    verify_signature(BODY, header(pss(BODY, prelude_key, salt_length)), public_key)


@pytest.mark.parametrize("prefix", ["rsassa-pss-sha256=", ""], ids=["prefixed", "bare"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_verify_accepts_every_header_form(
    prelude_key: RSAPrivateKey, public_key: RSAPublicKey, prefix: str, padded: bool
) -> None:
    sig = pss(BODY, prelude_key)
    value = header(sig, prefix=prefix, padded=padded)
    # A 256-byte signature needs "==": the two padding cases really differ.
    assert value.endswith("==") is padded
    assert parse_signature_header(value) == sig
    verify_signature(BODY, value, public_key)


def test_verify_accepts_already_decoded_bytes(
    prelude_key: RSAPrivateKey, public_key: RSAPublicKey
) -> None:
    verify_signature(BODY, pss(BODY, prelude_key), public_key)


def test_parse_signature_header_tolerates_surrounding_blanks(prelude_key: RSAPrivateKey) -> None:
    sig = pss(BODY, prelude_key)
    assert parse_signature_header(f" {header(sig)}\t") == sig


@pytest.mark.parametrize(
    "body",
    [
        BODY.replace(b'"500"', b'"501"'),
        BODY + b" ",
        # Same JSON, re-serialised: verification must be over the raw bytes, not parsed data.
        json.dumps(json.loads(BODY), separators=(",", ":")).encode(),
    ],
    ids=["changed-value", "trailing-space", "reserialised"],
)
def test_tampered_body_is_rejected(
    prelude_key: RSAPrivateKey, public_key: RSAPublicKey, body: bytes
) -> None:
    with pytest.raises(errors.InvalidSignature, match="does not verify"):
        verify_signature(body, header(pss(BODY, prelude_key)), public_key)


def test_signature_by_another_key_is_rejected(public_key: RSAPublicKey) -> None:
    other = rsa_private_key("prelude_rsa_other.pem")
    with pytest.raises(errors.InvalidSignature):
        verify_signature(BODY, header(pss(BODY, other)), public_key)


def test_pkcs1v15_signature_is_rejected(
    prelude_key: RSAPrivateKey, public_key: RSAPublicKey
) -> None:
    sig = prelude_key.sign(BODY, padding.PKCS1v15(), hashes.SHA256())
    public_key.verify(sig, BODY, padding.PKCS1v15(), hashes.SHA256())  # a genuine v1.5 signature
    with pytest.raises(errors.InvalidSignature):
        verify_signature(BODY, header(sig), public_key)


def test_pss_with_mgf1_sha1_is_rejected(
    prelude_key: RSAPrivateKey, public_key: RSAPublicKey
) -> None:
    sig = prelude_key.sign(
        BODY, padding.PSS(mgf=padding.MGF1(hashes.SHA1()), salt_length=32), hashes.SHA256()
    )
    with pytest.raises(errors.InvalidSignature):
        verify_signature(BODY, header(sig), public_key)


def _valid_unprefixed() -> str:
    return header(pss(BODY, rsa_private_key("prelude_rsa.pem")), prefix="")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "rsassa-pss-sha256=",
        "sha256=" + _valid_unprefixed(),  # the older HMAC webhook prefix
        "rsassa-pss-sha512=" + _valid_unprefixed(),
        "RSASSA-PSS-SHA256=" + _valid_unprefixed(),
        "!!!!not-base64!!!!",
        base64.b64encode(b"\xfb\xff" * 128).decode(),  # standard alphabet ("+", "/")
        _valid_unprefixed() + "AAA",  # length 1 mod 4 cannot be base64
        _valid_unprefixed()[:-2] + "=",  # wrong amount of padding
        _valid_unprefixed() + "===",
        _valid_unprefixed() + " extra",
        "A" * 1400,  # longer than any RSA signature
    ],
    ids=lambda v: "none" if v is None else repr(v[:20]),
)
def test_malformed_signature_header_is_rejected(
    public_key: RSAPublicKey, value: str | None
) -> None:
    with pytest.raises(errors.InvalidSignature) as caught:
        parse_signature_header(value)
    if value and value.strip():
        assert value.strip() not in caught.value.detail  # never echo the header
        with pytest.raises(errors.InvalidSignature):
            verify_signature(BODY, value, public_key)


def test_missing_header_detail_names_the_header() -> None:
    with pytest.raises(errors.InvalidSignature, match="X-Webhook-Signature"):
        parse_signature_header(None)


# --- SignatureCheck: the key by kid from Prelude's JWKS, then the signature --------------------


@pytest.fixture
def check() -> SignatureCheck:
    return SignatureCheck(PreludeJwks(file=PRELUDE_JWKS_FILE))


def _headers(body: bytes = BODY, key: str = "prelude_rsa.pem") -> tuple[str, str]:
    headers = sign_hook(body, key=key)
    return headers["X-Webhook-Signature"], headers["X-Webhook-Signature-Key-Id"]


async def test_check_accepts_prelude_signature(check: SignatureCheck) -> None:
    signature, kid = _headers()
    assert kid == PRELUDE_KID
    await check.verify(BODY, signature, kid)
    await check.verify(BODY, signature, f" {kid}\t")  # header values may carry blanks


async def test_check_refuses_a_body_the_signature_does_not_cover(check: SignatureCheck) -> None:
    signature, kid = _headers()
    with pytest.raises(errors.InvalidSignature, match="does not verify"):
        await check.verify(BODY + b" ", signature, kid)


async def test_check_refuses_a_key_prelude_does_not_publish(check: SignatureCheck) -> None:
    signature, kid = _headers(key="prelude_rsa_other.pem")
    with pytest.raises(errors.InvalidSignature, match="does not verify"):
        await check.verify(BODY, signature, kid)
    with pytest.raises(errors.InvalidSignature, match="unknown signing key id 'nope'"):
        await check.verify(BODY, _headers()[0], "nope")


async def test_check_refuses_the_challenge_token_key(check: SignatureCheck) -> None:
    # The same JWKS holds Prelude's Ed25519 token key (contract 6): never an RSA hook key.
    with pytest.raises(errors.InvalidSignature, match="not a usable RSA key"):
        await check.verify(BODY, _headers()[0], "prelude-ed-1")


@pytest.mark.parametrize("kid", [None, "", "  "], ids=["absent", "empty", "blank"])
async def test_check_needs_a_key_id(check: SignatureCheck, kid: str | None) -> None:
    with pytest.raises(errors.InvalidSignature) as caught:
        await check.verify(BODY, _headers()[0], kid)
    assert caught.value.detail == "X-Webhook-Signature-Key-Id header is missing"


async def test_check_reads_the_signature_header_before_the_key_id(check: SignatureCheck) -> None:
    # A missing signature is named first, even when the key id is missing too.
    with pytest.raises(errors.InvalidSignature, match="missing X-Webhook-Signature header"):
        await check.verify(BODY, None, None)


async def test_check_without_a_jwks_refuses_everything() -> None:
    signature, kid = _headers()
    with pytest.raises(errors.InvalidSignature, match="no Prelude JWKS is configured"):
        await SignatureCheck(None).verify(BODY, signature, kid)
