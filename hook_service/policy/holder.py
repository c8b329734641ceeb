"""The policy in force, its shadow and hot reload (docs/policy.md "Shadow policy", "Reloading").

:class:`PolicyHolder` is what the hook decides with (a
:class:`~hook_service.policy.base.DecisionPolicy`). It holds one immutable :class:`_State`
(the live policy and the optional shadow) and reads it once per request, so a reload, which
replaces the whole state in one assignment, takes effect between requests: a request is decided
by one revision from start to end. A file that fails validation is refused and the state stays.

The shadow policy is decided after the live answer is computed, with the same request and
facts; it never changes the answer, records nothing, and its failures are logged and counted,
never raised. Each disagreement (a different hook response) is logged and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hook_service import logs
from hook_service.clock import Clock
from hook_service.errors import PolicyError
from hook_service.facts.base import Facts
from hook_service.hook.base import HookRequest
from hook_service.policy.base import Decision
from hook_service.policy.engine import Policy
from hook_service.policy.trace import trace

_log = logging.getLogger(logs.POLICY)

Disagreement = Callable[[str, Decision, Decision], None]
"""Called with (scope, live, shadow) for each disagreement: the metrics' counter hook."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """A policy as loaded: from which file, when (``clock`` time)."""

    policy: Policy
    path: Path
    loaded_at: float

    def to_json(self) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.loaded_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"revision": self.policy.revision, "source": str(self.path), "loaded_at": stamp}


@dataclass(frozen=True, slots=True)
class _State:
    live: Loaded
    shadow: Loaded | None


