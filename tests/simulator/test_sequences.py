"""Sequences (issue 11 point 8): the format, and playing them against the real service on the
in-memory stores and on a real Redis, then reading what the service learned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hook_service.simulator.report import Report
from hook_service.simulator.runner import simulate_run
from hook_service.simulator.scenarios import (
    ScenarioError,
    ScenarioFile,
    load_scenarios,
    shipped_scenarios,
)
from hook_service.simulator.sequences import HookStep, OutcomeStep, TokenStep
from tests.conftest import AppFactory
from tests.simulator.support import scenario_file, service_client, sim_keys
from tests.support import ADMIN_TOKEN, FakeClock, bearer

pytestmark = pytest.mark.anyio

USER = "usr_sequence_1"
TOKEN_USER = "usr_sequence_2"
# The bundled example policy: a large transfer asks for SMS then KYC, a small one for SMS,
# and a user reported for fraud is blocked (rule flagged).
SEQUENCES = f"""
version: 1
step_keys: [kyc_review]
sequences:
  - name: a token once, a second challenge refused, outcomes
    user_id: {USER}
    steps:
      - hook: &large
          scope: "transfer:write"
          identifiers: [{{type: phone_number, value: "+33612345678"}}]
          signals: {{platform: WEB, ip: "81.2.69.142", user_agent: "Mozilla/5.0"}}
          metadata: {{amount: "1500"}}
        expect: {{status: review, steps: [verify_sms, kyc_review], rule: large-transfer}}
      - token: kyc_review
        expect: issued
      - token: kyc_review
        expect: step_already_used
      - hook:
          scope: "transfer:write"
          identifiers: [{{type: phone_number, value: "+33612345678"}}]
          signals: {{platform: WEB}}
          metadata: {{amount: "20"}}
        repeat: 3
        expect: {{status: review, steps: [verify_sms]}}
      - outcome: verified
        scope: "profile:read"
        expect: no_attempt
      - outcome: fraud
        expect: recorded
      - hook: *large
        expect: {{status: block, rule: flagged}}
  - name: a token teaches step_age
    user_id: {TOKEN_USER}
    steps:
      - hook: *large
        expect: {{status: review, steps: [verify_sms, kyc_review]}}
      - token: kyc_review
        expect: issued
  - name: nothing asked yet
    steps:
      - token: kyc_review
        expect: no_pending_step
      - outcome: verified
        scope: "transfer:write"
        expect: no_attempt
"""


@pytest.fixture(params=["memory", "redis"])
def real_app(request: pytest.FixtureRequest, make_app: AppFactory, tmp_path: Path) -> Any:
    """The real service on each store, trusting the simulator's Prelude JWKS."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    jwks = tmp_path / "sim-jwks.json"
    jwks.write_text(json.dumps(sim_keys().jwks()))
    return make_app(url, prelude_jwks_file=jwks)


async def play(
    app: Any, clock: FakeClock, scenarios: ScenarioFile
) -> tuple[Report, dict[str, Any]]:
    """Run ``scenarios``; the report and what the service then holds for each user."""
    held: dict[str, Any] = {}
    async with service_client(app, clock) as service:
        report = await simulate_run(service, scenarios, clock)
        for user in (USER, TOKEN_USER):
            url = service.url(f"/admin/users/{user}/facts")
            held[user] = (await service.http.get(url, headers=bearer(ADMIN_TOKEN))).json()
    return report, held


def rows(report: Report, group: str) -> list[tuple[str, bool, str | None]]:
    return [(c.name, c.passed, c.reason) for c in report.checks if c.group == group]


async def test_sequences_pass_against_the_real_service(
    real_app: Any, clock: FakeClock, tmp_path: Path
) -> None:
    scenarios = load_scenarios(scenario_file(tmp_path, SEQUENCES))
    report, held = await play(real_app, clock, scenarios)
    assert report.failures() == []
    first = "a token once, a second challenge refused, outcomes"
    assert [title for title, _, _ in rows(report, first)] == [
        "1. hook transfer:write",
        "2. token kyc_review",
        "3. token kyc_review",
        "4. hook transfer:write x3",
        "5. outcome verified for profile:read",
        "6. outcome fraud for transfer:write",
        "7. hook transfer:write",
    ]
    assert report.check(f"{first}: 2. token kyc_review").detail.startswith(
        "challenge_token form; RS256"
    )
    assert report.check(f"{first}: 3. token kyc_review").detail == "HTTP 409 step_already_used"
    assert len(rows(report, "nothing asked yet")) == 2
    # What the service learned: the fraud report (which forgot the token's step_age) ...
    flagged = held[USER]
    assert (flagged["facts"]["flagged"], flagged["facts"]["step_age"]) == (True, {})
    # ... and, for the other user, the token.
    taught = held[TOKEN_USER]
    assert (taught["facts"]["flagged"], taught["facts"]["step_age"]) == (False, {"kyc_review": 0})
    assert taught["records"] == {"pending_steps": 0, "issued_tokens": 1}


