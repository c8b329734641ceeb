"""hook.py: request parsing (contract 2.1) and RSASSA-PSS signature verification (contract 2.3)."""

from __future__ import annotations

import base64
import json
import time
from types import MappingProxyType
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from hook_service import errors
from hook_service.hook.request import (
    HookRequest,
    Identifier,
    parse_hook_request,
    parse_signature_header,
    verify_signature,
)
from hook_service.policy.schema import CEL_VARIABLES, new_env
from tests.support import rsa_private_key

BODY = json.dumps(
    {
        "scope_requested": "transfer:write",
        "user_id": "usr_39CfbdV8AsXQwdphtbJe4yH07aF",
        "identifiers": [
            {"type": "email_address", "value": "user@example.com"},
            {"type": "phone_number", "value": "+33612345678"},
        ],
        "signals": {"user_agent": "Mozilla/5.0", "platform": "WEB", "ip": "203.0.113.42"},
        "metadata": {"amount": "500", "currency": "USD"},
    }
).encode()


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


# --- signature -------------------------------------------------------------------------------


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


# --- parsing ---------------------------------------------------------------------------------


def _body(**changes: Any) -> bytes:
    data = json.loads(BODY)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


def test_parse_documented_example() -> None:
    request = parse_hook_request(BODY)
    assert request.scope_requested == "transfer:write"
    assert request.user_id == "usr_39CfbdV8AsXQwdphtbJe4yH07aF"
    assert request.identifiers == (
        Identifier("email_address", "user@example.com"),
        Identifier("phone_number", "+33612345678"),
    )
    assert request.signals == {"user_agent": "Mozilla/5.0", "platform": "WEB", "ip": "203.0.113.42"}
    assert request.metadata == {"amount": "500", "currency": "USD"}
    assert request.has_phone and request.has_email


def test_unknown_fields_are_ignored_and_signals_kept_as_sent() -> None:
    body = _body(
        future_field={"x": 1},
        identifiers=[{"type": "phone_number", "value": "+1555", "verified": True}],
        signals={"platform": "IOS", "geo": {"country": "FR"}, "risk": 0.25, "tags": ["a"]},
    )
    request = parse_hook_request(body)
    assert request.identifiers == (Identifier("phone_number", "+1555"),)
    assert request.signals == {
        "platform": "IOS",
        "geo": {"country": "FR"},
        "risk": 0.25,
        "tags": ["a"],
    }
    assert request.has_phone and not request.has_email


@pytest.mark.parametrize("absent", [..., None], ids=["absent", "null"])
def test_missing_or_null_collections_are_empty(absent: Any) -> None:
    request = parse_hook_request(_body(metadata=absent, identifiers=absent, signals=absent))
    assert request.metadata == {}
    assert request.identifiers == ()
    assert request.signals == {}
    assert not request.has_phone and not request.has_email


def test_empty_identifiers_and_unknown_types_and_duplicates_are_kept() -> None:
    assert parse_hook_request(_body(identifiers=[])).identifiers == ()
    ids = [
        {"type": "email_address", "value": "a@example.com"},
        {"type": "email_address", "value": "b@example.com"},
        {"type": "username", "value": "alice"},
    ]
    request = parse_hook_request(_body(identifiers=ids))
    assert [i.value for i in request.identifiers] == ["a@example.com", "b@example.com", "alice"]
    assert request.has_email and not request.has_phone


def test_metadata_beyond_preludes_documented_limits_is_accepted() -> None:
    # Documented: at most 5 entries, key <= 12 chars, value <= 32, key charset [a-zA-Z0-9.\-_:].
    metadata = {f"key number {i} is long": "v" * 500 for i in range(10)}
    assert parse_hook_request(_body(metadata=metadata)).metadata == metadata


def test_duplicate_keys_take_the_last_value() -> None:
    body = BODY[:-1] + b', "user_id": "usr_last"}'
    assert parse_hook_request(body).user_id == "usr_last"


