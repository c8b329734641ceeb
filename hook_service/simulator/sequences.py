"""Sequences: scenarios with history. One user goes through hook requests, token requests and
outcome reports, with the answer expected after each (issue 11 point 8).

```yaml
sequences:
  - name: KYC once, then OTP only on the same device; fraud blocks
    steps:                                # user_id: fresh per run unless given
      - hook: &transfer                   # a hook request, as a scenario's request
          scope: transfer:write
          identifiers: [{type: phone_number, value: "+33612345678"}]
          signals: {platform: WEB, ip: "81.2.69.142", user_agent: "Mozilla/5.0 …"}
          metadata: {amount: "1500"}
        expect: {status: review, steps: [verify_sms, kyc_review]}
      - token: kyc_review                 # POST /verification-token for the last decision
        expect: issued                    # or no_pending_step, step_already_used
      - hook: *transfer                   # YAML aliases repeat a request
        expect: {status: review, steps: [verify_sms]}
      - outcome: fraud                    # POST /outcomes; scope: the last hook's unless given
        expect: recorded                  # or no_attempt
      - hook: *transfer
        repeat: 3                         # the same request 3 times, each expecting this
        expect: {status: block}
```

A token step opens the challenge Prelude would open from the last hook's decision when that
decision asked for the key (the challenge-token form, earlier steps done), and otherwise asks
with the fields form and a new challenge id. Each token step is a new challenge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .scenarios import (
    Expectation,
    HookRequestSpec,
    ScenarioError,
    expectation,
    hook_request,
    mapping,
    named_list,
)

TOKEN_EXPECT: Final = ("issued", "no_pending_step", "step_already_used")
OUTCOME_EXPECT: Final = ("recorded", "no_attempt")
OUTCOMES: Final = ("verified", "fraud")
MAX_REPEAT: Final = 100

_SEQUENCE: Final = {"name", "user_id", "steps"}
_KINDS: Final = ("hook", "token", "outcome")


@dataclass(frozen=True, slots=True)
class HookStep:
    """A signed hook request (``repeat`` times), each answer matching ``expect``."""

    request: HookRequestSpec
    expect: Expectation
    repeat: int = 1


@dataclass(frozen=True, slots=True)
class TokenStep:
    """``POST /verification-token`` for ``key``; ``expect`` is ``issued`` or an error code."""

    key: str
    expect: str


@dataclass(frozen=True, slots=True)
class OutcomeStep:
    """``POST /outcomes``; ``scope`` None means the last hook's; ``expect`` is ``recorded`` or
    an error code."""

    outcome: str
    scope: str | None
    expect: str


Step = HookStep | TokenStep | OutcomeStep


@dataclass(frozen=True, slots=True)
class Sequence:
    name: str
    user_id: str | None
    steps: tuple[Step, ...]

    def hooks(self) -> tuple[HookStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, HookStep))


def parse_sequences(items: Any, where: str, step_keys: frozenset[str]) -> tuple[Sequence, ...]:
    """The ``sequences`` list of a scenario file; raises :class:`ScenarioError`."""
    return named_list(
        items, where, "sequence", lambda item, label: _sequence(item, label, step_keys)
    )


def _sequence(item: Any, label: str, step_keys: frozenset[str]) -> Sequence:
    data = mapping(item, label, _SEQUENCE, required={"name", "steps"})
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(f"{label}: name must be a non-empty string")
    user_id = data.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or not user_id):
        raise ScenarioError(f"{label}: user_id must be a non-empty string")
    raw_steps = data["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{label}: steps must be a non-empty list")
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps, start=1):
        where = f"{label}: step {index}"
        step = _step(raw, where, step_keys)
        if (
            isinstance(step, OutcomeStep)
            and step.scope is None
            and not any(isinstance(s, HookStep) for s in steps)
        ):
            raise ScenarioError(f"{where}: scope is required before the first hook step")
        steps.append(step)
    return Sequence(name, user_id, tuple(steps))


def _step(raw: Any, where: str, step_keys: frozenset[str]) -> Step:
    kinds = [k for k in _KINDS if isinstance(raw, dict) and k in raw]
    if len(kinds) != 1:
        raise ScenarioError(f"{where}: must have exactly one of {', '.join(_KINDS)}")
    kind = kinds[0]
    if kind == "hook":
        data = mapping(raw, where, {"hook", "expect", "repeat"}, required={"hook", "expect"})
        repeat = data.get("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= MAX_REPEAT:
            raise ScenarioError(f"{where}: repeat must be an integer from 1 to {MAX_REPEAT}")
        request = hook_request(data["hook"], f"{where}: hook")
        if request.user_id is not None:
            raise ScenarioError(f"{where}: hook: user_id belongs to the sequence, not a step")
        return HookStep(request, expectation(data["expect"], f"{where}: expect"), repeat)
    if kind == "token":
        data = mapping(raw, where, {"token", "expect"}, required={"token", "expect"})
        key = data["token"]
        if key not in step_keys:
            raise ScenarioError(f"{where}: token {key!r} is not one of step_keys")
        return TokenStep(key, _choice(data["expect"], TOKEN_EXPECT, f"{where}: expect"))
    data = mapping(raw, where, {"outcome", "scope", "expect"}, required={"outcome", "expect"})
    outcome = _choice(data["outcome"], OUTCOMES, f"{where}: outcome")
    scope = data.get("scope")
    if scope is not None:
        scope = hook_request({"scope": scope}, where).scope
    return OutcomeStep(outcome, scope, _choice(data["expect"], OUTCOME_EXPECT, f"{where}: expect"))


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ScenarioError(f"{where} must be one of {', '.join(allowed)}")
    return str(value)
