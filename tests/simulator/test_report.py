"""The report: a table a person can read, JSON with stable keys, and a verdict."""

from __future__ import annotations

import json

from hook_service.simulator.report import Report


def sample() -> Report:
    report = Report("simulate run", "http://127.0.0.1:8000")
    report.ok("Prelude accepts the answer", "HTTP 200 in 0.002 s", group="small transfer")
    report.fail(
        "kyc_review token verifies",
        "invalid_verification_token",
        "exp: exp is 7200 s ahead, more than 3600 s " * 3,
        group="large transfer",
    )
    report.ok("refuses a request with no signature", "HTTP 401")
    return report


def test_table_groups_checks_and_names_the_reason() -> None:
    lines = sample().render_table(width=110).splitlines()
    assert lines[0] == "simulate run against http://127.0.0.1:8000"
    assert lines[1].split() == ["check", "result", "reason", "detail"]
    assert lines[2] == "small transfer"
    assert lines[3].split() == [
        "Prelude",
        "accepts",
        "the",
        "answer",
        "pass",
        "HTTP",
        "200",
        "in",
        "0.002",
        "s",
    ]
    assert lines[4] == "large transfer"
    failed = lines[5]
    assert failed.startswith("  kyc_review token verifies")
    assert "FAIL    invalid_verification_token  exp: exp is 7200 s ahead" in failed
    assert all(len(line) <= 110 for line in lines)
    wrapped = [line.strip() for line in lines[6:-2]]
    assert (
        " ".join([failed.split("  ")[-1], *wrapped])
        == ("exp: exp is 7200 s ahead, more than 3600 s " * 3).strip()
    )
    # A check outside any group is not indented under the group before it.
    assert lines[-2].startswith("refuses a request with no signature")
    assert lines[-1] == "2/3 checks passed; 1 failed"


def test_json_has_stable_keys_and_the_verdict() -> None:
    report = sample()
    data = json.loads(report.render_json())
    assert data == {
        "command": "simulate run",
        "target": "http://127.0.0.1:8000",
        "passed": False,
        "failed": 1,
        "checks": [check.to_json() for check in report.checks],
    }
    assert data["checks"][1] == {
        "group": "large transfer",
        "check": "kyc_review token verifies",
        "passed": False,
        "reason": "invalid_verification_token",
        "detail": "exp: exp is 7200 s ahead, more than 3600 s " * 3,
    }
    assert data["checks"][0]["reason"] is None


def test_an_empty_report_does_not_pass() -> None:
    empty = Report("simulate run", "http://x")
    assert not empty.passed
    assert empty.render_table(80).splitlines()[-1] == "0/0 checks passed; nothing was checked"
