"""``simulate run``: send every scenario as Prelude would and check each answer, then take
every custom step end to end and probe the signature check.

Sequences (:mod:`.sequences`) are played after the scenarios: one user's hook requests, token
requests and outcome reports in order, each answer checked before the next step runs. A step
that fails ends its sequence, since what follows depended on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio

from .client import Answer, ServiceClient, ServiceError
from .flows import (
    SERVICE_UNREACHABLE,
    TOKEN_REQUEST_FAILED,
    UNEXPECTED_DECISION,
    UNEXPECTED_STATUS,
    Flow,
    build_flow,
    custom_keys,
    token_of,
)
from .prelude import PreludeChallenge, new_challenge_id, new_user_id
from .report import Report
from .scenarios import Expectation, Scenario, ScenarioFile
from .sequences import HookStep, OutcomeStep, Sequence, Step, TokenStep
from .verifier import Challenge


async def simulate_run(
    service: ServiceClient, scenarios: ScenarioFile, clock: Callable[[], float] = time.time
) -> Report:
    """Play every scenario against ``service``; the report holds one row per check."""
    flow = build_flow(service, "simulate run", clock, clock)
    await run_scenarios(flow, scenarios)
    return flow.report


async def run_scenarios(flow: Flow, scenarios: ScenarioFile) -> None:
    """Add one row per check to ``flow.report``; the report's ``passed`` is the verdict."""
    flow.step_keys = scenarios.step_keys
    try:
        await flow.jwks()
        for scenario in scenarios.scenarios:
            await _run_one(flow, scenario)
        await run_sequences(flow, scenarios.sequences)
        first = scenarios.first_request()
        if first is not None:  # the signature probes need a hook request to sign
            await flow.probes(first)
        await flow.token_probes(scenarios.custom_step_request())
    except ServiceError as exc:
        flow.report.fail("service reachable", SERVICE_UNREACHABLE, str(exc))


async def _run_one(flow: Flow, scenario: Scenario) -> None:
    user_id = scenario.request.user_id or new_user_id()
    answer, verdict = await flow.hook(scenario.request, user_id)
    label = scenario.name
    accepted = "Prelude accepts the answer"
    if verdict.reason is not None:
        flow.report.fail(accepted, verdict.reason, verdict.detail, group=label)
        return
    flow.report.ok(accepted, verdict.detail, group=label)
    decision = verdict.decision or {}
    mismatch = compare(scenario.expect, decision, answer.rule)
    if mismatch:
        flow.report.fail("expected decision", UNEXPECTED_DECISION, mismatch, group=label)
        return
    flow.report.ok("expected decision", describe(decision, answer.rule), group=label)
    if decision.get("status") == "review":
        for key in custom_keys(decision):
            request = scenario.request
            opened = PreludeChallenge.open(
                decision, sub=user_id, scope=request.scope, metadata=request.metadata
            )
            await flow.custom_step(label, opened, key)


def compare(expect: Expectation, decision: dict[str, Any], rule: str | None) -> str:
    """What differs from ``expect``, as a sentence; empty when everything matches."""
    steps = tuple(s.get("key") for s in decision.get("steps") or [] if isinstance(s, dict))
    differences = []
    wanted: list[tuple[str, Any, Any]] = [
        ("status", expect.status, decision.get("status")),
        ("steps", expect.steps, steps),
        ("rule (X-Hook-Rule)", expect.rule, rule),
        ("grant_mode", expect.grant_mode, decision.get("grant_mode")),
        ("granted_for", expect.granted_for, decision.get("granted_for")),
    ]
    for name, expected, got in wanted:
        if expected is not None and expected != got:
            differences.append(f"{name}: expected {_show(expected)}, got {_show(got)}")
    return "; ".join(differences)


def describe(decision: dict[str, Any], rule: str | None) -> str:
    """A one-line summary of a decision for the report."""
    steps = [s.get("key") for s in decision.get("steps") or [] if isinstance(s, dict)]
    text = f"{decision.get('status')} {decision.get('grant_mode')} {decision.get('granted_for')} s"
    if steps:
        text += " steps " + ", ".join(map(str, steps))
    return text + (f" (rule {rule})" if rule else "")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value)


OUTCOME_FAILED: Final = "outcome_failed"
# A report expected to be recorded that meets 404 no_attempt is sent again every
# OUTCOME_RETRY seconds for up to OUTCOME_SETTLE seconds (see _outcome).
OUTCOME_SETTLE: Final = 1.0
OUTCOME_RETRY: Final = 0.05


@dataclass(slots=True)
class _State:
    """What a sequence has seen so far: its user and the last hook's request and decision."""

    user_id: str
    scope: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)


