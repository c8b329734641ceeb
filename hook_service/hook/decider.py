"""The decision step (design.md "POST /hooks/stepup"): read the user's facts when the scope's
rules need them, decide from the policy, record the decision's custom steps in the store, and
fall back to the policy's ``on_error`` answer.

Prelude must always get a valid 2xx answer within its 5 s budget (a 5xx or a timeout is
``invalid_status_code`` / ``request_failed``, contract 8), so nothing here raises: every failure
becomes the policy's own strictest answer, never a weaker rule. Reading the facts and recording
the pending steps share one budget (:data:`RECORD_TIMEOUT`); the facts rules (when they are
read, what is recorded in the background, replays) are :mod:`hook_service.hook.history`'s.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

from hook_service import logs
from hook_service.clock import Clock
from hook_service.errors import HookError, StoreTooLate
from hook_service.facts.base import Once, Replay
from hook_service.hook.base import HookRequest
from hook_service.hook.history import HookHistory, decode_answer
from hook_service.policy.base import (
    INTERNAL_ERROR,
    STORE_TIMEOUT,
    UNDECIDED_REPLAY,
    Decision,
    DecisionPolicy,
)
from hook_service.store.base import PendingStep, Store

logger = logging.getLogger(logs.HOOK)

# Prelude gives the hook 5 s (contract 8, `request_failed`); reading the facts and recording a
# pending step must together answer well within that, so a slow or dead store costs at most
# this long (under 1 s, issue 11 point 6).
RECORD_TIMEOUT: Final = 0.8
UNDECIDED: Final = "replay of a request that was not decided"


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision, and whether it is the first answer given again to a replay."""

    decision: Decision
    replay: bool = False


@dataclass(frozen=True, slots=True)
class _Call:
    """One hook request being decided: its replay check, origin and deadline (loop time)."""

    request: HookRequest
    once: Once | None
    origin: str
    deadline: float

    def left(self) -> float:
        """Seconds left of the budget (the store refuses a write that would land later)."""
        return max(0.0, self.deadline - asyncio.get_running_loop().time())


class HookDecider:
    """Decides hook requests with ``policy``, recording custom steps in ``store`` and the
    requests in ``history`` (None: no facts, every rule sees none known) within
    ``record_timeout`` seconds; pending steps expire after the decision's total duration
    (``clock`` time)."""

    def __init__(
        self,
        policy: DecisionPolicy,
        store: Store,
        clock: Clock,
        *,
        history: HookHistory | None = None,
        record_timeout: float = RECORD_TIMEOUT,
    ) -> None:
        self._policy = policy
        self._store = store
        self._clock = clock
        self._history = history
        self._record_timeout = record_timeout

    async def decide(self, request: HookRequest, origin: str = "") -> Decision:
        """The policy's decision, with custom steps recorded; ``on_error`` if anything fails.

        ``origin`` names the request (:func:`~hook_service.hook.stepup.request_origin`): the
        store lets a replay of it change nothing it recorded (store/base.py)."""
        return (await self.answer(request, origin=origin)).decision

    async def answer(
        self,
        request: HookRequest,
        *,
        body: bytes | None = None,
        signature: str | None = None,
        origin: str = "",
    ) -> Decided:
        """:meth:`decide` for a request whose raw ``body`` (and ``signature``, None when
        signatures are not checked) make its replay check; a replay gets the first answer."""
        once = None
        if body is not None and self._history is not None:
            once = self._history.once(body, signature)
        policy = self._policy
        stage = ["deciding"]
        # One budget for reading facts and recording steps; the store is told what is left
        # of it, so that a write landing after this answer fell back to on_error is refused
        # there (issue 10, point 4).
        deadline = asyncio.get_running_loop().time() + self._record_timeout
        try:
            async with asyncio.timeout_at(deadline):
                return await self._answer(_Call(request, once, origin, deadline), stage)
        except (HookError, TimeoutError) as exc:
            reason = exc.detail if isinstance(exc, HookError) else "store timed out"
            logger.error("%s failed (%s); answering on_error", stage[0], reason)
            cause = STORE_TIMEOUT if isinstance(exc, TimeoutError | StoreTooLate) else exc.code
            return Decided(policy.on_error_decision(request, reason, cause))
        except Exception:
            logger.exception("deciding failed; answering on_error")
            return Decided(policy.on_error_decision(request, "internal error", INTERNAL_ERROR))

    async def _answer(self, call: _Call, stage: list[str]) -> Decided:
        policy, history = self._policy, self._history
        request, once = call.request, call.once
        if history is not None and policy.reads_facts(request.scope_requested):
            stage[0] = "reading facts"
            observed = await history.observe(request, once)
            if isinstance(observed.facts, Replay):
                return await self._replayed(call, observed.facts, stage)
            decision = policy.decide(request, observed.facts)
            custom, until = self._pending(decision)
            stage[0] = "recording custom steps"
            await self._record(call, custom, until)
            history.settle_later(request, observed, decision, custom, until)
            return Decided(decision)
        decision = policy.decide(request)
        custom, until = self._pending(decision)
        if history is not None:
            if custom and once is not None:
                # The answer waits for the store anyway (the pending step): know first whether
                # this is a replay, which must not re-open a claimed step.
                stage[0] = "checking for a replay"
                observed = await history.record_now(request, decision, custom, until, once)
                if isinstance(observed.facts, Replay):
                    return await self._replayed(call, observed.facts, stage)
                stage[0] = "recording custom steps"
                await self._record(call, custom, until)
                history.settle_later(request, observed, decision, custom, until)
                return Decided(decision)
            history.record_later(request, decision, custom, until, once)
        stage[0] = "recording custom steps"
        await self._record(call, custom, until)
        return Decided(decision)

    def _pending(self, decision: Decision) -> tuple[tuple[str, ...], float]:
        """The decision's custom step keys and their expiry: the whole challenge's duration."""
        custom = tuple(step.key for step in decision.custom_steps(self._policy.custom_steps))
        return custom, self._clock() + decision.total_duration

    async def _record(self, call: _Call, custom: tuple[str, ...], until: float) -> None:
        # The token endpoint mints only for a step recorded here (design.md), so a custom step
        # that cannot be recorded must not be answered: the caller falls back to on_error.
        if not custom:
            return  # decisions without a custom step do not need the store
        steps = self._steps(call, custom, until)
        await self._store.put_pending(steps, within=call.left())

    async def _replayed(self, call: _Call, replay: Replay, stage: list[str]) -> Decided:
        request = call.request
        # Issue 11 point 3: the first answer again, nothing recorded; its pending steps only
        # made sure of, with their first expiry: a claimed step stays claimed (ensure_pending).
        if not replay.answer:  # the first is still being decided, or deciding it failed
            decision = self._policy.on_error_decision(request, UNDECIDED, UNDECIDED_REPLAY)
            return Decided(decision, replay=True)
        answered = decode_answer(replay.answer)
        if answered.custom:
            stage[0] = "ensuring the pending steps of a replay"
            steps = self._steps(call, answered.custom, answered.until)
            await self._store.ensure_pending(steps, within=call.left())
        return Decided(answered.decision, replay=True)

    @staticmethod
    def _steps(call: _Call, custom: tuple[str, ...], until: float) -> list[PendingStep]:
        request = call.request
        return [
            PendingStep(
                user_id=request.user_id,
                key=key,
                scope=request.scope_requested,
                expires_at=until,
                origin=call.origin,
            )
            for key in custom
        ]
