"""hook_service.policy.base: the policy's answers (contract 3: the hook response)."""

from __future__ import annotations

import json
from dataclasses import replace

from starlette.responses import JSONResponse

from hook_service.policy.base import Decision, Step


def test_decision_custom_steps_and_total_duration() -> None:
    decision = Decision(
        "review", "single-use", 300, (Step(1, "verify_sms", 600), Step(2, "kyc", 3600)), "r"
    )
    assert decision.custom_steps(frozenset({"kyc"})) == (Step(2, "kyc", 3600),)
    assert decision.custom_steps(frozenset()) == ()
    assert decision.total_duration == 4200
    assert Step(2, "kyc", 3600).to_json() == {"order": 2, "key": "kyc", "expiration_duration": 3600}


def test_decision_json_is_exactly_the_hook_response() -> None:
    decision = Decision("block", "session-bound", 60, (), "on_error", error="store timed out")
    # `rule` travels in X-Hook-Rule and `error` only in the log: neither is in the body.
    assert decision.to_json() == {
        "status": "block",
        "grant_mode": "session-bound",
        "granted_for": 60,
        "steps": [],
    }


def test_decision_body_is_what_a_json_response_of_to_json_sends() -> None:
    steps = (Step(1, "verify_sms", 600), Step(2, "kyc_review", 86400))
    decision = Decision("review", "single-use", 300, steps, "large-transfer")
    assert decision.body == JSONResponse(decision.to_json()).body
    assert json.loads(decision.body)["steps"][1]["key"] == "kyc_review"
    # replace() (the on_error answer with its reason) encodes the new value again.
    blocked = replace(decision, status="block", steps=(), error="store timed out")
    assert json.loads(blocked.body) == {
        "status": "block",
        "grant_mode": "single-use",
        "granted_for": 300,
        "steps": [],
    }
    assert blocked == replace(blocked)  # not part of equality or repr
    assert "body" not in repr(blocked)


def test_the_revision_names_the_policy_but_is_not_part_of_the_body() -> None:
    decision = Decision("continue", "single-use", 60, (), "default", revision="a" * 64)
    assert decision.body == Decision("continue", "single-use", 60, (), "default").body
    assert decision.body == JSONResponse(decision.to_json()).body
    renamed = replace(decision, revision="b" * 64, granted_for=120)
    assert renamed.revision == "b" * 64
    assert json.loads(renamed.body)["granted_for"] == 120