class PolicyHolder:
    """The live policy from ``path`` and, with ``shadow_path``, a shadow policy.

    Both are loaded here (a bad file raises :class:`~hook_service.errors.PolicyError`, at
    start-up). ``on_disagreement`` is called for each disagreement (e.g. a metric's ``inc``);
    :attr:`disagreements` and :attr:`shadow_errors` count them for ``GET /admin/policy``."""

    def __init__(
        self,
        path: Path,
        shadow_path: Path | None = None,
        *,
        clock: Clock,
        on_disagreement: Disagreement | None = None,
        loaded: tuple[Policy, Policy | None] | None = None,
    ) -> None:
        self._path = path
        self._shadow_path = shadow_path
        self._clock = clock
        self.on_disagreement = on_disagreement
        self.on_reload: Callable[[str], None] | None = None
        """Called with ``ok`` or ``invalid`` after each reload (the metrics' hook)."""
        self.disagreements = 0
        self.shadow_errors = 0
        self._state = self._load(loaded)

    def _load(self, loaded: tuple[Policy, Policy | None] | None = None) -> _State:
        """``loaded``: the policies already read from the two paths (start-up names the
        variable of the file that fails, so it loads them itself)."""
        if loaded is None:
            shadow_path = self._shadow_path
            shadow = None if shadow_path is None else Policy.load(shadow_path, shadow=True)
            loaded = (Policy.load(self._path), shadow)
        now = self._clock()
        live, shadow = loaded
        return _State(
            Loaded(live, self._path, now),
            None
            if shadow is None or self._shadow_path is None
            else Loaded(shadow, self._shadow_path, now),
        )

    @property
    def current(self) -> Policy:
        """The live policy now."""
        return self._state.live.policy

    @property
    def custom_steps(self) -> frozenset[str]:
        """The live policy's custom step keys."""
        return self._state.live.policy.custom_steps

    @property
    def scopes(self) -> frozenset[str]:
        """The live policy's listed scopes (the metrics' bounded scope labels)."""
        return self._state.live.policy.scopes

    @property
    def revision(self) -> str:
        """The live policy's revision (SHA-256 of its file)."""
        return self._state.live.policy.revision

    def reads_facts(self, scope: str) -> bool:
        """Whether the live policy's rules of ``scope`` read ``facts``. A shadow that reads
        facts where the live policy does not sees none known (the shadow records nothing and
        must not make the live answer wait for the store)."""
        return self._state.live.policy.reads_facts(scope)

    def live_custom_steps(self) -> LiveCustomSteps:
        """The live policy's custom step keys as a view that follows reloads (the token
        issuer's: a reload that declares a new custom step must be able to mint for it)."""
        return LiveCustomSteps(self)

    def reload(self) -> dict[str, Any]:
        """Re-read and validate both files; replace the state only if both are valid.
        Raises PolicyError (the message ``policy check`` prints) and keeps the old state."""
        try:
            state = self._load()
        except PolicyError:
            self._reloaded("invalid")
            raise
        self._state = state  # one assignment: a request sees the old state or the new one
        _log.info(
            "policy reloaded: %s revision=%s%s",
            state.live.path,
            state.live.policy.revision,
            f"; shadow {state.shadow.path} revision={state.shadow.policy.revision}"
            if state.shadow
            else "",
        )
        self._reloaded("ok")
        return self.info()

    def _reloaded(self, result: str) -> None:
        if self.on_reload is not None:
            self.on_reload(result)

    def reload_or_log(self) -> bool:
        """:meth:`reload` for ``SIGHUP``: a refused file is logged, never raised."""
        try:
            self.reload()
        except PolicyError as exc:
            _log.error("policy reload refused, the policy in force stays: %s", exc)
            return False
        return True

    def info(self) -> dict[str, Any]:
        """``GET /admin/policy``: ``{revision, source, loaded_at, shadow: {...} | null}``."""
        state = self._state
        shadow = None
        if state.shadow is not None:
            shadow = state.shadow.to_json() | {
                "disagreements": self.disagreements,
                "errors": self.shadow_errors,
            }
        return state.live.to_json() | {"shadow": shadow}

    def decide(
        self, request: HookRequest, facts: Facts | Mapping[str, Any] | None = None
    ) -> Decision:
        """The live policy's decision; then the trace (DEBUG) and the shadow's comparison,
        neither of which can change it or raise."""
        state = self._state  # read once: this request is decided by one revision
        decision = state.live.policy.decide(request, facts)
        if _log.isEnabledFor(logging.DEBUG):
            self._trace(state.live.policy, request, decision, facts)
        if state.shadow is not None:
            self._compare(state.shadow.policy, request, facts, decision)
        return decision

    def on_error_decision(self, request: HookRequest, reason: str, cause: str) -> Decision:
        """The live policy's ``on_error`` decision."""
        return self._state.live.policy.on_error_decision(request, reason, cause)

    def _trace(
        self,
        policy: Policy,
        request: HookRequest,
        decision: Decision,
        facts: Facts | Mapping[str, Any] | None,
    ) -> None:
        try:
            _log.debug(trace(policy, request, decision, facts, redact=True).one_line())
        except Exception:  # a trace is a diagnostic: it must never fail a request
            _log.exception("tracing the decision failed")

    def _compare(
        self,
        shadow: Policy,
        request: HookRequest,
        facts: Facts | Mapping[str, Any] | None,
        live: Decision,
    ) -> None:
        try:
            other = shadow.decide(request, facts)
            if other.error is not None:
                self.shadow_errors += 1
            # The answers' bytes, encoded once per decision at load: equal bytes, equal
            # answers (the same to_json(), one encoder), without building either again.
            if other.body == live.body:
                return
            self.disagreements += 1
            _log.info(
                "shadow disagrees scope=%s live_rule=%s live_status=%s shadow_rule=%s "
                "shadow_status=%s live_revision=%s shadow_revision=%s",
                request.scope_requested,
                live.rule,
                live.status,
                other.rule,
                other.status,
                live.revision,
                other.revision,
            )
            if self.on_disagreement is not None:
                self.on_disagreement(request.scope_requested, live, other)
        except Exception:  # the shadow must never affect the live answer
            self.shadow_errors += 1
            _log.exception("shadow policy failed; the live answer stands")


class LiveCustomSteps(Collection[str]):
    """The holder's live custom step keys, read at each use."""

    __slots__ = ("_holder",)

    def __init__(self, holder: PolicyHolder) -> None:
        self._holder = holder

    def __contains__(self, key: object) -> bool:
        return key in self._holder.custom_steps

    def __iter__(self) -> Iterator[str]:
        return iter(self._holder.custom_steps)

    def __len__(self) -> int:
        return len(self._holder.custom_steps)
