"""The ``facts`` CEL variable (issue 11 point 1) and which scopes read it (point 6)."""

from __future__ import annotations

from typing import Any

import pytest

from hook_service.errors import PolicyError
from hook_service.facts.base import NO_FACTS, Facts
from hook_service.hook.parse import parse_hook_request
from hook_service.policy.engine import Policy, example_policy_path
from hook_service.policy.facts import FIELDS, reads_facts, unknown_fields
from tests.support import hook_body


def policy(*rules: dict[str, Any], scope: str = "transfer:write") -> Policy:
    return Policy.from_mapping(
        {
            "version": 1,
            "custom_steps": ["kyc_review"],
            "scopes": {
                scope: {"rules": [*rules, {"name": "fallthrough", "status": "continue"}]},
                "profile:read": {"rules": [{"name": "allow", "status": "continue"}]},
            },
        }
    )


def decide(p: Policy, facts: Facts | None = None, **body: Any) -> str:
    return p.decide(parse_hook_request(hook_body(**body)), facts).rule


def test_every_field_of_facts_reaches_a_rule() -> None:
    facts = Facts(
        device_seen=True,
        device_known=True,
        ip_seen=True,
        ip_known=True,
        country="FR",
        country_known=True,
        attempts_1h=3,
        attempts_24h=7,
        distinct_ips_24h=2,
        verified_age=120,
        step_age={"kyc_review": 86_400},
        flagged=True,
        travel_kmh=950.5,
    )
    conditions = {
        "device_seen": "facts.device_seen",
        "device_known": "facts.device_known",
        "ip_seen": "facts.ip_seen",
        "ip_known": "facts.ip_known",
        "country": 'facts.country == "FR"',
        "country_known": "facts.country_known",
        "attempts_1h": "facts.attempts_1h == 3",
        "attempts_24h": "facts.attempts_24h == 7",
        "distinct_ips_24h": "facts.distinct_ips_24h == 2",
        "verified_age": "facts.verified_age == 120",
        "step_age": '"kyc_review" in facts.step_age && facts.step_age["kyc_review"] == 86400',
        "flagged": "facts.flagged",
        "travel_kmh": "facts.travel_kmh > 900.0 && facts.travel_kmh > 900",
    }
    assert set(conditions) == FIELDS
    for name, when in conditions.items():
        p = policy({"name": name.replace("_", "-"), "when": when, "status": "block"})
        assert decide(p, facts) == name.replace("_", "-"), name
        assert decide(p, NO_FACTS) == "fallthrough", name
        assert decide(p) == "fallthrough", name  # None: nothing known, as NO_FACTS


def test_an_absent_step_age_is_testable_without_an_error() -> None:
    recent = '"kyc_review" in facts.step_age && facts.step_age["kyc_review"] < 2592000'
    p = policy({"name": "recent-kyc", "when": recent, "status": "continue"})
    assert decide(p, Facts(step_age={"kyc_review": 60})) == "recent-kyc"
    assert decide(p, Facts()) == "fallthrough"
    # Indexing a step never issued fails to evaluate: on_error, never a weaker rule.
    bare = policy({"name": "bare", "when": 'facts.step_age["kyc_review"] < 10', "status": "block"})
    assert decide(bare, Facts()) == "on_error"


def test_a_misspelt_field_is_refused_at_load() -> None:
    with pytest.raises(PolicyError, match="facts has no field 'atempts_1h'"):
        policy({"name": "typo", "when": "facts.atempts_1h > 10", "status": "block"})
    # A field named facts of another map is not the variable.
    policy({"name": "other", "when": 'metadata.facts == "x"', "status": "block"})


def test_scopes_reading_facts_are_found_at_load() -> None:
    p = policy({"name": "flagged", "when": "facts.flagged", "status": "block"})
    assert p.reads_facts("transfer:write")
    assert not p.reads_facts("profile:read")
    assert not p.reads_facts("unlisted:scope")  # the default never reads facts
    later = policy(
        {"name": "platform", "when": 'signals.platform == "UNKNOWN"', "status": "block"},
        {"name": "velocity", "when": "facts.attempts_1h >= 10", "status": "block"},
    )
    assert later.reads_facts("transfer:write")  # any rule of the scope
    plain = policy({"name": "platform", "when": 'signals.platform == "X"', "status": "block"})
    assert not plain.reads_facts("transfer:write")


