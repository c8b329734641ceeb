"""``POST /hooks/stepup``: Prelude's delegation hook (contract sections 2, 3 and 8).

The core is :class:`~hook_service.hook.stepup.StepUpHook`; this handler only reads the body and
the signature headers, logs the decision and renders it."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from hook_service import logs
from hook_service.endpoints.http import json_response, read_json_body
from hook_service.services import Services

logger = logging.getLogger(logs.HOOK)

SIGNATURE_HEADER = "x-webhook-signature"
KEY_ID_HEADER = "x-webhook-signature-key-id"


async def stepup_hook(request: Request) -> Response:
    """Verify the signature, decide from the policy, record custom steps, answer Prelude."""
    services: Services = request.app.state.services
    body = await read_json_body(request)
    answer = await services.hook.answer(
        body,
        signature=request.headers.get(SIGNATURE_HEADER),
        key_id=request.headers.get(KEY_ID_HEADER),
    )
    decision = answer.decision
    logger.info(
        "decision status=%s rule=%s scope=%s user_id=%s revision=%s",
        decision.status,
        decision.rule,
        answer.request.scope_requested,
        answer.request.user_id,
        decision.revision,
    )
    return json_response(decision.to_json(), headers={"X-Hook-Rule": decision.rule})
