"""Explaining a decision: every rule of the scope in order with its result and the values its
``when`` read (``policy eval --trace``; the DEBUG log line of a live request).

The trace evaluates the rules one by one, the engine's reference semantics (the engine folds
them into one CEL program only to reach the same answer faster), and stops where the engine
stops: at the first match or the first error; later rules are ``not reached``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from hook_service.facts.base import Facts
from hook_service.hook.base import HookRequest
from hook_service.policy.base import Decision
from hook_service.policy.engine import Policy, failure
from hook_service.policy.refs import references, show_reference

MATCHED: Final = "matched"
NO_MATCH: Final = "no match"
NOT_REACHED: Final = "not reached"
# Personal data (GUIDE: never logged raw): the live trace shows that they were read, not what.
REDACTED_SIGNALS: Final = frozenset({"ip", "user_agent"})
_ABSENT: Final = "<absent>"
_VALUE_CHARS: Final = 60


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One rule: ``result`` is matched, no match, ``error: …`` or not reached; ``read`` the
    values its ``when`` names (``metadata.amount``, ``facts.device_known``...), as shown."""

    name: str
    result: str
    read: dict[str, str]


@dataclass(frozen=True, slots=True)
class Trace:
    scope: str
    listed: bool  # whether the policy lists the scope (else `default` decides)
    rules: tuple[RuleTrace, ...]
    decision: Decision

    def lines(self) -> list[str]:
        """The trace as ``policy eval --trace`` prints it."""
        out = [f"scope {self.scope}" + ("" if self.listed else ": not listed, default decides")]
        width = max((len(rule.name) for rule in self.rules), default=0)
        for number, rule in enumerate(self.rules, start=1):
            read = " ".join(f"{name}={value}" for name, value in rule.read.items())
            out.append(f"  {number}. {rule.name:<{width}}  {rule.result:<11}  {read}".rstrip())
        out.append(f"decision: {self.decision.status} (rule {self.decision.rule})")
        return out

    def one_line(self) -> str:
        """The trace as one log line (the live DEBUG trace)."""
        rules = "; ".join(
            f"{rule.name}: {rule.result}"
            + (" [" + " ".join(f"{k}={v}" for k, v in rule.read.items()) + "]" if rule.read else "")
            for rule in self.rules
        )
        return (
            f"trace scope={self.scope} revision={self.decision.revision} "
            f"rules=({rules or 'none'}) -> {self.decision.status} rule={self.decision.rule}"
        )


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def _read(when: str | None, context: Mapping[str, Any], redact: bool) -> dict[str, str]:
    if when is None:
        return {}
    shown: dict[str, str] = {}
    for name, keys in references(when).items():
        values = context.get(name, {})
        for key in keys:
            if redact and name == "signals" and key in REDACTED_SIGNALS:
                value = "<redacted>" if key in values else _ABSENT
            else:
                value = _show(values[key]) if key in values else _ABSENT
            shown[show_reference(name, key)] = value
    return shown


def trace(
    policy: Policy,
    request: HookRequest,
    decision: Decision,
    facts: Facts | Mapping[str, Any] | None = None,
    *,
    redact: bool = False,
) -> Trace:
    """The trace of ``decision`` (what ``policy.decide(request, facts)`` answered).
    ``redact`` hides ``signals.ip`` and ``signals.user_agent`` (for logs)."""
    specs = policy.spec.scopes.get(request.scope_requested)
    if specs is None:
        return Trace(request.scope_requested, False, (), decision)
    context = policy.context(request, facts)
    activation = policy.activation(context)
    rules: list[RuleTrace] = []
    stopped = False
    for spec in specs:
        if stopped:  # the engine never evaluates it, so it reads nothing
            rules.append(RuleTrace(spec.name, NOT_REACHED, {}))
            continue
        read = _read(spec.when, context, redact)
        if spec.program is None:
            result = MATCHED
        else:
            value = spec.program.eval(activation)
            outcome = value.value()
            if outcome is True:
                result = MATCHED
            elif outcome is False:
                result = NO_MATCH
            else:
                result = f"error: {failure(value)}"
        stopped = result != NO_MATCH
        rules.append(RuleTrace(spec.name, result, read))
    return Trace(request.scope_requested, True, tuple(rules), decision)
