"""The decision policy: YAML rules with CEL conditions (design.md "Policy file").

Pure: takes a parsed :class:`~hook_service.hook.base.HookRequest`, returns a
:class:`~hook_service.policy.base.Decision`; no HTTP, no store. The whole file is validated and
every ``when`` is compiled once, at load (:mod:`hook_service.policy.schema`), so deciding only
evaluates.

Semantics: per scope, the first matching rule wins (a rule without ``when`` always matches);
unlisted scopes, and listed scopes whose rules all miss, get ``default``. ``metadata`` is
attacker-controlled: a ``when`` that fails to evaluate or does not yield a bool stops the
evaluation and answers ``on_error``; it never falls through to a later, weaker rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from cel_expr_python import cel

from hook_service import logs
from hook_service.facts.base import Facts
from hook_service.hook.base import HookRequest
from hook_service.policy.base import POLICY_ERROR, Decision, Step
from hook_service.policy.facts import reads_facts
from hook_service.policy.schema import (
    GRANT_MODES,
    MANAGED_STEPS,
    OTP,
    OutcomeSpec,
    RuleSpec,
    new_env,
    parse,
)
from hook_service.policy.source import read_yaml

__all__ = [
    "GRANT_MODES",
    "MANAGED_STEPS",
    "Policy",
    "example_policy_path",
]

_log = logging.getLogger(logs.POLICY)
_ERROR: Final = cel.Type.ERROR
# One CEL call costs ~1 µs of binding overhead whatever the expression, so up to this many
# rules are folded into one program (see _chain); CEL's nesting limit (32) caps it anyway.
_CHAIN_LENGTH: Final = 16
_MAX_ERROR_CHARS: Final = 200


# Both resolutions of `otp` are built at load, indexed by HookRequest.has_phone, so deciding
# allocates nothing.
_Variants = tuple[Decision, Decision]


def _variants(outcome: OutcomeSpec, rule: str, revision: str) -> _Variants:
    def resolve(otp: str) -> Decision:
        steps = tuple(
            Step(order, otp if spec.key == OTP else spec.key, spec.expiration_duration)
            for order, spec in enumerate(outcome.steps, start=1)
        )
        return Decision(
            outcome.status, outcome.grant_mode, outcome.granted_for, steps, rule, revision=revision
        )

    # design.md: otp is verify_sms when the user has a phone number, else verify_email.
    return resolve("verify_email"), resolve("verify_sms")


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    program: Any  # compiled `when`; None matches always
    decisions: _Variants


@dataclass(frozen=True, slots=True)
class _Chain:
    rules: tuple[_Rule, ...]
    # `w0 ? 0 : (w1 ? 1 : (... : -1))`: the index of the first match, -1 for none, or a CEL
    # error if a condition fails or is not a bool (CEL's ternary does not swallow errors in
    # its condition). None when it does not compile (nesting limit): rules are tried singly.
    program: Any


class _RuleFailed(Exception):
    """A ``when`` failed to evaluate or did not yield a bool."""


def _clean(message: str) -> str:
    # CEL messages may be multi-line and quote request data: one bounded line in logs.
    return " ".join(message.split())[:_MAX_ERROR_CHARS]


def failure(value: Any) -> str:
    """Why a ``when``'s CEL result ``value`` (neither true nor false) fails the rule."""
    kind = value.type()
    message = str(value.value()) if kind == _ERROR else f"returned {kind.name().lower()}"
    return _clean(message)


def _compile_chain(env: Any, specs: Sequence[RuleSpec]) -> Any:
    expr = "-1"
    for index in range(len(specs) - 1, -1, -1):
        when = specs[index].when
        # Newlines so that a `//` comment inside `when` cannot swallow the rest of the chain.
        cond = "true" if when is None else f"(\n{when}\n)"
        expr = f"{cond} ? {index} : ({expr})"
    try:
        return env.compile(expr)
    except RuntimeError:
        return None


def _chains(env: Any, specs: tuple[RuleSpec, ...], revision: str) -> tuple[_Chain, ...]:
    chains: list[_Chain] = []
    start = 0
    while start < len(specs):
        size = min(_CHAIN_LENGTH, len(specs) - start)
        program = _compile_chain(env, specs[start : start + size])
        while program is None and size > 1:  # too deep for CEL: halve until it fits
            size //= 2
            program = _compile_chain(env, specs[start : start + size])
        rules = tuple(
            _Rule(spec.name, spec.program, _variants(spec.outcome, spec.name, revision))
            for spec in specs[start : start + size]
        )
        chains.append(_Chain(rules, program))
        start += size
    return tuple(chains)


def _first_match(chains: tuple[_Chain, ...], activation: Any) -> _Rule | None:
    for chain in chains:
        if chain.program is not None:
            index = chain.program.eval(activation).value()
            if type(index) is int:
                if index >= 0:
                    return chain.rules[index]
                continue
        # Error, or no chain program: rule by rule, which names the failing rule. This is the
        # reference semantics; the chain is only a faster way to reach the same answer.
        for rule in chain.rules:
            if rule.program is None:
                return rule
            value = rule.program.eval(activation)
            result = value.value()
            if result is True:
                return rule
            if result is not False:
                raise _RuleFailed(f"rule {rule.name}: {failure(value)}")
    return None


