"""hook/parse.py: parsing and validating a hook request body (contract 2.1)."""

from __future__ import annotations

from typing import Any

import pytest

from hook_service import errors
from hook_service.hook.base import Identifier
from hook_service.hook.parse import parse_hook_request
from tests.hook.support import BODY, body_with


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
    body = body_with(
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
    request = parse_hook_request(body_with(metadata=absent, identifiers=absent, signals=absent))
    assert request.metadata == {}
    assert request.identifiers == ()
    assert request.signals == {}
    assert not request.has_phone and not request.has_email


def test_empty_identifiers_and_unknown_types_and_duplicates_are_kept() -> None:
    assert parse_hook_request(body_with(identifiers=[])).identifiers == ()
    ids = [
        {"type": "email_address", "value": "a@example.com"},
        {"type": "email_address", "value": "b@example.com"},
        {"type": "username", "value": "alice"},
    ]
    request = parse_hook_request(body_with(identifiers=ids))
    assert [i.value for i in request.identifiers] == ["a@example.com", "b@example.com", "alice"]
    assert request.has_email and not request.has_phone


def test_metadata_beyond_preludes_documented_limits_is_accepted() -> None:
    # Documented: at most 5 entries, key <= 12 chars, value <= 32, key charset [a-zA-Z0-9.\-_:].
    metadata = {f"key number {i} is long": "v" * 500 for i in range(10)}
    assert parse_hook_request(body_with(metadata=metadata)).metadata == metadata


def test_duplicate_keys_take_the_last_value() -> None:
    body = BODY[:-1] + b', "user_id": "usr_last"}'
    assert parse_hook_request(body).user_id == "usr_last"


@pytest.mark.parametrize("scope", ["transfer:write", "a", "A.b-c_d:9"])
def test_valid_scopes(scope: str) -> None:
    assert parse_hook_request(body_with(scope_requested=scope)).scope_requested == scope


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
        parse_hook_request(body_with(**changes))
    assert caught.value.detail.startswith(detail)


def test_odd_metadata_key_is_quoted_in_the_detail() -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_hook_request(body_with(metadata={"bad key\nforged log line": 1}))
    assert caught.value.detail == 'metadata["bad key\\nforged log line"] must be a string'


@pytest.mark.parametrize(
    "body",
    [b"[]", b'"text"', b"1", b"null", b"true"],
)
def test_body_must_be_a_json_object(body: bytes) -> None:
    with pytest.raises(errors.InvalidRequest, match="must be a JSON object"):
        parse_hook_request(body)


# The strict decoding itself (NaN, overflow, nesting, surrogates...) is tested in
# tests/test_json.py; these check that the hook body goes through it.
@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (BODY.replace(b'"WEB"', b"NaN"), "request body is not valid JSON"),
        (BODY + b"garbage", "request body is not valid JSON"),
        (BODY.replace(b"Mozilla", b"Moz\xffilla"), "request body is not valid UTF-8"),
        (BODY.replace(b"usr_39Cf", b"usr_\\ud800"), "request body has an unpaired surrogate"),
    ],
    ids=["nan", "trailing", "utf-8", "surrogate"],
)
def test_body_is_decoded_as_strict_json(body: bytes, detail: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_hook_request(body)
    assert caught.value.detail.startswith(detail)
