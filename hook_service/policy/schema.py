"""Reading and validating the policy file (design.md "Policy file"); private to
:mod:`hook_service.policy`.

Everything Prelude would reject in a hook response (contract sections 3 and 8) is rejected here,
at start-up, so that a running service can only ever answer valid decisions. Unknown and
duplicate keys are errors too: a typo (``wen:`` for ``when:``) must not silently weaken a policy.
Every error is a :class:`PolicyError` naming the file, the place and the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from cel_expr_python import cel

from hook_service._steps import COMPLETED
from hook_service.errors import PolicyError
from hook_service.hook.base import SCOPE_PATTERN
from hook_service.policy import facts as _facts
from hook_service.policy.functions import declarations

STATUSES: Final = ("continue", "review", "block")
GRANT_MODES: Final = ("single-use", "session-bound", "profile-bound")
MANAGED_STEPS: Final = ("verify_sms", "verify_email", "verify_passkey")
OTP: Final = "otp"  # design.md: verify_sms when the user has a phone number, else verify_email
MAX_SECONDS: Final = 86_400  # contract 3: granted_for and expiration_duration are 0..86400
# Contract 3 step-key charset; rule names use it too because they travel in X-Hook-Rule.
KEY_PATTERN: Final = re.compile(r"[a-zA-Z0-9._:-]+")
_RESERVED_CUSTOM: Final = frozenset({OTP, COMPLETED, *MANAGED_STEPS})
_RESERVED_RULES: Final = frozenset({"default", "on_error"})
_BUILTIN_DEFAULTS: Final = {
    "grant_mode": "single-use",
    "granted_for": 300,
    "expiration_duration": 600,
}
_OUTCOME_KEYS: Final = ("status", "grant_mode", "granted_for", "steps")

# The CEL variables of a `when` expression (design.md); HookRequest.cel_context() fills them.
_T = cel.Type
CEL_VARIABLES: Final = {
    "scope": _T.STRING,
    "user_id": _T.STRING,
    "identifiers": _T.List(_T.Map(_T.STRING, _T.STRING)),
    "signals": _T.Map(_T.STRING, _T.DYN),
    "metadata": _T.Map(_T.STRING, _T.STRING),
    "has_phone": _T.BOOL,
    "has_email": _T.BOOL,
    _facts.VARIABLE: _facts.CEL_TYPE,  # design.md "Facts"; HookRequest.cel_context(facts)
}


def new_env() -> Any:
    """A CEL environment declaring :data:`CEL_VARIABLES` and our functions (``number()``)."""
    return cel.NewEnv(variables=CEL_VARIABLES, functions=declarations())


@dataclass(frozen=True, slots=True)
class StepSpec:
    key: str  # a managed key, a declared custom key, or "otp"
    expiration_duration: int


@dataclass(frozen=True, slots=True)
class OutcomeSpec:
    status: str
    grant_mode: str
    granted_for: int
    steps: tuple[StepSpec, ...]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    when: str | None
    program: Any  # compiled cel.Expression, None when the rule has no `when`
    outcome: OutcomeSpec


@dataclass(frozen=True, slots=True)
class PolicySpec:
    custom_steps: frozenset[str]
    scopes: dict[str, tuple[RuleSpec, ...]]
    default: OutcomeSpec
    on_error: OutcomeSpec
    custom_order: tuple[str, ...] = ()  # custom_steps as declared, for messages


def scope_place(scope: str) -> str:
    """Where a scope is in the file, as messages name it: ``scopes."transfer:write"``."""
    return f"scopes.{scope}" if scope.isidentifier() else f"scopes.{json.dumps(scope)}"


def rule_place(scope: str, index: int, name: str) -> str:
    """Where a rule is: ``scopes."transfer:write".rules[1] (large-transfer)``."""
    return f"{scope_place(scope)}.rules[{index}] ({name})"


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return json.dumps(value, default=str)[:80]


class _Checker:
    """Validates one policy document; ``where`` strings locate the error in the file."""

    def __init__(self, source: str, env: Any) -> None:
        self.source = source
        self.env = env
        self.custom: frozenset[str] = frozenset()
        self.defaults: dict[str, Any] = dict(_BUILTIN_DEFAULTS)

    def fail(self, where: str, reason: str) -> NoReturn:
        raise PolicyError(f"{self.source}: {where + ': ' if where else ''}{reason}")

    def mapping(
        self, value: Any, where: str, allowed: tuple[str, ...], what: str
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"{what} must be a mapping, got {_show(value)}")
        for key in value:
            if key not in allowed:
                self.fail(where, f"unknown key {_show(key)} (allowed: {', '.join(allowed)})")
        return value

    def seconds(self, value: Any, where: str, name: str) -> int:
        # bool is an int subclass in Python, but `granted_for: true` is a mistake, not 1.
        if type(value) is not int or not 1 <= value <= MAX_SECONDS:
            self.fail(
                where, f"{name} must be an integer from 1 to {MAX_SECONDS}, got {_show(value)}"
            )
        return value

    def grant_mode(self, value: Any, where: str) -> str:
        if value not in GRANT_MODES:
            self.fail(
                where, f"grant_mode must be one of {', '.join(GRANT_MODES)}, got {_show(value)}"
            )
        return str(value)

    def policy(self, data: Any) -> PolicySpec:
        if data is None:
            self.fail("", "the policy is empty")
        top = ("version", "custom_steps", "defaults", "on_error", "scopes", "default")
        data = self.mapping(data, "", top, "the policy")
        if "version" not in data:
            self.fail("", "version is required (version: 1)")
        if type(data["version"]) is not int or data["version"] != 1:
            self.fail("", f"version must be 1, got {_show(data['version'])}")
        self.custom = self.custom_steps(data.get("custom_steps", []))
        keys = tuple(_BUILTIN_DEFAULTS)
        defaults = self.mapping(data.get("defaults", {}), "defaults", keys, "defaults")
        if "grant_mode" in defaults:
            self.defaults["grant_mode"] = self.grant_mode(defaults["grant_mode"], "defaults")
        for name in ("granted_for", "expiration_duration"):
            if name in defaults:
                self.defaults[name] = self.seconds(defaults[name], "defaults", name)
        scopes = data.get("scopes", {})
        if not isinstance(scopes, dict):
            self.fail("scopes", f"scopes must be a mapping, got {_show(scopes)}")
        return PolicySpec(
            custom_steps=self.custom,
            scopes={scope: self.scope(scope, entry) for scope, entry in scopes.items()},
            default=self.fallback(data, "default"),
            on_error=self.fallback(data, "on_error"),
            custom_order=tuple(data.get("custom_steps", [])),
        )

    def custom_steps(self, value: Any) -> frozenset[str]:
        if not isinstance(value, list):
            self.fail("custom_steps", f"custom_steps must be a list, got {_show(value)}")
        for index, key in enumerate(value):
            where = f"custom_steps[{index}]"
            if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
                self.fail(where, f"a step key must match [a-zA-Z0-9._:-]+, got {_show(key)}")
            if key == COMPLETED:
                self.fail(
                    where,
                    f"{key!r} cannot be a step: Prelude's challenge token says current_step "
                    f"{key!r} when every step is done (contract 6)",
                )
            if key in _RESERVED_CUSTOM:
                self.fail(where, f"{key!r} is a managed or reserved step, not a custom one")
            if value.index(key) != index:
                self.fail(where, f"{key!r} is declared twice")
        return frozenset(value)

    def scope(self, scope: Any, entry: Any) -> tuple[RuleSpec, ...]:
        if not isinstance(scope, str) or not SCOPE_PATTERN.fullmatch(scope):
            self.fail("scopes", f"a scope must match ^[a-zA-Z0-9.\\-_:]+$, got {_show(scope)}")
        where = scope_place(scope)
        rules = self.mapping(entry, where, ("rules",), "a scope").get("rules")
        if not isinstance(rules, list) or not rules:
            self.fail(where, "rules must be a non-empty list")
        specs: list[RuleSpec] = []
        for index, rule in enumerate(rules):
            spec = self.rule(rule, f"{where}.rules[{index}]")
            if any(spec.name == seen.name for seen in specs):
                self.fail(f"{where}.rules[{index}] ({spec.name})", "duplicate rule name")
            specs.append(spec)
        return tuple(specs)

    def rule(self, rule: Any, where: str) -> RuleSpec:
        name = rule.get("name") if isinstance(rule, dict) else None
        if isinstance(name, str) and KEY_PATTERN.fullmatch(name):
            where = f"{where} ({name})"  # from here on, errors name the rule
        rule = self.mapping(rule, where, ("name", "when", *_OUTCOME_KEYS), "a rule")
        if not isinstance(name, str) or not KEY_PATTERN.fullmatch(name):
            self.fail(where, f"name is required and must match [a-zA-Z0-9._:-]+, got {_show(name)}")
        if name in _RESERVED_RULES:
            self.fail(where, f"{name!r} is reserved for the fallback decisions")
        when, program = rule.get("when"), None
        if "when" in rule:
            if not isinstance(when, str) or not when.strip():
                self.fail(where, f"when must be a CEL expression string, got {_show(when)}")
            unknown = _facts.unknown_fields(when)
            if unknown:
                known = ", ".join(sorted(_facts.FIELDS))
                self.fail(where, f"facts has no field {unknown[0]!r} (fields: {known})")
            try:
                program = self.env.compile(when)
            except RuntimeError as exc:
                self.fail(where, f"when does not compile: {exc}")
            result = program.return_type()
            if result != _T.BOOL and result != _T.DYN:
                self.fail(where, f"when must be a boolean expression, got {result.name().lower()}")
        return RuleSpec(name, when, program, self.outcome(rule, where))

    def outcome(self, data: dict[str, Any], where: str) -> OutcomeSpec:
        status = data.get("status")
        if status not in STATUSES:
            self.fail(where, f"status must be one of {', '.join(STATUSES)}, got {_show(status)}")
        grant_mode = self.grant_mode(data.get("grant_mode", self.defaults["grant_mode"]), where)
        granted_for = data.get("granted_for", self.defaults["granted_for"])
        granted_for = self.seconds(granted_for, where, "granted_for")
        raw_steps = data.get("steps", [])
        if not isinstance(raw_steps, list):
            self.fail(where, f"steps must be a list, got {_show(raw_steps)}")
        if status == "review" and not raw_steps:
            self.fail(where, "review needs at least one step (contract 8: missing_steps)")
        if status != "review" and raw_steps:
            self.fail(where, f"{status} must not have steps")
        steps = tuple(self.step(s, f"{where}.steps[{i}]") for i, s in enumerate(raw_steps))
        seen: set[str] = set()
        for index, step in enumerate(steps):
            # otp becomes verify_sms or verify_email per request: either would be a duplicate.
            could_be = {"verify_sms", "verify_email"} if step.key == OTP else {step.key}
            if could_be & seen:
                otp = any(s.key == OTP for s in steps[: index + 1])
                hint = " (otp is verify_sms or verify_email)" if otp else ""
                self.fail(f"{where}.steps[{index}]", f"step {step.key!r} is listed twice{hint}")
            seen |= could_be
        return OutcomeSpec(str(status), grant_mode, granted_for, steps)

    def fallback(self, data: dict[str, Any], name: str) -> OutcomeSpec:
        value = data.get(name, {"status": "block"})  # design.md: both default to block
        outcome = self.outcome(self.mapping(value, name, _OUTCOME_KEYS, name), name)
        if name == "on_error" and any(step.key in self.custom for step in outcome.steps):
            # on_error is also the answer when the store that records custom steps is down,
            # so a custom step in it could never be completed.
            self.fail(name, "on_error must not contain custom steps")
        return outcome

    def step(self, value: Any, where: str) -> StepSpec:
        if isinstance(value, str):
            value = {"key": value}
        if not isinstance(value, dict):
            self.fail(where, f"a step must be a key or a mapping, got {_show(value)}")
        data = self.mapping(value, where, ("key", "expiration_duration"), "a step")
        key = data.get("key")
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            self.fail(where, f"a step key must match [a-zA-Z0-9._:-]+, got {_show(key)}")
        if key != OTP and key not in MANAGED_STEPS and key not in self.custom:
            valid = ", ".join((OTP, *MANAGED_STEPS, *sorted(self.custom)))
            self.fail(
                where,
                f"step {key!r} is neither managed nor declared in custom_steps (valid: {valid})",
            )
        duration = data.get("expiration_duration", self.defaults["expiration_duration"])
        return StepSpec(key, self.seconds(duration, where, "expiration_duration"))


def parse(data: Any, source: str, env: Any) -> PolicySpec:
    """Validate a parsed policy document and compile its ``when`` expressions with ``env``."""
    return _Checker(source, env).policy(data)
