"""The delegation hook as one call (contract sections 2 and 3): verify the signature over the
raw body, parse it, decide. ``endpoints/stepup.py`` reads the HTTP request, calls
:meth:`StepUpHook.answer` and renders the result."""

from __future__ import annotations

import hashlib
import secrets
from base64 import urlsafe_b64encode
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


def request_origin(body: bytes, signature: str | None) -> str:
    """A name for one signed hook request: a 128-bit hash of its signature and body. A replay
    (the same bytes sent again) has the same origin; Prelude's RSASSA-PSS signatures are
    salted, so two genuine requests differ even with identical bodies. Without a checked
    signature there is nothing to tell a replay by: every call gets a fresh origin."""
    if signature is None:
        return urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")
    data = signature.encode("utf-8", "surrogatepass") + b"\n" + body
    digest = hashlib.blake2b(data, digest_size=16, person=b"hook-origin").digest()
    return urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


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
        # signature checks, the same body. The origin lets the store tell a replay of the
        # deciding request from a new decision (issue 10, point 5).
        signed = None if self._signatures is None else signature
        decided = await self._decider.answer(
            request, body=body, signature=signed, origin=request_origin(body, signed)
        )
        return HookAnswer(request, decided.decision, decided.replay)