@pytest.mark.parametrize("scope", ["transfer:write", "a", "A.b-c_d:9"])
def test_valid_scopes(scope: str) -> None:
    assert parse_hook_request(_body(scope_requested=scope)).scope_requested == scope


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"scope_requested": ...}, "scope_requested is required"),
        ({"scope_requested": 5}, "scope_requested must be a string"),
        ({"scope_requested": ["transfer:write"]}, "scope_requested must be a string"),
        ({"scope_requested": ""}, "scope_requested must match"),
        ({"scope_requested": "transfer write"}, "scope_requested must match"),
        ({"scope_requested": "transfer:write\n"}, "scope_requested must match"),
        ({"scope_requested": "transfér"}, "scope_requested must match"),
        ({"scope_requested": "a/b"}, "scope_requested must match"),
        ({"user_id": ...}, "user_id is required"),
        ({"user_id": 12}, "user_id must be a string"),
        ({"user_id": ""}, "user_id must not be empty"),
        ({"identifiers": "x"}, "identifiers must be an array"),
        ({"identifiers": {"type": "email_address"}}, "identifiers must be an array"),
        ({"identifiers": [1]}, "identifiers[0] must be an object"),
        (
            {"identifiers": [{"type": "email_address", "value": "a"}, {"type": 5, "value": "b"}]},
            "identifiers[1].type must be a string",
        ),
        ({"identifiers": [{"type": "phone_number"}]}, "identifiers[0].value is required"),
        (
            {"identifiers": [{"type": "phone_number", "value": 33}]},
            "identifiers[0].value must be a string",
        ),
        ({"signals": []}, "signals must be an object"),
        ({"signals": "WEB"}, "signals must be an object"),
        ({"metadata": []}, "metadata must be an object"),
        ({"metadata": "amount=5"}, "metadata must be an object"),
        ({"metadata": {"amount": 500}}, "metadata.amount must be a string"),
        ({"metadata": {"currency": "USD", "amount": None}}, "metadata.amount must be a string"),
        ({"metadata": {"nested": {"a": "b"}}}, "metadata.nested must be a string"),
        ({"metadata": {"flag": True}}, "metadata.flag must be a string"),
    ],
)
def test_invalid_fields_are_named(changes: dict[str, Any], detail: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_hook_request(_body(**changes))
    assert caught.value.detail.startswith(detail)


def test_odd_metadata_key_is_quoted_in_the_detail() -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_hook_request(_body(metadata={"bad key\nforged log line": 1}))
    assert caught.value.detail == 'metadata["bad key\\nforged log line"] must be a string'


@pytest.mark.parametrize(
    "body",
    [b"[]", b'"text"', b"1", b"null", b"true"],
)
def test_body_must_be_a_json_object(body: bytes) -> None:
    with pytest.raises(errors.InvalidRequest, match="must be a JSON object"):
        parse_hook_request(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        BODY + b"garbage",
        b"{'scope_requested': 'a'}",
        BODY.replace(b'"WEB"', b"NaN"),
        BODY.replace(b'"WEB"', b"Infinity"),
        BODY.replace(b'"WEB"', b"-Infinity"),
        BODY.replace(b'"WEB"', b"1e400"),  # overflows to inf
        BODY.replace(b'"WEB"', b"1" * 5000),  # beyond Python's int digit limit
        BODY.replace(b'"WEB"', b"[" * 100_000 + b"]" * 100_000),  # deeper than the recursion limit
        b"\xef\xbb\xbf" + BODY,  # UTF-8 byte order mark
    ],
    ids=[
        "empty",
        "truncated",
        "trailing",
        "single-quotes",
        "nan",
        "infinity",
        "-infinity",
        "overflow",
        "huge-int",
        "deep",
        "bom",
    ],
)
def test_invalid_json_is_rejected(body: bytes) -> None:
    with pytest.raises(errors.InvalidRequest, match="not valid JSON"):
        parse_hook_request(body)


