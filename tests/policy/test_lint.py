"""The lints of `policy check`: valid policies that are weaker than they read."""

from __future__ import annotations

from typing import Any

import pytest

from hook_service.policy.engine import Policy, example_policy_path
from hook_service.policy.lint import lint


def lints(*rules: dict[str, Any], **top: Any) -> list[str]:
    policy = Policy.from_mapping({"version": 1, "scopes": {"s": {"rules": list(rules)}}, **top})
    return [warning.render("p.yaml") for warning in lint(policy.spec)]


def test_the_bundled_policy_has_no_lint() -> None:
    assert lint(Policy.load(example_policy_path()).spec) == []


def test_a_rule_after_a_catch_all_never_matches() -> None:
    found = lints(
        {"name": "everyone", "status": "review", "steps": ["otp"]},
        {"name": "risky", "when": 'signals.platform == "UNKNOWN"', "status": "block"},
    )
    assert found == [
        "p.yaml: scopes.s.rules[1] (risky): warning: never matches: rule everyone before it "
        "always matches (it has no `when`)"
    ]


def test_a_rule_with_the_same_when_as_an_earlier_one_never_matches() -> None:
    found = lints(
        {"name": "a", "when": 'signals.platform == "WEB"', "status": "continue"},
        {"name": "b", "when": 'signals.platform  ==  "WEB"  // again', "status": "block"},
        {"name": "c", "when": "true", "status": "block"},
        {"name": "d", "status": "block"},
    )
    assert found == [
        "p.yaml: scopes.s.rules[1] (b): warning: never matches: rule a before it has the same "
        "`when`",
        "p.yaml: scopes.s.rules[3] (d): warning: never matches: rule c before it always "
        "matches (it has no `when`)",
    ]


def test_different_conditions_and_a_last_catch_all_are_fine() -> None:
    assert (
        lints(
            {"name": "a", "when": 'signals.platform == "WEB"', "status": "block"},
            {"name": "b", "when": 'signals.platform == "IOS"', "status": "block"},
            {"name": "c", "status": "block"},
        )
        == []
    )


@pytest.mark.parametrize(
    ("when", "shown"),
    [
        ("has(metadata.transfer_amount)", "metadata.transfer_amount"),  # 15 characters
        ('metadata["a b"] == "1"', 'metadata["a b"]'),
        ('"amount/usd" in metadata', 'metadata["amount/usd"]'),
    ],
)
def test_a_metadata_key_prelude_can_never_send(when: str, shown: str) -> None:
    (found,) = lints({"name": "a", "when": when, "status": "block"})
    assert found.startswith(f"p.yaml: scopes.s.rules[0] (a): warning: {shown} can never be sent")
    assert "contract 2.1" in found


def test_metadata_keys_within_the_contract_are_fine() -> None:
    when = 'has(metadata.amount) && metadata["tx.id:v-1_2"] != "" && "currency" in metadata'
    assert lints({"name": "a", "when": when, "status": "block"}) == []


def test_on_error_weaker_than_a_rule_of_a_scope() -> None:
    found = lints(
        {"name": "stop", "when": 'signals.platform == "X"', "status": "block"},
        {"name": "rest", "status": "continue"},
        on_error={"status": "continue"},
    )
    assert found == [
        "p.yaml: on_error: warning: on_error answers continue, weaker than rule stop of scope s "
        "(block): a request whose `when` fails would get less than one that matches"
    ]
    review = lints(
        {"name": "r", "status": "review", "steps": ["otp"]},
        on_error={"status": "review", "steps": ["otp"]},
    )
    assert review == []


def test_a_declared_custom_step_no_rule_uses() -> None:
    found = lints(
        {"name": "a", "status": "review", "steps": ["kyc"]},
        custom_steps=["kyc", "manual_review"],
    )
    assert found == [
        "p.yaml: custom_steps[1]: warning: custom step manual_review is declared but no rule "
        "asks for it"
    ]


@pytest.mark.parametrize(
    "when",
    ["double(metadata.amount) >= 1000.0", "!(double(metadata.amount) < 1000.0)"],
)
def test_double_of_metadata_is_flagged(when: str) -> None:
    (found,) = lints({"name": "a", "when": when, "status": "block"})
    assert 'double(metadata...) takes "NaN"' in found and "use number()" in found


@pytest.mark.parametrize("when", ["double(signals.score) > 0.5", "0.5 <= double(signals.score)"])
def test_an_unguarded_comparison_of_double_is_flagged(when: str) -> None:
    (found,) = lints({"name": "a", "when": when, "status": "block"})
    assert "a comparison of double() is false for NaN" in found


@pytest.mark.parametrize(
    "when",
    [
        "!(double(signals.score) < 0.5)",  # negated: NaN lands on the strict side
        "number(metadata.amount) >= 1000.0",
        "double(facts.attempts_1h) > 5.0",  # facts are computed numbers, never NaN
        'string(double(signals.score)) == "1.0"',
    ],
)
def test_guarded_or_safe_forms_are_not_flagged(when: str) -> None:
    assert lints({"name": "a", "when": when, "status": "block"}) == []


def test_a_string_literal_is_not_read_as_code() -> None:
    when = 'signals.platform == "double(metadata.amount) > 1.0 metadata.averyverylongkey"'
    assert lints({"name": "a", "when": when, "status": "block"}) == []
