"""Learning from a verification token (issue 11 point 2, design.md "Facts").

A verification token issued for the first time for a custom step is proof that the user's
latest attempt for the pending step's scope succeeded, if that attempt recorded the step:
:class:`TokenProofs` is the token issuer's ``on_issued``. The token is already issued when it
runs, so learning may fail but never fails the token: every failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
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
    not be recorded (store down or slow, a scope the facts cannot hold)."""

    def __init__(self, facts: FactsStore, timeout: float = PROOF_TIMEOUT) -> None:
        self.facts = facts
        self.timeout = timeout
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
            # The error class only: a store's message may quote a URL, a value may be personal.
            logger.warning(
                "verification token for %s: not recorded as proof (%s)", key, type(exc).__name__
            )
            return
        self.marked += marked
        logger.debug("verification token for %s: proof %s", key, "marked" if marked else "noted")
