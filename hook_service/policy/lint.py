"""Lints: what a valid policy does that its author almost certainly did not mean
(``hook-service policy check``; docs/policy.md "Lints").

Validation (:mod:`hook_service.policy.schema`) refuses what Prelude would refuse; a lint flags a
policy Prelude accepts but that is weaker than it reads: a rule that can never match, a
``metadata`` key Prelude can never send, an ``on_error`` weaker than the rules it stands in for,
an unused custom step, and ``double()`` on request data (NaN dodges every comparison).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from hook_service.policy.refs import (
    COMPARISONS,
    Token,
    normalized,
    references,
    show_reference,
    tokens,
)
from hook_service.policy.schema import PolicySpec, RuleSpec, rule_place

# Contract 2.1: metadata keys are at most 12 characters from [a-zA-Z0-9.\-_:].
METADATA_KEY: Final = re.compile(r"[a-zA-Z0-9.\-_:]{1,12}")
# block > review > continue: how much an answer asks of the user.
STRENGTH: Final = {"continue": 0, "review": 1, "block": 2}


@dataclass(frozen=True, slots=True)
class Lint:
    """One lint: where in the file (as validation errors name it) and why."""

    place: str
    reason: str

    def render(self, source: str) -> str:
        """``file: place: warning: reason``, the line ``policy check`` prints."""
        return f"{source}: {self.place}: warning: {self.reason}"


def lint(spec: PolicySpec) -> list[Lint]:
    """Every lint of a validated policy, in file order (rules first, then the file level)."""
    found: list[Lint] = []
    for scope, rules in spec.scopes.items():
        for index, rule in enumerate(rules):
            place = rule_place(scope, index, rule.name)
            shadow = _shadowed_by(rules[:index], rule)
            if shadow is not None:
                found.append(Lint(place, f"never matches: {shadow}"))
            if rule.when is not None:
                found.extend(Lint(place, reason) for reason in _expression(rule.when))
    found.extend(_on_error(spec))
    found.extend(_unused_custom_steps(spec))
    return found


def _always(rule: RuleSpec) -> bool:
    return rule.when is None or normalized(rule.when) == "true"


def _shadowed_by(earlier: tuple[RuleSpec, ...], rule: RuleSpec) -> str | None:
    for before in earlier:
        if _always(before):
            return f"rule {before.name} before it always matches (it has no `when`)"
        if rule.when is not None and normalized(before.when or "") == normalized(rule.when):
            return f"rule {before.name} before it has the same `when`"
    return None


def _expression(when: str) -> Iterator[str]:
    for key in references(when)["metadata"]:
        if not METADATA_KEY.fullmatch(key):
            yield (
                f"{show_reference('metadata', key)} can never be sent: Prelude's metadata "
                f"keys are at most 12 characters from [a-zA-Z0-9.-_:] (contract 2.1)"
            )
    toks = tokens(when)
    for index, token in enumerate(toks):
        if token.text != "double" or index + 1 >= len(toks) or toks[index + 1].text != "(":
            continue
        argument = toks[index + 2] if index + 2 < len(toks) else None
        close = _closing(toks, index + 1)
        if argument is not None and argument.text == "metadata":
            yield (
                'double(metadata...) takes "NaN", which makes every comparison false and '
                "skips the rule: use number(), which fails closed to on_error"
            )
        elif argument is not None and argument.text == "facts":
            continue  # facts are numbers the service computed, never NaN
        elif _compared(toks, index, close) and not _negated(toks, index):
            yield (
                "a comparison of double() is false for NaN, so the rule is skipped: use "
                "number() on strings, or negate the comparison for the weaker case"
            )


def _closing(toks: list[Token], opening: int) -> int:
    depth = 0
    for index in range(opening, len(toks)):
        depth += {"(": 1, ")": -1}.get(toks[index].text, 0)
        if depth == 0:
            return index
    return len(toks) - 1


def _compared(toks: list[Token], start: int, close: int) -> bool:
    before = toks[start - 1].text if start > 0 else ""
    after = toks[close + 1].text if close + 1 < len(toks) else ""
    return before in COMPARISONS or after in COMPARISONS


def _negated(toks: list[Token], index: int) -> bool:
    # `!( double(x) < 1000.0 )`: the innermost group around the call is negated.
    depth = 0
    for position in range(index - 1, -1, -1):
        text = toks[position].text
        if text == ")":
            depth += 1
        elif text == "(":
            if depth == 0:
                return position > 0 and toks[position - 1].text == "!"
            depth -= 1
    return False


def _on_error(spec: PolicySpec) -> Iterator[Lint]:
    # A `when` that fails answers on_error instead of the rule it was evaluating: an on_error
    # weaker than a rule of the scope lets a malformed request do better than a good one.
    answer = spec.on_error.status
    for scope, rules in spec.scopes.items():
        strongest = max(rules, key=lambda rule: STRENGTH[rule.outcome.status])
        if STRENGTH[strongest.outcome.status] > STRENGTH[answer]:
            yield Lint(
                "on_error",
                f"on_error answers {answer}, weaker than rule {strongest.name} of scope "
                f"{scope} ({strongest.outcome.status}): a request whose `when` fails would get "
                f"less than one that matches",
            )


def _unused_custom_steps(spec: PolicySpec) -> Iterator[Lint]:
    used = {step.key for step in spec.default.steps}
    for rules in spec.scopes.values():
        used.update(step.key for rule in rules for step in rule.outcome.steps)
    for index, key in enumerate(spec.custom_order):
        if key not in used:
            reason = f"custom step {key} is declared but no rule asks for it"
            yield Lint(f"custom_steps[{index}]", reason)
