"""Learning from a verification token (issue 11 point 2, design.md "Facts").

A verification token issued for the first time for a custom step is proof that the user's
latest attempt for the pending step's scope succeeded, if that attempt recorded the step:
:class:`TokenProofs` is the token issuer's ``on_issued``. The token is already issued when it
runs, so learning may fail but never fails the token: every failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from hook_service import logs
from hook_service.facts.base import FactsStore, Proof

logger = logging.getLogger(logs.TOKENS)

# The token's answer waits for the proof (so the next hook request already sees it), but
# never longer than this: a hung facts store must not hold a token back.
PROOF_TIMEOUT: Final = 1.0


class TokenProofs:
    """``on_issued(user_id, scope, key, now)`` of :class:`~hook_service.tokens.issuer.
    TokenIssuer`: ``facts.prove(user_id, Proof(scope, step=key), now)``, bounded by
    ``timeout``. ``marked`` counts proofs that marked an attempt, ``failures`` those that could
    not be recorded (store down or slow, a scope the facts cannot hold); each proof's result,
    ``marked``, ``noted`` (no attempt to mark) or ``failed``, is also told to ``on_result``
    (the metrics' ``token_proof``, wired in :mod:`hook_service.services`)."""

    def __init__(
        self,
        facts: FactsStore,
        timeout: float = PROOF_TIMEOUT,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.facts = facts
        self.timeout = timeout
        self.on_result = on_result
        self.marked = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"TokenProofs(marked={self.marked}, failures={self.failures})"

    async def __call__(self, user_id: str, scope: str, key: str, now: int) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                marked = await self.facts.prove(user_id, Proof(scope=scope, step=key), now)
        except Exception as exc:  # any failure: the token is issued whatever happens here
            self.failures += 1
            self._tell("failed")
            # The error class only: a store's message may quote a URL, a value may be personal.
            logger.warning(
                "verification token for %s: not recorded as proof (%s)", key, type(exc).__name__
            )
            return
        self.marked += marked
        result = "marked" if marked else "noted"
        self._tell(result)
        logger.debug("verification token for %s: proof %s", key, result)

    def _tell(self, result: str) -> None:
        if self.on_result is not None:
            self.on_result(result)
