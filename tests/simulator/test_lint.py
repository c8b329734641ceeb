"""Prelude's verdict on a hook answer (contract 3 and 8), case by case beyond the end-to-end
tests in test_simulator_run.py."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from hook_service.simulator.lint import HookAnswer, lint_hook_answer, lint_jwks
from tests.support import hook_keys

CONTINUE = {"status": "continue", "grant_mode": "session-bound", "granted_for": 900, "steps": []}


def answer(body: Any, **fields: Any) -> HookAnswer:
    defaults: dict[str, Any] = {"status_code": 200, "content_type": "application/json"}
    return HookAnswer(body=json.dumps(body).encode(), **{**defaults, **fields})


def test_a_valid_answer_passes_with_its_decision() -> None:
    verdict = lint_hook_answer(answer(CONTINUE, content_type="application/json; charset=utf-8"))
    assert (verdict.reason, verdict.decision) == (None, CONTINUE)
    # steps may be left out when nothing is to be done
    no_steps = {k: v for k, v in CONTINUE.items() if k != "steps"}
    assert lint_hook_answer(answer(no_steps)).reason is None
    assert lint_hook_answer(answer(CONTINUE, status_code=204)).reason is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"granted_for": True}, "invalid_granted_for"),  # a JSON bool is not a number
        ({"granted_for": 900.5}, "invalid_granted_for"),
        ({"granted_for": "900"}, "invalid_granted_for"),
        ({"steps": {"key": "verify_sms"}}, "invalid_response"),
        ({"steps": ["verify_sms"]}, "invalid_response"),
        (
            {"steps": [{"order": "1", "key": "verify_sms", "expiration_duration": 1}]},
            "invalid_response",
        ),
        (
            {"steps": [{"order": 1, "key": "verify_sms", "expiration_duration": 86_401}]},
            "invalid_step",
        ),
        ({"steps": [{"order": 1, "key": "", "expiration_duration": 1}]}, "invalid_step"),
        ({"status": "review", "steps": None}, "missing_steps"),
        ({"status": "review", "grant_mode": None}, "invalid_grant_mode"),
    ],
)
def test_field_rules(change: dict[str, Any], reason: str) -> None:
    body = {**CONTINUE, **change}
    assert lint_hook_answer(answer(body)).reason == reason


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (json.dumps(CONTINUE).encode("utf-16"), "codec can't decode"),
        (b"\xef\xbb\xbf" + json.dumps(CONTINUE).encode(), "BOM"),
        (json.dumps({**CONTINUE, "extra": float("nan")}).encode(), "NaN is not a JSON value"),
        (b'{"granted_for": Infinity}', "Infinity is not a JSON value"),
    ],
)
def test_only_strict_utf8_json_decodes(body: bytes, detail: str) -> None:
    verdict = lint_hook_answer(
        HookAnswer(status_code=200, content_type="application/json", body=body)
    )
    assert verdict.reason == "response_decode_failed"
    assert detail in verdict.detail


def test_transport_error_and_3xx() -> None:
    failed = lint_hook_answer(HookAnswer(error="ConnectError: refused"))
    assert (failed.reason, failed.detail) == ("request_failed", "ConnectError: refused")
    moved = lint_hook_answer(answer(CONTINUE, status_code=302))
    assert moved.reason == "invalid_status_code"


def test_step_keys_check_only_when_registered_keys_are_known() -> None:
    body = {
        **CONTINUE,
        "status": "review",
        "steps": [{"order": 1, "key": "selfie", "expiration_duration": 60}],
    }
    assert lint_hook_answer(answer(body)).reason is None
    assert lint_hook_answer(answer(body), frozenset({"selfie"})).reason is None
    assert lint_hook_answer(answer(body), frozenset({"kyc_review"})).reason == "invalid_step"


def rsa_jwk(index: int = 0, **changes: Any) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(hook_keys()[index].public_key()))
    return {**public, "kid": f"k{index}", "use": "sig", "alg": "RS256", **changes}


def test_a_good_jwks_passes() -> None:
    document = {"keys": [rsa_jwk(0), rsa_jwk(1)]}
    assert lint_jwks("application/json", document) == []


@pytest.mark.parametrize(
    ("content_type", "document", "problem"),
    [
        ("text/html", {"keys": [rsa_jwk()]}, "Content-Type is text/html, not application/json"),
        ("application/json", {"keys": []}, "no keys array, or an empty one"),
        ("application/json", None, "no keys array, or an empty one"),
        ("application/json", {"keys": ["k"]}, "a key is not a JSON object"),
        ("application/json", {"keys": [rsa_jwk(kid="")]}, "a key has no kid"),
        ("application/json", {"keys": [rsa_jwk(d="secret")]}, "key 'k0' publishes private"),
        ("application/json", {"keys": [rsa_jwk(alg="PS256")]}, "key 'k0' is not an RS256 RSA"),
        ("application/json", {"keys": [rsa_jwk(n="AQAB")]}, "key 'k0' is shorter than 2048"),
        ("application/json", {"keys": [rsa_jwk(0), rsa_jwk(1, kid="k0")]}, "two keys share a kid"),
    ],
)
def test_jwks_problems(content_type: str, document: Any, problem: str) -> None:
    problems = lint_jwks(content_type, document)
    assert any(p.startswith(problem) for p in problems), problems