async def run_sequences(flow: Flow, sequences: tuple[Sequence, ...]) -> None:
    """One report group per sequence, one row per step."""
    for sequence in sequences:
        state = _State(sequence.user_id or new_user_id())
        for number, step in enumerate(sequence.steps, start=1):
            if not await _run_step(flow, sequence.name, number, step, state):
                break


async def _run_step(flow: Flow, group: str, number: int, step: Step, state: _State) -> bool:
    if isinstance(step, HookStep):
        return await _hook(flow, group, number, step, state)
    if isinstance(step, TokenStep):
        return await _token(flow, group, number, step, state)
    return await _outcome(flow, group, number, step, state)


async def _hook(flow: Flow, group: str, number: int, step: HookStep, state: _State) -> bool:
    spec = step.request
    title = f"{number}. hook {spec.scope}" + (f" x{step.repeat}" if step.repeat > 1 else "")
    for attempt in range(1, step.repeat + 1):
        answer, verdict = await flow.hook(spec, state.user_id)
        which = f"request {attempt} of {step.repeat}: " if step.repeat > 1 else ""
        if verdict.reason is not None:
            flow.report.fail(title, verdict.reason, which + verdict.detail, group=group)
            return False
        decision = verdict.decision or {}
        mismatch = compare(step.expect, decision, answer.rule)
        if mismatch:
            flow.report.fail(title, UNEXPECTED_DECISION, which + mismatch, group=group)
            return False
    state.scope, state.metadata, state.decision = spec.scope, spec.metadata, decision
    flow.report.ok(title, describe(decision, answer.rule), group=group)
    return True


async def _token(flow: Flow, group: str, number: int, step: TokenStep, state: _State) -> bool:
    title = f"{number}. token {step.key}"
    keys = [s.get("key") for s in state.decision.get("steps") or [] if isinstance(s, dict)]
    if state.scope is not None and state.decision.get("status") == "review" and step.key in keys:
        opened = PreludeChallenge.open(
            state.decision, sub=state.user_id, scope=state.scope, metadata=state.metadata
        )
        now = flow.clock()
        token = flow.service.prelude.challenge_token(opened, step.key, now)
        answer = await flow.service.request_token({"challenge_token": token})
        if step.expect == "issued" and token_of(answer) is not None:
            challenge = Challenge.from_claims(opened.claims(step.key, now))
            issued = await flow.verify(
                title, answer, challenge, "challenge_token form", group=group
            )
            return issued is not None
    else:  # the last decision did not ask for this step: the fields form, a new challenge
        fields = {"user_id": state.user_id, "challenge_id": new_challenge_id(), "key": step.key}
        answer = await flow.service.request_token(fields)
    return _expected(flow, title, group, answer, step.expect, "issued", TOKEN_REQUEST_FAILED)


async def _outcome(flow: Flow, group: str, number: int, step: OutcomeStep, state: _State) -> bool:
    scope = step.scope or state.scope
    title = f"{number}. outcome {step.outcome} for {scope}"
    payload = {"user_id": state.user_id, "scope": scope, "outcome": step.outcome}
    answer = await flow.service.report_outcome(payload)
    # The service settles a decision's attempt in the background, right after its answer;
    # a real backend reports the outcome seconds later (the user had a step to finish).
    deadline = time.monotonic() + OUTCOME_SETTLE
    while step.expect == "recorded" and _no_attempt(answer) and time.monotonic() < deadline:
        await anyio.sleep(OUTCOME_RETRY)
        answer = await flow.service.report_outcome(payload)
    if answer.status_code == 200 and (answer.body or {}).get("recorded") is not True:
        detail = 'HTTP 200 without "recorded": true'
        flow.report.fail(title, OUTCOME_FAILED, detail, group=group)
        return False
    return _expected(flow, title, group, answer, step.expect, "recorded", OUTCOME_FAILED)


def _no_attempt(answer: Answer) -> bool:
    return answer.status_code == 404 and (answer.body or {}).get("error") == "no_attempt"


def _expected(
    flow: Flow, title: str, group: str, answer: Answer, expect: str, success: str, why: str
) -> bool:
    """Report whether ``answer`` is what ``expect`` names: ``success`` (the call did what it
    asks for, a 200) or the error code of a refusal. ``why`` is the reason when the call was
    expected to succeed and did not."""
    code = success if answer.status_code == 200 else (answer.body or {}).get("error")
    if code == expect:
        flow.report.ok(title, f"HTTP {answer.status_code} {code}", group=group)
        return True
    got = f"HTTP 200 {success}" if code == success else answer.error
    reason = why if expect == success else UNEXPECTED_STATUS
    flow.report.fail(title, reason, f"expected {expect}, got {got}", group=group)
    return False
