"""A policy's test cases (``hook-service policy test POLICY TESTS.yaml``; docs/policy.md
"Testing a policy"), in the spirit of cel-go's ``tests.yaml``.

```yaml
tests:
  - name: large transfer asks for KYC
    request: {scope_requested: "transfer:write", metadata: {amount: "5000"}, ...}
    facts: {device_known: false}   # optional; the others take their "nothing known" values
    expect: {status: review, rule: large-transfer, steps: [verify_sms, kyc_review]}
```

``request`` is a hook body (contract 2.1) validated as the hook validates one; ``user_id``,
``identifiers`` and ``signals`` may be left out (a test user, none, none). Every problem with
the file is a :class:`~hook_service.errors.PolicyError` naming the file, the case and the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

from hook_service.errors import HookError, PolicyError
from hook_service.facts.base import NO_FACTS
from hook_service.hook.base import HookRequest
from hook_service.hook.parse import parse_hook_request
from hook_service.policy.base import Decision
from hook_service.policy.engine import Policy
from hook_service.policy.source import read_yaml

_CASE_KEYS: Final = ("name", "request", "facts", "expect")
EXPECT_KEYS: Final = ("status", "rule", "steps", "grant_mode", "granted_for")
_REQUEST_DEFAULTS: Final = {"user_id": "usr_policy_test", "identifiers": [], "signals": {}}
_DEFAULT_FACTS: Final = NO_FACTS.to_cel()


def parse_facts(data: Any) -> dict[str, Any]:
    """The CEL ``facts`` for ``data`` (a mapping of some :class:`Facts` fields): the given
    values over the "nothing known" ones. ValueError saying which field is wrong."""
    if not isinstance(data, dict):
        raise ValueError("facts must be a mapping of fact names to values")
    facts = dict(_DEFAULT_FACTS)
    for name, value in data.items():
        if name not in facts:
            raise ValueError(f"unknown fact {name!r} (known: {', '.join(facts)})")
        default = facts[name]
        if isinstance(default, bool | str):
            ok = type(value) is type(default)
        elif isinstance(default, int):
            ok = type(value) is int
        elif isinstance(default, float):
            ok = type(value) in (int, float) and math.isfinite(value)
            value = float(value) if ok else value
        else:  # step_age: custom step key -> seconds
            ok = isinstance(value, dict) and all(
                isinstance(k, str) and type(v) is int for k, v in value.items()
            )
        if not ok:
            kind = (
                "a map of step keys to seconds"
                if isinstance(default, dict)
                else "a " + type(default).__name__
            )
            raise ValueError(f"fact {name} must be {kind}, got {json.dumps(value, default=str)}")
        facts[name] = value
    return facts


@dataclass(frozen=True, slots=True)
class Case:
    """One test case: a request, the facts it is decided with, what is expected."""

    name: str
    request: HookRequest
    facts: dict[str, Any]
    expect: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A case decided: ``problems`` is empty when it passed."""

    case: Case
    decision: Decision
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "name": self.case.name,
            "passed": self.passed,
            "problems": self.problems,
            "decision": {**d.to_json(), "rule": d.rule, "error": d.error},
        }


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, reason: str) -> NoReturn:
        raise PolicyError(f"{self.path}: {where}: {reason}" if where else f"{self.path}: {reason}")

    def cases(self, data: Any) -> list[Case]:
        if not isinstance(data, dict) or set(data) != {"tests"}:
            self.fail("", "a test file is a mapping with one key, tests (a list of cases)")
        tests = data["tests"]
        if not isinstance(tests, list) or not tests:
            self.fail("tests", "tests must be a non-empty list of cases")
        cases = [self.case(index, entry) for index, entry in enumerate(tests)]
        names = [case.name for case in cases]
        for index, name in enumerate(names):
            if names.index(name) != index:
                self.fail(f"tests[{index}] ({name})", "duplicate case name")
        return cases

    def case(self, index: int, entry: Any) -> Case:
        where = f"tests[{index}]"
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.strip():
            self.fail(where, "each case needs a name (a non-empty string)")
        where = f"{where} ({name})"
        for key in entry:
            if key not in _CASE_KEYS:
                self.fail(where, f"unknown key {key!r} (allowed: {', '.join(_CASE_KEYS)})")
        return Case(
            name,
            self.request(where, entry.get("request")),
            self.facts(where, entry),
            self.expect(where, entry.get("expect")),
        )

    def request(self, where: str, value: Any) -> HookRequest:
        if not isinstance(value, dict):
            self.fail(where, "request must be a mapping (a hook request body)")
        try:
            body = json.dumps({**_REQUEST_DEFAULTS, **value}).encode()
            return parse_hook_request(body)
        except (TypeError, ValueError) as exc:
            self.fail(f"{where}.request", f"not JSON data: {exc}")
        except HookError as exc:
            self.fail(f"{where}.request", exc.detail)

    def facts(self, where: str, entry: dict[str, Any]) -> dict[str, Any]:
        try:
            return parse_facts(entry.get("facts", {}))
        except ValueError as exc:
            self.fail(f"{where}.facts", str(exc))

    def expect(self, where: str, value: Any) -> dict[str, Any]:
        where = f"{where}.expect"
        if not isinstance(value, dict) or "status" not in value:
            self.fail(where, "expect must be a mapping with at least status")
        for key in value:
            if key not in EXPECT_KEYS:
                self.fail(where, f"unknown key {key!r} (allowed: {', '.join(EXPECT_KEYS)})")
        steps = value.get("steps", [])
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            self.fail(where, "steps must be a list of step keys")
        return value


def load_cases(path: Path) -> list[Case]:
    """The cases of the test file at ``path``; PolicyError naming file, case and reason."""
    return _Reader(path).cases(read_yaml(path, "test file").data)


def _got(decision: Decision) -> dict[str, Any]:
    return {
        "status": decision.status,
        "rule": decision.rule,
        "steps": [step.key for step in decision.steps],
        "grant_mode": decision.grant_mode,
        "granted_for": decision.granted_for,
    }


def run_case(policy: Policy, case: Case) -> Outcome:
    """Decide ``case`` with ``policy`` and compare with what it expects."""
    decision = policy.decide(case.request, case.facts)
    got = _got(decision)
    problems = [
        f"{key}: expected {json.dumps(value)}, got {json.dumps(got[key])}"
        for key, value in case.expect.items()
        if got[key] != value
    ]
    if problems and decision.error:
        problems.append(f"(on_error because {decision.error})")
    return Outcome(case, decision, problems)