@pytest.mark.parametrize(
    "body",
    [BODY.replace(b"Mozilla", b"Moz\xffilla"), BODY.decode().encode("utf-16"), b"\xc3\x28"],
    ids=["invalid-byte", "utf-16", "truncated-sequence"],
)
def test_invalid_utf8_is_rejected(body: bytes) -> None:
    with pytest.raises(errors.InvalidRequest, match="UTF-8"):
        parse_hook_request(body)


def test_lone_surrogate_escape_is_rejected_but_pairs_are_fine() -> None:
    lone = BODY.replace(b"usr_39Cf", b"usr_\\ud800")
    with pytest.raises(errors.InvalidRequest, match="surrogate"):
        parse_hook_request(lone)
    pair = BODY.replace(b"Mozilla", b"\\ud83d\\ude00")
    assert parse_hook_request(pair).signals["user_agent"].startswith("\U0001f600")
    literal = BODY.replace(b"Mozilla", b"\\\\ud800")  # an escaped backslash, not a surrogate
    assert parse_hook_request(literal).signals["user_agent"].startswith("\\ud800")


# --- CEL context -----------------------------------------------------------------------------


def test_cel_context_shape() -> None:
    assert parse_hook_request(BODY).cel_context() == {
        "scope": "transfer:write",
        "user_id": "usr_39CfbdV8AsXQwdphtbJe4yH07aF",
        "identifiers": [
            {"type": "email_address", "value": "user@example.com"},
            {"type": "phone_number", "value": "+33612345678"},
        ],
        "signals": {"user_agent": "Mozilla/5.0", "platform": "WEB", "ip": "203.0.113.42"},
        "metadata": {"amount": "500", "currency": "USD"},
        "has_phone": True,
        "has_email": True,
    }


def test_cel_context_is_a_fresh_dict_each_call() -> None:
    request = parse_hook_request(BODY)
    first = request.cel_context()
    first["scope"] = "changed"
    first["has_phone"] = False
    assert request.cel_context()["scope"] == "transfer:write"
    assert request.cel_context()["has_phone"] is True


# The policy's own CEL environment: if its declared variables drift from cel_context(), these
# tests fail instead of agreeing with a private copy of the declarations. Uses every variable.
_CEL_EXPR = new_env().compile(
    'scope == "transfer:write" && signals.platform == "WEB" && has_phone && has_email'
    ' && double(metadata.amount) >= 500.0 && identifiers.exists(i, i.type == "phone_number")'
    ' && user_id != ""'
)


def test_cel_context_evaluates_in_cel() -> None:
    context = parse_hook_request(BODY).cel_context()
    assert set(context) == set(CEL_VARIABLES)  # no variable the policy cannot see, none missing
    # cel-expr-python rejects anything but plain dicts/lists (e.g. mappingproxy, tuples).
    assert _CEL_EXPR.eval(data=context).value() is True


def test_cel_context_accepts_a_hand_built_request_with_read_only_mappings() -> None:
    request = HookRequest(
        scope_requested="transfer:write",
        user_id="usr_1",
        identifiers=(Identifier("phone_number", "+1"), Identifier("email_address", "a@b.c")),
        signals=MappingProxyType({"platform": "WEB"}),
        metadata=MappingProxyType({"amount": "900"}),
    )
    assert request.has_phone and request.has_email
    assert _CEL_EXPR.eval(data=request.cel_context()).value() is True


def test_cel_context_is_cheap() -> None:
    # The hook is on Prelude's 5 s path; building the context must not copy or re-validate.
    # ~1 us per call in practice; the bound leaves two orders of magnitude for slow CI.
    request = parse_hook_request(BODY)
    start = time.perf_counter()
    for _ in range(20_000):
        request.cel_context()
    assert time.perf_counter() - start < 1.0


def test_request_equality_ignores_derived_fields() -> None:
    assert parse_hook_request(BODY) == parse_hook_request(BODY)
    assert parse_hook_request(BODY) != parse_hook_request(_body(user_id="usr_other"))
