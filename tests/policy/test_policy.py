"""hook_service.policy: loading and validating the YAML policy, deciding with CEL (design.md
"Policy file"; contract sections 3 and 8)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from hook_service.errors import PolicyError
from hook_service.facts.base import Facts
from hook_service.hook.base import HookRequest, Identifier
from hook_service.policy.base import Step
from hook_service.policy.engine import (
    GRANT_MODES,
    MANAGED_STEPS,
    Policy,
    example_policy_path,
)

EMAIL = Identifier("email_address", "user@example.com")
PHONE = Identifier("phone_number", "+33612345678")
RULE1 = '<policy>: scopes."transfer:write".rules[1] (large-transfer)'


def request(
    scope: str = "transfer:write",
    *,
    phone: bool = True,
    email: bool = True,
    signals: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> HookRequest:
    identifiers = tuple(i for i, keep in ((EMAIL, email), (PHONE, phone)) if keep)
    return HookRequest(
        scope_requested=scope,
        user_id="usr_39CfbdV8AsXQwdphtbJe4yH07aF",
        identifiers=identifiers,
        signals={"platform": "WEB", "ip": "203.0.113.42"} if signals is None else signals,
        metadata={} if metadata is None else metadata,
    )


def valid() -> dict[str, Any]:
    """A small valid policy; validation tests break one thing in it."""
    return {
        "version": 1,
        "custom_steps": ["kyc_review"],
        "scopes": {
            "transfer:write": {
                "rules": [
                    {"name": "web", "when": 'signals.platform == "WEB"', "status": "continue"},
                    {
                        "name": "large-transfer",
                        "status": "review",
                        "steps": ["otp", {"key": "kyc_review", "expiration_duration": 600}],
                    },
                ]
            }
        },
    }


def rules_policy(*rules: dict[str, Any], **top: Any) -> Policy:
    return Policy.from_mapping({"version": 1, "scopes": {"s": {"rules": list(rules)}}, **top})


@pytest.fixture(scope="module")
def example() -> Policy:
    return Policy.load(example_policy_path())


# --- the shipped example policy ------------------------------------------------------------


def test_example_policy_is_a_package_resource_and_documents_on_error_and_metadata() -> None:
    path = example_policy_path()
    assert path.parent == Path(__file__).parents[2] / "hook_service" / "policies"
    # Found as a resource of the installed package, not only by a path into the source tree
    # (tests/test_packaging.py checks that the built package really ships it).
    assert Path(str(resources.files("hook_service") / "policies" / "example.yaml")) == path
    text = " ".join(path.read_text().split())
    assert "strictest answer the company accepts" in text
    assert "attacker-controlled" in text


def test_example_large_transfer_with_phone_is_sms_then_kyc(example: Policy) -> None:
    decision = example.decide(request(metadata={"amount": "1500", "currency": "USD"}))
    assert decision.rule == "large-transfer"
    assert decision.error is None
    assert decision.to_json() == {
        "status": "review",
        "grant_mode": "single-use",
        "granted_for": 300,
        "steps": [
            {"order": 1, "key": "verify_sms", "expiration_duration": 600},
            {"order": 2, "key": "kyc_review", "expiration_duration": 86400},
        ],
    }


def test_example_large_transfer_with_email_only_is_email_then_kyc(example: Policy) -> None:
    decision = example.decide(request(phone=False, metadata={"amount": "1500"}))
    assert [s.key for s in decision.steps] == ["verify_email", "kyc_review"]


@pytest.mark.parametrize("amount", ["1000", "1000.00", "2500.50"])
def test_example_counts_plain_amounts_from_1000_as_large(example: Policy, amount: str) -> None:
    assert example.decide(request(metadata={"amount": amount})).rule == "large-transfer"


@pytest.mark.parametrize("amount", ["1e9", "NaN", "inf", "+1500", " 1500", ""])
def test_example_odd_amounts_fail_closed_to_on_error(example: Policy, amount: str) -> None:
    # With double() "NaN" compared false and skipped KYC; number() refuses it: block.
    decision = example.decide(request(metadata={"amount": amount}))
    assert (decision.rule, decision.status) == ("on_error", "block")
    assert decision.error is not None and "number() takes a plain decimal" in decision.error


def test_example_small_or_missing_amount_is_otp_only(example: Policy) -> None:
    for metadata in ({"amount": "999.99"}, {}):
        decision = example.decide(request(metadata=metadata))
        assert decision.rule == "otp-only"
        assert decision.steps == (Step(1, "verify_sms", 600),)


def test_example_unknown_platform_is_blocked(example: Policy) -> None:
    decision = example.decide(request(signals={"platform": "UNKNOWN"}, metadata={"amount": "5"}))
    assert (decision.rule, decision.status, decision.steps) == ("untrusted-platform", "block", ())
    assert 1 <= decision.granted_for <= 86400


def test_example_unparsable_amount_answers_on_error_block(example: Policy) -> None:
    decision = example.decide(request(metadata={"amount": "abc"}))
    assert (decision.rule, decision.status, decision.steps) == ("on_error", "block", ())
    assert decision.error is not None
    assert decision.error.startswith("rule large-transfer: ")
    assert "number() takes a plain decimal string" in decision.error


def test_example_profile_read_continues_session_bound(example: Policy) -> None:
    decision = example.decide(request("profile:read"))
    assert decision.rule == "allow"
    assert decision.to_json() == {
        "status": "continue",
        "grant_mode": "session-bound",
        "granted_for": 900,
        "steps": [],
    }


def test_example_unlisted_scope_gets_default_block(example: Policy) -> None:
    decision = example.decide(request("account:delete"))
    assert (decision.rule, decision.status, decision.error) == ("default", "block", None)


def test_example_declares_kyc_review_and_blocks_on_error(example: Policy) -> None:
    assert example.custom_steps == frozenset({"kyc_review"})
    assert example.source == str(example_policy_path())
    assert (example.on_error.rule, example.on_error.status) == ("on_error", "block")


@pytest.mark.parametrize(
    "req",
    [
        request(metadata={"amount": "1500"}),
        request(phone=False, email=False, metadata={"amount": "1500"}),
        request(metadata={"amount": "abc"}),
        request(signals={"platform": "UNKNOWN"}),
        request(),
        request("profile:read"),
        request("other"),
    ],
)
def test_every_decision_is_valid_for_prelude(example: Policy, req: HookRequest) -> None:
    # Contract 3/8: status, grant mode, 1..86400 (never 0), review has steps 1..n, others none.
    decision = example.decide(req)
    assert decision.status in ("continue", "review", "block")
    assert decision.grant_mode in GRANT_MODES
    assert type(decision.granted_for) is int and 1 <= decision.granted_for <= 86400
    if decision.status == "review":
        assert [s.order for s in decision.steps] == list(range(1, len(decision.steps) + 1))
        for step in decision.steps:
            assert step.key in MANAGED_STEPS or step.key in example.custom_steps
            assert 1 <= step.expiration_duration <= 86400
    else:
        assert decision.steps == ()
    assert set(decision.to_json()) == {"status", "grant_mode", "granted_for", "steps"}


# --- decision semantics --------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    policy = rules_policy(
        {"name": "miss", "when": "has_email && !has_phone", "status": "continue"},
        {"name": "first", "when": "has_phone", "status": "block"},
        {"name": "second", "when": "has_phone", "status": "continue"},
    )
    assert policy.decide(request("s")).rule == "first"


def test_rule_without_when_always_matches_and_shadows_later_rules() -> None:
    policy = rules_policy(
        {"name": "always", "status": "continue"},
        {"name": "never-reached", "when": "double(metadata.amount) > 1.0", "status": "block"},
    )
    decision = policy.decide(request("s", metadata={"amount": "abc"}))
    assert (decision.rule, decision.status, decision.error) == ("always", "continue", None)


def test_listed_scope_whose_rules_all_miss_gets_default() -> None:
    policy = rules_policy(
        {"name": "phone-only", "when": "has_phone", "status": "continue"},
        default={"status": "review", "steps": ["otp"]},
    )
    decision = policy.decide(request("s", phone=False))
    assert (decision.rule, decision.status) == ("default", "review")
    assert decision.steps == (Step(1, "verify_email", 600),)
    assert policy.decide(request("unlisted")).rule == "default"


def test_failing_rule_answers_on_error_and_never_falls_through() -> None:
    policy = rules_policy(
        {"name": "amount", "when": "double(metadata.amount) >= 1000.0", "status": "block"},
        {"name": "weaker", "status": "continue"},
    )
    decision = policy.decide(request("s", metadata={"amount": "abc"}))
    assert (decision.rule, decision.status) == ("on_error", "block")
    assert decision.error == "rule amount: INVALID_ARGUMENT: cannot convert string to double"


def test_missing_map_key_answers_on_error() -> None:
    policy = rules_policy(
        {"name": "amount", "when": 'metadata.currency == "USD"', "status": "block"},
        {"name": "weaker", "status": "continue"},
    )
    decision = policy.decide(request("s"))
    assert decision.rule == "on_error"
    assert decision.error is not None and "rule amount:" in decision.error


def test_non_bool_result_answers_on_error() -> None:
    # signals values are dyn: `signals.platform` compiles but yields a string at run time.
    policy = rules_policy(
        {"name": "not-bool", "when": "signals.platform", "status": "block"},
        {"name": "weaker", "status": "continue"},
    )
    decision = policy.decide(request("s"))
    assert (decision.rule, decision.error) == ("on_error", "rule not-bool: returned string")


@pytest.mark.parametrize("bad", [2**70, -(2**70)])
def test_signal_values_cel_cannot_represent_answer_on_error(bad: int) -> None:
    # Converted when `signals` is first touched; JSON allows such integers, CEL does not.
    policy = rules_policy(
        {"name": "web", "when": 'signals.platform == "WEB"', "status": "continue"}
    )
    decision = policy.decide(request("s", signals={"platform": "WEB", "n": bad}))
    assert decision.rule == "on_error"
    assert decision.error is not None and "out of range" in decision.error


class _BrokenRequest(HookRequest):
    def cel_context(self, facts: Facts | None = None) -> dict[str, Any]:
        raise RuntimeError("context\nbroken")


def test_unexpected_failure_while_evaluating_answers_on_error() -> None:
    policy = rules_policy({"name": "always", "status": "continue"})
    broken = _BrokenRequest("s", "usr_1", (PHONE,), {}, {})
    decision = policy.decide(broken)
    assert (decision.rule, decision.status) == ("on_error", "block")
    assert decision.error == "evaluation failed: context broken"


def test_on_error_may_be_review_and_resolves_otp_against_the_request() -> None:
    policy = rules_policy(
        {"name": "amount", "when": "double(metadata.amount) > 1.0", "status": "continue"},
        on_error={"status": "review", "steps": ["otp", "verify_passkey"], "granted_for": 60},
    )
    with_phone = policy.decide(request("s", metadata={"amount": "x"}))
    assert [s.key for s in with_phone.steps] == ["verify_sms", "verify_passkey"]
    assert with_phone.granted_for == 60
    manual = policy.on_error_decision(request("s", phone=False), "store timed out", "store_timeout")
    assert (manual.rule, manual.error, manual.cause) == (
        "on_error",
        "store timed out",
        "store_timeout",
    )
    assert [s.key for s in manual.steps] == ["verify_email", "verify_passkey"]
    assert policy.on_error.steps[0].key == "verify_email"


def test_defaults_and_rule_overrides_apply() -> None:
    policy = rules_policy(
        {"name": "plain", "when": "has_phone", "status": "review", "steps": ["verify_passkey"]},
        {
            "name": "custom",
            "status": "review",
            "grant_mode": "profile-bound",
            "granted_for": 86400,
            "steps": [{"key": "otp", "expiration_duration": 1}, "kyc"],
        },
        custom_steps=["kyc"],
        defaults={"grant_mode": "session-bound", "granted_for": 42, "expiration_duration": 77},
    )
    plain = policy.decide(request("s"))
    assert (plain.grant_mode, plain.granted_for, plain.steps) == (
        "session-bound",
        42,
        (Step(1, "verify_passkey", 77),),
    )
    custom = policy.decide(request("s", phone=False))
    assert (custom.grant_mode, custom.granted_for) == ("profile-bound", 86400)
    assert custom.steps == (Step(1, "verify_email", 1), Step(2, "kyc", 77))


# --- many rules (one CEL program per chain of rules) ----------------------------------------


def many_rules(count: int, *, when: Callable[[int], str] | None = None) -> list[dict[str, Any]]:
    def default_when(i: int) -> str:
        return (
            f'has(metadata.amount) && double(metadata.amount) == {i}.0 && signals.platform == "W"'
        )

    make = when or default_when
    return [{"name": f"r{i}", "when": make(i), "status": "continue"} for i in range(count)]


@pytest.mark.parametrize("winner", [0, 1, 15, 16, 17, 63, 99])
def test_hundred_rules_find_the_first_match(winner: int) -> None:
    policy = rules_policy(*many_rules(100))
    req = request("s", signals={"platform": "W"}, metadata={"amount": str(winner)})
    assert policy.decide(req).rule == f"r{winner}"
    assert policy.decide(request("s", signals={"platform": "W"})).rule == "default"


@pytest.mark.parametrize("failing", [0, 15, 16, 31, 99])
def test_hundred_rules_name_the_failing_rule(failing: int) -> None:
    rules = many_rules(100, when=lambda i: "false")
    rules[failing]["when"] = "double(metadata.amount) > 0.0"
    rules.append({"name": "weaker", "status": "continue"})
    decision = rules_policy(*rules).decide(request("s", metadata={"amount": "abc"}))
    assert decision.rule == "on_error"
    assert decision.error is not None and decision.error.startswith(f"rule r{failing}: ")


def test_match_before_a_failing_rule_in_the_same_chain_wins() -> None:
    rules = many_rules(10, when=lambda i: "false")
    rules[3]["when"] = "has_phone"
    rules[4]["when"] = "double(metadata.amount) > 0.0"
    assert rules_policy(*rules).decide(request("s", metadata={"amount": "x"})).rule == "r3"


def test_deeply_nested_conditions_still_decide_in_order() -> None:
    # Too deep to chain 16 of them under CEL's nesting limit: the chains get shorter.
    def deep(i: int) -> str:
        nested = "".join(" && (has_phone || (has_email" for _ in range(12)) + "))" * 12
        return f'signals.platform == "P{i}"{nested}'

    rules = many_rules(20, when=deep)
    rules[11]["when"] = "double(metadata.amount) < 0.0"
    policy = rules_policy(*rules)
    matched = policy.decide(request("s", signals={"platform": "P17"}, metadata={"amount": "1"}))
    assert matched.rule == "r17"
    failed = policy.decide(request("s", signals={"platform": "P19"}, metadata={"amount": "x"}))
    assert failed.error is not None and failed.error.startswith("rule r11: ")


def test_rules_are_evaluated_as_few_cel_programs() -> None:
    # White-box on purpose: each CEL call costs ~1 µs of binding overhead, and the hot path
    # must stay cheap with 100 rules, so rules are folded into chains of up to 16.
    policy = rules_policy(*many_rules(100))
    chains = policy._scopes["s"]
    assert [len(chain.rules) for chain in chains] == [16] * 6 + [4]
    assert all(chain.program is not None for chain in chains)


def test_comment_in_when_does_not_swallow_later_rules() -> None:
    policy = rules_policy(
        {"name": "commented", "when": "has_email // users with an email", "status": "block"},
        {"name": "next", "when": "has_phone", "status": "continue"},
    )
    assert policy._scopes["s"][0].program is not None  # still one chained program
    assert policy.decide(request("s", email=False)).rule == "next"
    assert policy.decide(request("s")).rule == "commented"


# --- logging -------------------------------------------------------------------------------


def test_logs_the_deciding_rule(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hook_service.policy")
    rules_policy({"name": "phone-users", "when": "has_phone", "status": "continue"}).decide(
        request("s")
    )
    messages = [r.getMessage() for r in caplog.records if r.name == "hook_service.policy"]
    assert messages == ["scope s: rule phone-users decided continue"]


def test_logs_the_failing_rule_and_error_without_request_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hook_service.policy")
    policy = rules_policy(
        {"name": "amount", "when": "double(metadata.amount) > 1.0", "status": "continue"}
    )
    policy.decide(request("s", metadata={"amount": "SECRET-4111"}))
    [record] = [r for r in caplog.records if r.name == "hook_service.policy"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "rule amount" in message and "cannot convert string to double" in message
    assert "on_error" in message
    assert "SECRET-4111" not in caplog.text
    assert PHONE.value not in caplog.text and EMAIL.value not in caplog.text


# --- validation ----------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], object]


def _rule(data: dict[str, Any], index: int) -> dict[str, Any]:
    rule: dict[str, Any] = data["scopes"]["transfer:write"]["rules"][index]
    return rule


INVALID: list[tuple[str, Mutation, str]] = [
    ("missing version", lambda d: d.pop("version"), "<policy>: version is required"),
    ("wrong version", lambda d: d.update(version=2), "<policy>: version must be 1, got 2"),
    ("string version", lambda d: d.update(version="1"), 'version must be 1, got "1"'),
    ("bool version", lambda d: d.update(version=True), "version must be 1, got true"),
    ("unknown top key", lambda d: d.update(scope={}), '<policy>: unknown key "scope" (allowed:'),
    (
        "unknown rule key",
        lambda d: _rule(d, 1).update(wen="true"),
        f'{RULE1}: unknown key "wen"',
    ),
    (
        "unknown step key",
        lambda d: _rule(d, 1)["steps"][1].update(expires=5),
        f'{RULE1}.steps[1]: unknown key "expires" (allowed: key, expiration_duration)',
    ),
    (
        "unknown scope key",
        lambda d: d["scopes"]["transfer:write"].update(rule=[]),
        '<policy>: scopes."transfer:write": unknown key "rule"',
    ),
    (
        "unknown defaults key",
        lambda d: d.update(defaults={"ttl": 5}),
        'defaults: unknown key "ttl"',
    ),
    (
        "unknown on_error key",
        lambda d: d.update(on_error={"status": "block", "reason": "x"}),
        'on_error: unknown key "reason"',
    ),
    (
        "bad status",
        lambda d: _rule(d, 0).update(status="allow"),
        '(web): status must be one of continue, review, block, got "allow"',
    ),
    ("missing status", lambda d: _rule(d, 0).pop("status"), "(web): status must be one of"),
    (
        "bad grant mode",
        lambda d: _rule(d, 1).update(grant_mode="forever"),
        f"{RULE1}: grant_mode must be one of single-use, session-bound, profile-bound, "
        'got "forever"',
    ),
    (
        "granted_for zero",
        lambda d: _rule(d, 1).update(granted_for=0),
        f"{RULE1}: granted_for must be an integer from 1 to 86400, got 0",
    ),
    (
        "granted_for too long",
        lambda d: _rule(d, 1).update(granted_for=86401),
        "granted_for must be an integer from 1 to 86400, got 86401",
    ),
    (
        "granted_for bool",
        lambda d: _rule(d, 1).update(granted_for=True),
        "granted_for must be an integer from 1 to 86400, got true",
    ),
    (
        "granted_for float",
        lambda d: _rule(d, 1).update(granted_for=1.5),
        "granted_for must be an integer from 1 to 86400, got 1.5",
    ),
    (
        "granted_for string",
        lambda d: _rule(d, 1).update(granted_for="300"),
        'granted_for must be an integer from 1 to 86400, got "300"',
    ),
    (
        "step duration zero",
        lambda d: _rule(d, 1)["steps"][1].update(expiration_duration=0),
        f"{RULE1}.steps[1]: expiration_duration must be an integer from 1 to 86400, got 0",
    ),
    (
        "step duration too long",
        lambda d: _rule(d, 1)["steps"][1].update(expiration_duration=86401),
        "expiration_duration must be an integer from 1 to 86400, got 86401",
    ),
    (
        "defaults granted_for",
        lambda d: d.update(defaults={"granted_for": -1}),
        "<policy>: defaults: granted_for must be an integer from 1 to 86400, got -1",
    ),
    (
        "defaults expiration bool",
        lambda d: d.update(defaults={"expiration_duration": False}),
        "defaults: expiration_duration must be an integer from 1 to 86400, got false",
    ),
    (
        "defaults grant mode",
        lambda d: d.update(defaults={"grant_mode": "session-start"}),
        'defaults: grant_mode must be one of single-use, session-bound, profile-bound, got "ses',
    ),
    (
        "step key charset",
        lambda d: _rule(d, 1)["steps"].append("kyc review"),
        f'{RULE1}.steps[2]: a step key must match [a-zA-Z0-9._:-]+, got "kyc review"',
    ),
    (
        "step key not a string",
        lambda d: _rule(d, 1)["steps"].append(7),
        f"{RULE1}.steps[2]: a step must be a key or a mapping, got 7",
    ),
    (
        "undeclared custom step",
        lambda d: _rule(d, 1)["steps"].append("selfie"),
        f"{RULE1}.steps[2]: step 'selfie' is neither managed nor declared in custom_steps "
        "(valid: otp, verify_sms, verify_email, verify_passkey, kyc_review)",
    ),
    (
        "managed step declared custom",
        lambda d: d["custom_steps"].append("verify_sms"),
        "<policy>: custom_steps[1]: 'verify_sms' is a managed or reserved step",
    ),
    (
        "otp declared custom",
        lambda d: d["custom_steps"].append("otp"),
        "custom_steps[1]: 'otp' is a managed or reserved step",
    ),
    (
        # Prelude's SDKs end the flow on current_step == "completed" (contract 6).
        "completed declared custom",
        lambda d: d["custom_steps"].append("completed"),
        "<policy>: custom_steps[1]: 'completed' cannot be a step: Prelude's challenge token "
        "says current_step 'completed' when every step is done",
    ),
    (
        "completed as a step",
        lambda d: _rule(d, 1)["steps"].append("completed"),
        f"{RULE1}.steps[2]: step 'completed' is neither managed nor declared in custom_steps",
    ),
    (
        "custom step charset",
        lambda d: d["custom_steps"].append("kyc/2"),
        'custom_steps[1]: a step key must match [a-zA-Z0-9._:-]+, got "kyc/2"',
    ),
    (
        "custom step twice",
        lambda d: d["custom_steps"].append("kyc_review"),
        "custom_steps[1]: 'kyc_review' is declared twice",
    ),
    (
        "custom_steps not a list",
        lambda d: d.update(custom_steps="kyc_review"),
        'custom_steps: custom_steps must be a list, got "kyc_review"',
    ),
    (
        "review without steps",
        lambda d: _rule(d, 1).pop("steps"),
        f"{RULE1}: review needs at least one step",
    ),
    (
        "review with empty steps",
        lambda d: _rule(d, 1).update(steps=[]),
        f"{RULE1}: review needs at least one step",
    ),
    (
        "steps on continue",
        lambda d: _rule(d, 0).update(steps=["otp"]),
        "(web): continue must not have steps",
    ),
    (
        "steps on block",
        lambda d: _rule(d, 1).update(status="block"),
        f"{RULE1}: block must not have steps",
    ),
    (
        "duplicate step",
        lambda d: _rule(d, 1)["steps"].append("kyc_review"),
        f"{RULE1}.steps[2]: step 'kyc_review' is listed twice",
    ),
    (
        "otp and verify_sms",
        lambda d: _rule(d, 1)["steps"].append("verify_sms"),
        f"{RULE1}.steps[2]: step 'verify_sms' is listed twice (otp is verify_sms or verify_email)",
    ),
    (
        "duplicate rule name",
        lambda d: _rule(d, 1).update(name="web"),
        '<policy>: scopes."transfer:write".rules[1] (web): duplicate rule name',
    ),
    (
        "missing rule name",
        lambda d: _rule(d, 1).pop("name"),
        '<policy>: scopes."transfer:write".rules[1]: name is required',
    ),
    (
        "rule name charset",
        lambda d: _rule(d, 1).update(name="large transfer"),
        'rules[1]: name is required and must match [a-zA-Z0-9._:-]+, got "large transfer"',
    ),
    (
        "reserved rule name",
        lambda d: _rule(d, 1).update(name="on_error"),
        "rules[1] (on_error): 'on_error' is reserved",
    ),
    (
        "CEL syntax error",
        lambda d: _rule(d, 1).update(when="metadata.amount >"),
        f"{RULE1}: when does not compile: INVALID_ARGUMENT: ERROR: <input>:1:18: Syntax error",
    ),
    (
        "CEL undeclared variable",
        lambda d: _rule(d, 1).update(when="amount > 1"),
        "when does not compile: INVALID_ARGUMENT: ERROR: <input>:1:1: undeclared reference "
        "to 'amount'",
    ),
    (
        "CEL type error",
        lambda d: _rule(d, 1).update(when="scope + 1 == 2"),
        "when does not compile: INVALID_ARGUMENT: ERROR: <input>:1:7: found no matching overload",
    ),
    (
        "CEL not boolean",
        lambda d: _rule(d, 1).update(when="user_id"),
        f"{RULE1}: when must be a boolean expression, got string",
    ),
    (
        "when not a string",
        lambda d: _rule(d, 1).update(when=True),
        f"{RULE1}: when must be a CEL expression string, got true",
    ),
    ("empty when", lambda d: _rule(d, 1).update(when=" "), "when must be a CEL expression string"),
    ("empty policy", lambda d: d.clear(), "<policy>: version is required"),
    (
        "scopes not a mapping",
        lambda d: d.update(scopes=["transfer:write"]),
        "<policy>: scopes: scopes must be a mapping, got a list",
    ),
    (
        "bad scope name",
        lambda d: d["scopes"].update({"transfer write": {"rules": []}}),
        'scopes: a scope must match ^[a-zA-Z0-9.\\-_:]+$, got "transfer write"',
    ),
    (
        "empty rules",
        lambda d: d["scopes"]["transfer:write"].update(rules=[]),
        '<policy>: scopes."transfer:write": rules must be a non-empty list',
    ),
    (
        "rule not a mapping",
        lambda d: d["scopes"]["transfer:write"]["rules"].append("otp"),
        'scopes."transfer:write".rules[2]: a rule must be a mapping, got "otp"',
    ),
    (
        "on_error review without steps",
        lambda d: d.update(on_error={"status": "review"}),
        "<policy>: on_error: review needs at least one step",
    ),
    (
        "default with a bad status",
        lambda d: d.update(default={"status": "granted"}),
        '<policy>: default: status must be one of continue, review, block, got "granted"',
    ),
    (
        "default not a mapping",
        lambda d: d.update(default="block"),
        '<policy>: default: default must be a mapping, got "block"',
    ),
]


def test_the_valid_base_policy_loads() -> None:
    policy = Policy.from_mapping(valid())
    assert policy.decide(request()).rule == "web"
    assert policy.source == "<policy>"


@pytest.mark.parametrize(
    ("mutate", "message"), [(m, msg) for _, m, msg in INVALID], ids=[n for n, _, _ in INVALID]
)
def test_invalid_policy_is_rejected_with_place_and_reason(mutate: Mutation, message: str) -> None:
    data = copy.deepcopy(valid())
    mutate(data)
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(data)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, "<policy>: the policy is empty"),
        ([], "<policy>: the policy must be a mapping, got a list"),
        ("version: 1", '<policy>: the policy must be a mapping, got "version: 1"'),
    ],
)
def test_non_mapping_document_is_rejected(document: Any, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(document)
    assert str(caught.value) == message


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "policy.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_load_names_the_file_rule_and_reason(tmp_path: Path) -> None:
    text = example_policy_path().read_text().replace("granted_for: 900", "granted_for: 0")
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        Policy.load(path)
    assert str(caught.value) == (
        f'{path}: scopes."profile:read".rules[0] (allow): '
        "granted_for must be an integer from 1 to 86400, got 0"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nscopes: {a: [\n", "invalid YAML: while parsing a flow"),
        ("version: 1\nversion: 1\n", "invalid YAML: duplicate key 'version'"),
        ("- version: 1\n", "the policy must be a mapping, got a list"),
        ("", "the policy is empty"),
        (b"version: 1 # \xff\n", "the policy file is not UTF-8 text"),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        Policy.load(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_yaml_errors_name_the_file_not_a_string(tmp_path: Path) -> None:
    # PyYAML's marks say `in "<unicode string>"` for a str stream; the reader must see the file.
    path = write(tmp_path, "version: 1\nscopes: {a: [\n")
    with pytest.raises(PolicyError) as caught:
        Policy.load(path)
    message = str(caught.value)
    assert f'in "{path}", line 3' in message
    assert "<unicode string>" not in message


def test_duplicate_keys_inside_a_rule_are_rejected(tmp_path: Path) -> None:
    # yaml.safe_load would keep only the second `when`, silently changing the rule.
    path = write(
        tmp_path,
        "version: 1\nscopes:\n  s:\n    rules:\n      - name: r\n"
        "        when: has_phone\n        when: 'true'\n        status: continue\n",
    )
    with pytest.raises(PolicyError, match=r"duplicate key 'when'.*line 7"):
        Policy.load(path)


def test_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nscopes:\n  s:\n    rules:\n"
        "      - &base {name: a, when: has_email, status: continue, granted_for: 60}\n"
        "      - <<: *base\n        name: b\n        when: has_phone\n",
    )
    decision = Policy.load(path).decide(request("s", email=False))
    assert (decision.rule, decision.granted_for) == ("b", 60)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_load_rejects_unreadable_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "policy.yaml"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(PolicyError) as caught:
        Policy.load(path)
    reason = "No such file or directory" if kind == "missing" else "Is a directory"
    assert str(caught.value) == f"{path}: cannot read the policy file: {reason}"


def test_on_error_must_not_contain_custom_steps() -> None:
    # on_error also answers when the store that records custom steps is down.
    data = copy.deepcopy(valid())
    data["on_error"] = {"status": "review", "steps": ["kyc_review"]}
    with pytest.raises(PolicyError, match="on_error must not contain custom steps"):
        Policy.from_mapping(data)
    data["on_error"] = {"status": "review", "steps": ["otp"]}
    assert Policy.from_mapping(data).on_error.status == "review"
