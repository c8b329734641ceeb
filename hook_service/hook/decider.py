"""The decision step (design.md "POST /hooks/stepup"): decide from the policy, record the
decision's custom steps in the store, and fall back to the policy's ``on_error`` answer.

Prelude must always get a valid 2xx answer within its 5 s budget (a 5xx or a timeout is
``invalid_status_code`` / ``request_failed``, contract 8), so nothing here raises: every failure
becomes the policy's own strictest answer, never a weaker rule.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from hook_service import logs
from hook_service.clock import Clock
from hook_service.errors import HookError
from hook_service.hook.base import HookRequest
from hook_service.policy.base import Decision, DecisionPolicy
from hook_service.store.base import PendingStep, Store

logger = logging.getLogger(logs.HOOK)

# Prelude gives the hook 5 s (contract 8, `request_failed`); recording a pending step must
# answer well within that, so a slow or dead store costs at most this long.
RECORD_TIMEOUT: Final = 0.8


class HookDecider:
    """Decides hook requests with ``policy``, recording custom steps in ``store`` within
    ``record_timeout`` seconds; pending steps expire after the decision's total duration
    (``clock`` time)."""

    def __init__(
        self,
        policy: DecisionPolicy,
        store: Store,
        clock: Clock,
        *,
        record_timeout: float = RECORD_TIMEOUT,
    ) -> None:
        self._policy = policy
        self._store = store
        self._clock = clock
        self._record_timeout = record_timeout

    async def decide(self, request: HookRequest, origin: str = "") -> Decision:
        """The policy's decision, with custom steps recorded; ``on_error`` if anything fails.

        ``origin`` names the request (:func:`~hook_service.hook.stepup.request_origin`): the
        store lets a replay of it change nothing it recorded (store/base.py)."""
        policy = self._policy
        try:
            decision = policy.decide(request)
            await self._record(request, decision, origin)
        except (HookError, TimeoutError) as exc:
            reason = exc.detail if isinstance(exc, HookError) else "store timed out"
            logger.error("recording custom steps failed (%s); answering on_error", reason)
            return policy.on_error_decision(request, reason)
        except Exception:
            logger.exception("deciding failed; answering on_error")
            return policy.on_error_decision(request, "internal error")
        return decision

    async def _record(self, request: HookRequest, decision: Decision, origin: str) -> None:
        # The token endpoint mints only for a step recorded here (design.md), so a custom step
        # that cannot be recorded must not be answered: the caller falls back to on_error.
        custom = decision.custom_steps(self._policy.custom_steps)
        if not custom:
            return  # decisions without a custom step do not need the store
        expires_at = self._clock() + decision.total_duration
        pending = [
            PendingStep(
                user_id=request.user_id,
                key=step.key,
                scope=request.scope_requested,
                expires_at=expires_at,
                origin=origin,
            )
            for step in custom
        ]
        # `within`: a write that lands after this answer has fallen back to on_error would
        # leave a step nobody was asked for (issue 10, point 4): the store refuses it then.
        async with asyncio.timeout(self._record_timeout):
            await self._store.put_pending(pending, within=self._record_timeout)
