"""Prelude's verdict on a hook answer (contract 3 and 8), case by case beyond the end-to-end
tests in test_simulator_run.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hook_service.simulator.lint import HookAnswer, lint_hook_answer

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
