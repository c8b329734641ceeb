"""The delegation hook as one call (contract sections 2 and 3): verify the signature over the
raw body, parse it, decide. ``endpoints/stepup.py`` reads the HTTP request, calls
:meth:`StepUpHook.answer` and renders the result."""

from __future__ import annotations

from dataclasses import dataclass

from hook_service.hook.base import HookRequest
from hook_service.hook.decider import HookDecider
from hook_service.hook.parse import parse_hook_request
from hook_service.hook.signature import SignatureCheck
from hook_service.policy.base import Decision


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """The parsed request and the decision to send back for it; ``replay``: the same body
    and signature were answered within ``HOOK_REPLAY_WINDOW``, and this is that answer."""

    request: HookRequest
    decision: Decision
    replay: bool = False


class StepUpHook:
    """Verifies with ``signatures`` (``None``: ``HOOK_INSECURE_SKIP_SIGNATURE``, no check) and
    decides with ``decider``."""

    def __init__(self, decider: HookDecider, signatures: SignatureCheck | None) -> None:
        self._decider = decider
        self._signatures = signatures

    async def answer(self, body: bytes, *, signature: str | None, key_id: str | None) -> HookAnswer:
        """The answer to one hook call. Raises :class:`~hook_service.errors.InvalidSignature`
        (401) or :class:`~hook_service.errors.InvalidRequest` (400) before anything is decided
        or recorded; once the request is valid, always a decision (``on_error`` on failure)."""
        # Contract 2.3: the signature covers the raw bytes, so it is checked before parsing.
        if self._signatures is not None:
            await self._signatures.verify(body, signature, key_id)
        request = parse_hook_request(body)
        # Issue 11 point 3: a replay is the same signature over the same body; without
        # signature checks, the same body.
        signed = None if self._signatures is None else signature
        decided = await self._decider.answer(request, body=body, signature=signed)
        return HookAnswer(request, decided.decision, decided.replay)
