"""The policy's interface: the answers it gives (:class:`Step`, :class:`Decision`) and what the
decision step needs of a policy (:class:`DecisionPolicy`).
:class:`~hook_service.policy.engine.Policy` implements it (YAML rules with CEL conditions)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from hook_service.facts.base import Facts
from hook_service.hook.base import HookRequest

# Why an ``on_error`` answer was given (:attr:`Decision.cause`): the bounded ``reason`` of
# ``stepup_hook_on_error_total`` and the log line's ``on_error`` field (docs/operations.md).
POLICY_ERROR: Final = "policy_error"  # a rule's `when` failed to evaluate
STORE_UNAVAILABLE: Final = "store_unavailable"  # the store (or facts store) refused or failed
STORE_TIMEOUT: Final = "store_timeout"  # the record budget ran out, or a write landed past it
INTERNAL_ERROR: Final = "internal_error"  # a bug: nothing else raised
UNDECIDED_REPLAY: Final = "undecided_replay"  # a replay of a request whose first answer failed

# The bytes Starlette's JSONResponse would send for the same value (its render()).
_BODY: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a ``review`` decision (contract 3: ``steps[]``)."""

    order: int
    key: str
    expiration_duration: int

    def to_json(self) -> dict[str, Any]:
        """The ``steps[]`` entry of the hook response."""
        return {
            "order": self.order,
            "key": self.key,
            "expiration_duration": self.expiration_duration,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """A hook answer. ``rule`` names the deciding rule (``X-Hook-Rule``): a rule ``name``,
    ``default`` or ``on_error``; ``error`` says why ``on_error`` was answered, ``cause`` the
    same as one bounded code (:data:`POLICY_ERROR` …); ``revision`` names the policy that
    decided (the log line shows it).

    Always valid for Prelude (checked at load): ``granted_for`` 1..86400, ``steps`` non-empty
    with orders 1..n for ``review`` and empty otherwise."""

    status: str
    grant_mode: str
    granted_for: int
    steps: tuple[Step, ...]
    rule: str
    error: str | None = None
    cause: str | None = None
    revision: str = ""  # the deciding policy's revision (SHA-256 of its file), for the logs
    # to_json() encoded once: the policy builds its decisions at load, so a hook call sends
    # these bytes instead of encoding the same answer again (issue 15, point 3).
    body: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "body", _BODY.encode(self.to_json()).encode("utf-8"))

    def to_json(self) -> dict[str, Any]:
        """The hook response body, exactly ``{status, grant_mode, granted_for, steps}``."""
        return {
            "status": self.status,
            "grant_mode": self.grant_mode,
            "granted_for": self.granted_for,
            "steps": [step.to_json() for step in self.steps],
        }

    def custom_steps(self, custom: frozenset[str]) -> tuple[Step, ...]:
        """The steps whose key is in ``custom`` (ours to complete with a verification token)."""
        return tuple(step for step in self.steps if step.key in custom)

    @property
    def total_duration(self) -> int:
        """Sum of the steps' ``expiration_duration``: the longest the challenge can take."""
        return sum(step.expiration_duration for step in self.steps)


class DecisionPolicy(Protocol):
    """What the hook's decision step (:class:`~hook_service.hook.decider.HookDecider`) uses
    of a policy."""

    @property
    def custom_steps(self) -> frozenset[str]:
        """The declared custom step keys (completed with a verification token)."""
        ...

    def reads_facts(self, scope: str) -> bool:
        """Whether the rules of ``scope`` read ``facts`` (only then are they fetched)."""
        ...

    def decide(self, request: HookRequest, facts: Facts | None = None) -> Decision:
        """The decision for ``request`` given ``facts`` (None: nothing known); ``on_error``
        if a rule fails, never a weaker rule."""
        ...

    def on_error_decision(self, request: HookRequest, reason: str, cause: str) -> Decision:
        """The ``on_error`` decision for ``request``, with ``error`` = ``reason`` and
        ``cause`` (:data:`POLICY_ERROR` …)."""
        ...