@pytest.mark.parametrize(
    ("expected", "wrong", "row", "detail"),
    [
        (
            "expect: issued",
            "expect: no_pending_step",
            "2. token kyc_review",
            # A token minted where a refusal was expected, said plainly.
            "expected no_pending_step, got HTTP 200 issued",
        ),
        (
            "expect: {status: review, steps: [verify_sms]}",
            "expect: {status: block}",
            "4. hook transfer:write x3",
            "request 1 of 3: status: expected 'block', got 'review'",
        ),
        (
            "expect: no_attempt",
            "expect: recorded",
            "5. outcome verified for profile:read",
            "expected recorded, got HTTP 404 no_attempt: ",
        ),
    ],
)
async def test_a_wrong_expectation_fails_its_step_and_ends_the_sequence(
    make_app: AppFactory,
    clock: FakeClock,
    tmp_path: Path,
    expected: str,
    wrong: str,
    row: str,
    detail: str,
) -> None:
    jwks = tmp_path / "sim-jwks.json"
    jwks.write_text(json.dumps(sim_keys().jwks()))
    app = make_app(prelude_jwks_file=jwks)
    text = SEQUENCES.replace(expected, wrong, 1)
    report, _ = await play(app, clock, load_scenarios(scenario_file(tmp_path, text)))
    group = "a token once, a second challenge refused, outcomes"
    steps = rows(report, group)
    assert steps[-1][:2] == (row, False)  # nothing ran after it
    assert report.check(f"{group}: {row}").detail.startswith(detail)
    assert not report.passed


def test_a_file_of_sequences_only_loads(tmp_path: Path) -> None:
    loaded = load_scenarios(scenario_file(tmp_path, SEQUENCES))
    assert loaded.scenarios == ()
    first, _, last = loaded.sequences
    assert first.user_id == USER and last.user_id is None
    kinds = [type(step) for step in first.steps]
    assert kinds == [HookStep, TokenStep, TokenStep, HookStep, OutcomeStep, OutcomeStep, HookStep]
    large, small, _ = first.hooks()
    assert (large.repeat, small.repeat, small.request.metadata) == (1, 3, {"amount": "20"})
    assert first.steps[5] == OutcomeStep("fraud", None, "recorded")
    assert loaded.first_request() == large.request
    assert loaded.custom_step_request() == large.request


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("[{token: kyc_review, outcome: fraud, expect: issued}]", "exactly one of"),
        ("[{wait: 10}]", "exactly one of"),
        ("[{token: manual, expect: issued}]", "not one of step_keys"),
        ("[{token: kyc_review, expect: minted}]", "expect must be one of issued"),
        ("[{outcome: fraud, expect: recorded}]", "scope is required before the first hook"),
        ("[{outcome: granted, scope: a, expect: recorded}]", "outcome must be one of"),
        ("[{outcome: fraud, scope: 'a b', expect: recorded}]", "does not match"),
        ("[{hook: {scope: a}, expect: {status: review}, repeat: 0}]", "repeat must be"),
        ("[{hook: {scope: a}, expect: {status: review}, repeat: true}]", "repeat must be"),
        ("[{hook: {scope: a, user_id: u}, expect: {status: review}}]", "belongs to the sequence"),
        ("[{hook: {scope: a}}]", "expect is required"),
        ("[{hook: {scope: a}, expect: {status: review}, then: x}]", "unknown key 'then'"),
        ("[]", "steps must be a non-empty list"),
    ],
)
def test_bad_sequences_are_refused_naming_the_place(
    tmp_path: Path, steps: str, message: str
) -> None:
    text = f"version: 1\nstep_keys: [kyc_review]\nsequences:\n  - name: s\n    steps: {steps}\n"
    with pytest.raises(ScenarioError, match=message) as caught:
        load_scenarios(scenario_file(tmp_path, text))
    assert "sequence 1 (s)" in str(caught.value)


def test_a_file_needs_scenarios_or_sequences(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="scenarios or sequences is required"):
        load_scenarios(scenario_file(tmp_path, "version: 1\n"))
    one = "  - {name: s, steps: [{token: k, expect: issued}]}\n"
    twice = "version: 1\nstep_keys: [k]\nsequences:\n" + one + one
    with pytest.raises(ScenarioError, match="name is used by an earlier sequence"):
        load_scenarios(scenario_file(tmp_path, twice))


def test_the_shipped_history_sequences_load() -> None:
    loaded = load_scenarios(shipped_scenarios("history.yaml"))
    assert loaded.step_keys == {"kyc_review"}
    names = [s.name for s in loaded.sequences]
    assert len(names) == 4 and all(loaded.sequences)
    steps = [step for sequence in loaded.sequences for step in sequence.steps]
    assert {type(s) for s in steps} == {HookStep, TokenStep, OutcomeStep}
    assert {s.outcome for s in steps if isinstance(s, OutcomeStep)} == {"verified", "fraud"}


async def test_the_shipped_history_sequences_pass_against_the_example_policy(
    real_app: Any, clock: FakeClock
) -> None:
    report, _ = await play(real_app, clock, load_scenarios(shipped_scenarios("history.yaml")))
    assert report.failures() == []
