"""``simulate run``: send every scenario as Prelude would and check each answer, then take
every custom step end to end and probe the signature check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .client import ServiceClient, ServiceError
from .flows import SERVICE_UNREACHABLE, UNEXPECTED_DECISION, Flow, build_flow, custom_keys
from .prelude import PreludeChallenge, new_user_id
from .report import Report
from .scenarios import Expectation, Scenario, ScenarioFile


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
        await flow.probes(scenarios.scenarios[0].request)
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