@pytest.mark.parametrize(
    ("when", "reads"),
    [
        ("facts.flagged", True),
        ("!facts.flagged", True),
        ("(facts).flagged", True),
        ("[facts].exists(f, f.flagged)", True),
        ('has_phone && facts["flagged"]', True),
        # Conservative: the token anywhere counts, even where it reads nothing.
        ('metadata.note == "facts"', True),
        ("metadata.facts == 'x'", True),
        ('signals.platform == "WEB" // no facts here', True),
        ("has_facts_of_life", False),
        ("factsheet == 1", False),
        ("my_facts", False),
        ('metadata.factsheet == "x"', False),
        (None, False),
    ],
)
def test_the_token_scan_is_conservative(when: str | None, reads: bool) -> None:
    assert reads_facts(when) is reads


def test_unknown_fields_ignore_other_maps() -> None:
    assert unknown_fields("facts.flagged || facts . nope || x.facts.other") == ["nope"]


# --- the bundled example policy (issue 11 point 7) ------------------------------------------

DAY = 86_400
KNOWN = Facts(device_seen=True, device_known=True, country="FR", country_known=True)


@pytest.mark.parametrize(
    ("facts", "scope", "amount", "rule", "steps"),
    [
        (Facts(flagged=True), "transfer:write", "20", "flagged", []),
        (Facts(flagged=True), "prld:pwd:write", None, "flagged", []),
        (Facts(attempts_1h=9), "transfer:write", "20", "otp-only", ["verify_sms"]),
        (Facts(attempts_1h=10), "transfer:write", "20", "velocity", []),  # the 11th
        (Facts(attempts_1h=10), "prld:pwd:write", None, "velocity", []),
        (KNOWN, "transfer:write", "20", "otp-only", ["verify_sms"]),
        (KNOWN, "transfer:write", "1500", "large-transfer", ["verify_sms", "kyc_review"]),
        (
            Facts(country="FR"),
            "transfer:write",
            "20",
            "new-device-new-country",
            ["verify_sms", "kyc_review"],
        ),
        # A new device in a country verified before, or with no country: OTP only.
        (
            Facts(country="FR", country_known=True),
            "transfer:write",
            "20",
            "otp-only",
            ["verify_sms"],
        ),
        (Facts(), "transfer:write", "20", "otp-only", ["verify_sms"]),
        # KYC passed within 30 days is not asked again, for either reason.
        (
            Facts(country="FR", step_age={"kyc_review": 29 * DAY}),
            "transfer:write",
            "1500",
            "otp-only",
            ["verify_sms"],
        ),
        (
            Facts(country="FR", step_age={"kyc_review": 30 * DAY}),
            "transfer:write",
            "20",
            "new-device-new-country",
            ["verify_sms", "kyc_review"],
        ),
        (
            Facts(country="FR", step_age={"kyc_review": 30 * DAY}),
            "transfer:write",
            "1500",
            "large-transfer",
            ["verify_sms", "kyc_review"],
        ),
        # The password change: no second OTP on a device verified less than 5 minutes ago.
        (
            Facts(device_known=True, verified_age=299),
            "prld:pwd:write",
            None,
            "recently-verified",
            [],
        ),
        (
            Facts(device_known=True, verified_age=300),
            "prld:pwd:write",
            None,
            "password-otp",
            ["verify_sms"],
        ),
        (
            Facts(device_known=False, verified_age=10),
            "prld:pwd:write",
            None,
            "password-otp",
            ["verify_sms"],
        ),
        (
            Facts(device_known=True, verified_age=-1),
            "prld:pwd:write",
            None,
            "password-otp",
            ["verify_sms"],
        ),
        (Facts(flagged=True), "profile:read", None, "allow", []),  # reads no facts
    ],
)
def test_the_example_policy_reads_like_a_banks(
    facts: Facts, scope: str, amount: str | None, rule: str, steps: list[str]
) -> None:
    example = Policy.load(example_policy_path())
    decision = example.decide(parse_hook_request(hook_body(scope=scope, amount=amount)), facts)
    assert (decision.rule, [s.key for s in decision.steps]) == (rule, steps)
    if rule == "recently-verified":
        assert (decision.status, decision.grant_mode) == ("continue", "single-use")


def test_the_example_policy_reads_facts_where_it_needs_them() -> None:
    example = Policy.load(example_policy_path())
    assert example.reads_facts("transfer:write") and example.reads_facts("prld:pwd:write")
    assert not example.reads_facts("profile:read")
