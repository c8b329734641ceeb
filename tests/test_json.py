"""_json.py: strict RFC 8259 decoding of every request body, and the one "must be a JSON
object" rule (used by the hook body and the token and admin bodies)."""

from __future__ import annotations

import pytest

from hook_service import errors
from hook_service._json import load_json, parse_json_object
from tests.hook.support import BODY


def test_a_json_object_is_returned_as_a_dict() -> None:
    assert parse_json_object(b'{"force": true, "n": 1.5, "s": "\\u00e9"}') == {
        "force": True,
        "n": 1.5,
        "s": "\u00e9",
    }


@pytest.mark.parametrize(
    ("body", "value"),
    [(b"[]", []), (b'"text"', "text"), (b"1", 1), (b"null", None), (b"true", True)],
)
def test_load_json_accepts_any_json_value(body: bytes, value: object) -> None:
    assert load_json(body) == value


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"1", b"null", b"true"])
def test_body_must_be_a_json_object(body: bytes) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_json_object(body)
    assert caught.value.detail == "request body must be a JSON object"


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
        parse_json_object(body)


@pytest.mark.parametrize(
    "body",
    [BODY.replace(b"Mozilla", b"Moz\xffilla"), BODY.decode().encode("utf-16"), b"\xc3\x28"],
    ids=["invalid-byte", "utf-16", "truncated-sequence"],
)
def test_invalid_utf8_is_rejected(body: bytes) -> None:
    with pytest.raises(errors.InvalidRequest, match="UTF-8"):
        parse_json_object(body)


def test_lone_surrogate_escape_is_rejected_but_pairs_are_fine() -> None:
    lone = BODY.replace(b"usr_39Cf", b"usr_\\ud800")
    with pytest.raises(errors.InvalidRequest, match="surrogate"):
        parse_json_object(lone)
    pair = BODY.replace(b"Mozilla", b"\\ud83d\\ude00")
    assert parse_json_object(pair)["signals"]["user_agent"].startswith("\U0001f600")
    literal = BODY.replace(b"Mozilla", b"\\\\ud800")  # an escaped backslash, not a surrogate
    assert parse_json_object(literal)["signals"]["user_agent"].startswith("\\ud800")
