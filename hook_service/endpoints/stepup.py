"""``POST /hooks/stepup``: Prelude's delegation hook (contract sections 2, 3 and 8)."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response

from hook_service import logs
from hook_service.endpoints.http import json_response, read_json_body
from hook_service.errors import HookError, InvalidSignature
from hook_service.hook.base import HookRequest
from hook_service.hook.parse import parse_hook_request
from hook_service.hook.signature import parse_signature_header, verify_signature
from hook_service.policy.base import Decision
from hook_service.services import Services
from hook_service.store.base import PendingStep

logger = logging.getLogger(logs.HOOK)

SIGNATURE_HEADER = "x-webhook-signature"
KEY_ID_HEADER = "x-webhook-signature-key-id"
# Prelude gives the hook 5 s (contract 8, `request_failed`); recording a pending step must
# answer well within that, so a slow or dead store costs at most this long.
RECORD_TIMEOUT = 0.8


async def stepup_hook(request: Request) -> Response:
    """Verify the signature, decide from the policy, record custom steps, answer Prelude."""
    services: Services = request.app.state.services
    body = await read_json_body(request)
    if not services.settings.insecure_skip_signature:
        await _verify(services, request, body)
    hook_request = parse_hook_request(body)
    decision = await _decide(services, hook_request)
    logger.info(
        "decision status=%s rule=%s scope=%s user_id=%s",
        decision.status,
        decision.rule,
        hook_request.scope_requested,
        hook_request.user_id,
    )
    return json_response(decision.to_json(), headers={"X-Hook-Rule": decision.rule})


async def _verify(services: Services, request: Request, body: bytes) -> None:
    # Contract 2.3: the signature covers the raw body; the key is chosen by kid from
    # Prelude's app JWKS. Nothing is parsed or recorded before this passes.
    kid = request.headers.get(KEY_ID_HEADER, "").strip()
    signature = parse_signature_header(request.headers.get(SIGNATURE_HEADER))
    if not kid:
        raise InvalidSignature("X-Webhook-Signature-Key-Id header is missing")
    if services.prelude_keys is None:  # settings validation makes this unreachable
        raise InvalidSignature("no Prelude JWKS is configured")
    public_key = await services.prelude_keys.rsa_key(kid)
    verify_signature(body, signature, public_key)


async def _decide(services: Services, hook_request: HookRequest) -> Decision:
    """The policy's decision, with custom steps recorded; ``on_error`` if anything fails.

    Prelude must always get a valid 2xx answer (a 5xx is `invalid_status_code`, contract 8),
    and the fallback is the policy's own strictest answer, never a weaker rule."""
    policy = services.policy
    try:
        decision = policy.decide(hook_request)
        custom = decision.custom_steps(policy.custom_steps)
        if custom:
            expires_at = services.clock() + decision.total_duration
            pending = [
                PendingStep(
                    user_id=hook_request.user_id,
                    key=step.key,
                    scope=hook_request.scope_requested,
                    expires_at=expires_at,
                )
                for step in custom
            ]
            async with asyncio.timeout(RECORD_TIMEOUT):
                await services.store.put_pending(pending)
    except (HookError, TimeoutError) as exc:
        reason = exc.detail if isinstance(exc, HookError) else "store timed out"
        logger.error("recording custom steps failed (%s); answering on_error", reason)
        return policy.on_error_decision(hook_request, reason)
    except Exception:
        logger.exception("deciding failed; answering on_error")
        return policy.on_error_decision(hook_request, "internal error")
    return decision
