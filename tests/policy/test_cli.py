"""`hook-service policy check --strict`, `policy test` and `policy eval --facts --trace`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from hook_service.cli import cli
from hook_service.policy.engine import Policy, example_policy_path

EXAMPLE = example_policy_path()
EXAMPLE_TESTS = EXAMPLE.with_name("example.tests.yaml")
TRANSFER = {
    "scope_requested": "transfer:write",
    "user_id": "usr_1",
    "identifiers": [{"type": "phone_number", "value": "+33612345678"}],
    "signals": {"platform": "WEB", "ip": "203.0.113.42"},
    "metadata": {"amount": "5000"},
}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["policy", *args])


def transfer_policy(path: Path, *rules: dict[str, Any]) -> Path:
    """A policy file whose only scope is transfer:write with ``rules``."""
    return write(path, {"version": 1, "scopes": {"transfer:write": {"rules": list(rules)}}})


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return path


# --- check ----------------------------------------------------------------------------------

LINTED = {
    "version": 1,
    "scopes": {
        "s": {"rules": [{"name": "all", "status": "block"}, {"name": "dead", "status": "block"}]}
    },
}


def test_check_prints_lints_and_passes_unless_strict(tmp_path: Path) -> None:
    policy = write(tmp_path / "p.yaml", LINTED)
    result = run("check", str(policy))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == (
        f"{policy}: scopes.s.rules[1] (dead): warning: never matches: rule all before it "
        "always matches (it has no `when`)"
    )
    assert lines[1] == f"{policy}: ok (0 custom step(s) declared, 1 warning(s))"
    strict = run("check", "--strict", str(policy))
    assert strict.exit_code == 1
    assert "1 warning(s) with --strict" in strict.stderr


def test_check_strict_passes_a_clean_policy_and_invalid_is_still_2(tmp_path: Path) -> None:
    assert run("check", "--strict", str(EXAMPLE)).exit_code == 0
    bad = write(tmp_path / "bad.yaml", {"version": 1, "scopes": {"a b": {"rules": []}}})
    result = run("check", "--strict", str(bad))
    assert result.exit_code == 2
    assert "a scope must match" in result.stderr  # Prelude's scope pattern: an error already


# --- test -----------------------------------------------------------------------------------


def test_the_shipped_tests_pass_on_the_bundled_policy() -> None:
    result = run("test", str(EXAMPLE), str(EXAMPLE_TESTS))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    cases = yaml.safe_load(EXAMPLE_TESTS.read_text())["tests"]
    assert lines[:-1] == [f"PASS  {case['name']}" for case in cases]
    assert lines[-1] == f"{len(cases)} passed, 0 failed"


def test_the_shipped_tests_cover_every_rule_the_default_and_on_error() -> None:
    spec = Policy.load(EXAMPLE).spec
    rules = {rule.name for rules in spec.scopes.values() for rule in rules}
    expected = {
        case["expect"].get("rule") for case in yaml.safe_load(EXAMPLE_TESTS.read_text())["tests"]
    }
    assert rules | {"default", "on_error"} <= expected


def test_a_changed_rule_makes_the_shipped_tests_fail(tmp_path: Path) -> None:
    changed = tmp_path / "changed.yaml"
    text = EXAMPLE.read_text()
    assert "number(metadata.amount) >= 1000.0" in text
    changed.write_text(
        text.replace("number(metadata.amount) >= 1000.0", "number(metadata.amount) >= 10000.0")
    )
    result = run("test", str(changed), str(EXAMPLE_TESTS))
    assert result.exit_code == 1
    assert (
        "FAIL  large transfer with a phone asks for SMS then KYC: rule: expected "
        '"large-transfer", got "otp-only"; steps: expected ["verify_sms", "kyc_review"], got '
        '["verify_sms"]'
    ) in result.output.splitlines()
    assert result.output.splitlines()[-1].endswith("passed, 3 failed")


def test_facts_given_in_a_case_reach_the_policy_and_json_reports_each_case(tmp_path: Path) -> None:
    policy = transfer_policy(
        tmp_path / "p.yaml",
        {
            "name": "known",
            "when": "facts.device_known && facts.attempts_1h < 5",
            "status": "continue",
        },
        {"name": "rest", "status": "block"},
    )
    tests = write(
        tmp_path / "t.yaml",
        {
            "tests": [
                {
                    "name": "known device",
                    "request": TRANSFER,
                    "facts": {"device_known": True},
                    "expect": {"status": "continue", "rule": "known"},
                },
                {"name": "new device", "request": TRANSFER, "expect": {"status": "continue"}},
            ]
        },
    )
    result = run("test", str(policy), str(tests), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert (report["passed"], report["failed"]) == (1, 1)
    assert report["revision"] == Policy.load(policy).revision
    assert [case["passed"] for case in report["cases"]] == [True, False]
    assert report["cases"][1]["problems"] == ['status: expected "continue", got "block"']
    assert report["cases"][1]["decision"]["rule"] == "rest"


@pytest.mark.parametrize(
    ("tests", "reason"),
    [
        ({"tests": []}, "tests: tests must be a non-empty list"),
        (
            {"tests": [{"name": "x", "request": TRANSFER}]},
            "tests[0] (x).expect: expect must be a mapping",
        ),
        (
            {
                "tests": [
                    {
                        "name": "x",
                        "request": {**TRANSFER, "scope_requested": 5},
                        "expect": {"status": "block"},
                    }
                ]
            },
            "tests[0] (x).request: scope_requested must be a string",
        ),
        (
            {
                "tests": [
                    {
                        "name": "x",
                        "request": TRANSFER,
                        "facts": {"device_know": True},
                        "expect": {"status": "block"},
                    }
                ]
            },
            "tests[0] (x).facts: unknown fact 'device_know'",
        ),
        (
            {
                "tests": [
                    {
                        "name": "x",
                        "request": TRANSFER,
                        "facts": {"attempts_1h": "3"},
                        "expect": {"status": "block"},
                    }
                ]
            },
            'tests[0] (x).facts: fact attempts_1h must be a int, got "3"',
        ),
        (
            {
                "tests": [
                    {"name": "x", "request": TRANSFER, "expect": {"status": "block", "rules": "a"}}
                ]
            },
            "tests[0] (x).expect: unknown key 'rules'",
        ),
        (
            {"tests": [{"name": "x", "request": TRANSFER, "expect": {"status": "block"}}] * 2},
            "tests[1] (x): duplicate case name",
        ),
    ],
)
def test_a_bad_test_file_exits_2_naming_file_case_and_reason(
    tmp_path: Path, tests: Any, reason: str
) -> None:
    path = write(tmp_path / "t.yaml", tests)
    result = run("test", str(EXAMPLE), str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: {reason}")


def test_a_test_file_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("tests:\n  - name: a\n    name: b\n")
    result = run("test", str(EXAMPLE), str(path))
    assert result.exit_code == 2
    assert "duplicate key 'name'" in result.stderr


# --- eval -----------------------------------------------------------------------------------


def test_eval_trace_lists_every_rule_with_what_it_read(tmp_path: Path) -> None:
    request = write(tmp_path / "r.json", TRANSFER)
    result = run("eval", str(EXAMPLE), str(request), "--trace")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:8] == [
        "scope transfer:write",
        "  1. flagged                 no match     facts.flagged=false",
        "  2. velocity                no match     facts.attempts_1h=0",
        '  3. untrusted-platform      no match     signals.platform="WEB"',
        '  4. large-transfer          matched      metadata.amount="5000" facts.step_age={}',
        "  5. new-device-new-country  not reached",
        "  6. otp-only                not reached",
        "decision: review (rule large-transfer)",
    ]
    assert json.loads("\n".join(lines[8:]))["rule"] == "large-transfer"


def test_eval_trace_shows_facts_read_and_an_error(tmp_path: Path) -> None:
    policy = transfer_policy(
        tmp_path / "p.yaml",
        {
            "name": "fresh",
            "when": 'facts.step_age["kyc"] < 300 && facts.device_known',
            "status": "continue",
        },
        {
            "name": "amount",
            "when": "number(metadata.amount) > 1.0",
            "status": "block",
        },
        {"name": "rest", "status": "block"},
    )
    request = write(tmp_path / "r.json", {**TRANSFER, "metadata": {"amount": "NaN"}})
    facts = write(tmp_path / "f.json", {"step_age": {"kyc": 400}, "device_known": True})
    result = run("eval", str(policy), str(request), "--facts", str(facts), "--trace")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[1] == '  1. fresh   no match     facts.step_age={"kyc": 400} facts.device_known=true'
    )
    assert lines[2].startswith("  2. amount  error: OUT_OF_RANGE: number() takes a plain decimal")
    assert lines[2].endswith('metadata.amount="NaN"')
    assert lines[3:5] == ["  3. rest    not reached", "decision: block (rule on_error)"]
    assert "evaluation error: rule amount:" in result.stderr


def test_eval_refuses_bad_facts_naming_the_file_and_the_fact(tmp_path: Path) -> None:
    request = write(tmp_path / "r.json", TRANSFER)
    bad = write(tmp_path / "f.json", {"flagged": "yes"})
    result = run("eval", str(EXAMPLE), str(request), "--facts", str(bad))
    assert result.exit_code == 2
    assert f"{bad}: fact flagged must be a bool" in result.stderr


def test_eval_trace_of_an_unlisted_scope(tmp_path: Path) -> None:
    request = write(tmp_path / "r.json", {**TRANSFER, "scope_requested": "account:delete"})
    lines = run("eval", str(EXAMPLE), str(request), "--trace").output.splitlines()
    assert lines[:2] == [
        "scope account:delete: not listed, default decides",
        "decision: block (rule default)",
    ]