class Policy:
    """A loaded, validated policy. Build it with :meth:`load` or :meth:`from_mapping`.

    ``custom_steps`` are the declared custom step keys; ``on_error`` is the ``on_error``
    decision for a user without a phone number (``otp`` as ``verify_email``); with a request at
    hand use :meth:`on_error_decision`. ``source`` names the file in messages; ``scopes`` are
    the listed scopes; ``revision`` is the SHA-256 of the file's bytes (of the canonical JSON
    for :meth:`from_mapping`), in hex, carried by every decision.
    """

    __slots__ = (
        "_default",
        "_env",
        "_facts_scopes",
        "_on_error",
        "_scopes",
        "custom_steps",
        "on_error",
        "revision",
        "scopes",
        "shadow",
        "source",
        "spec",
    )

    def __init__(
        self,
        data: Any,
        source: str = "<policy>",
        revision: str | None = None,
        *,
        shadow: bool = False,
    ) -> None:
        env = new_env()
        self.shadow = shadow  # a shadow policy's on_error answers are never sent: DEBUG logs
        spec = parse(data, source, env)
        self.source = source
        if revision is None:
            canonical = json.dumps(data, sort_keys=True, default=str).encode()
            revision = hashlib.sha256(canonical).hexdigest()
        self.revision: str = revision
        self.spec = spec  # the validated rules, for the lints and the trace
        self.custom_steps: frozenset[str] = spec.custom_steps
        self._env = env  # owns the compiled programs' declarations: keep it alive
        self._scopes = {
            scope: _chains(env, rules, revision) for scope, rules in spec.scopes.items()
        }
        self.scopes = frozenset(self._scopes)
        # Issue 11 point 6: facts are fetched only for the scopes whose rules read them.
        self._facts_scopes = frozenset(
            scope
            for scope, rules in spec.scopes.items()
            if any(reads_facts(rule.when) for rule in rules)
        )
        self._default = _variants(spec.default, "default", revision)
        self._on_error = _variants(spec.on_error, "on_error", revision)
        self.on_error: Decision = self._on_error[False]

    @classmethod
    def load(cls, path: Path, *, shadow: bool = False) -> Policy:
        """Read, validate and compile the YAML policy at ``path``.

        Raises :class:`~hook_service.errors.PolicyError` naming the file, the place and the
        reason, e.g. ``policy.yaml: scopes."transfer:write".rules[1] (large-transfer):
        granted_for must be an integer from 1 to 86400, got 0``."""
        source = read_yaml(path)
        return cls(source.data, str(path), source.revision, shadow=shadow)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<policy>") -> Policy:
        """Validate and compile an already parsed policy document (``source`` names it)."""
        return cls(data, source)

    def reads_facts(self, scope: str) -> bool:
        """Whether a rule of ``scope`` mentions ``facts`` (found at load by a conservative
        token scan, :mod:`hook_service.policy.facts`); unlisted scopes never do."""
        return scope in self._facts_scopes

    def context(
        self, request: HookRequest, facts: Facts | Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The CEL variables for ``request``: its own, and ``facts`` (a :class:`Facts`, or
        its ``to_cel()`` form as a policy test gives it; None: nothing known)."""
        context = request.cel_context()
        if facts is not None:
            context["facts"] = facts.to_cel() if isinstance(facts, Facts) else facts
        return context

    def activation(self, context: Mapping[str, Any]) -> Any:
        """A CEL activation of this policy's environment over ``context``."""
        return self._env.Activation(context)

    def decide(
        self, request: HookRequest, facts: Facts | Mapping[str, Any] | None = None
    ) -> Decision:
        """The decision for ``request`` given ``facts`` (None: nothing known about the
        user); ``on_error`` if a ``when`` fails (never a weaker rule)."""
        chains = self._scopes.get(request.scope_requested)
        if chains is None:
            decision = self._default[request.has_phone]
        else:
            try:
                # One activation per request, shared by every rule (the hot path).
                activation = self._env.Activation(self.context(request, facts))
                rule = _first_match(chains, activation)
            except _RuleFailed as exc:
                return self._failed(request, str(exc))
            except Exception as exc:  # a binding or context bug must fail closed, too
                return self._failed(request, f"evaluation failed: {_clean(str(exc))}")
            variants = self._default if rule is None else rule.decisions
            decision = variants[request.has_phone]
        _log.debug(
            "scope %s: rule %s decided %s", request.scope_requested, decision.rule, decision.status
        )
        return decision

    def on_error_decision(self, request: HookRequest, reason: str, cause: str) -> Decision:
        """The ``on_error`` decision (rule ``on_error``) for ``request``, ``error`` = ``reason``
        and ``cause`` its code (:data:`~hook_service.policy.base.POLICY_ERROR` …)."""
        return replace(self._on_error[request.has_phone], error=reason, cause=cause)

    def _failed(self, request: HookRequest, reason: str) -> Decision:
        decision = self.on_error_decision(request, reason, POLICY_ERROR)
        _log.log(
            logging.DEBUG if self.shadow else logging.WARNING,
            "%sscope %s: %s; answering on_error (%s)",
            "shadow policy: " if self.shadow else "",
            request.scope_requested,
            reason,
            decision.status,
        )
        return decision


def example_policy_path() -> Path:
    """The bundled example policy, used when ``HOOK_POLICY_FILE`` is unset."""
    return Path(__file__).parents[1] / "policies" / "example.yaml"
