"""``POST /outcomes``: the company backend reports how a step-up ended (issue 11 point 2,
design.md "Facts").

``verified`` is proof for the user's latest unexpired attempt for ``scope`` (the backend knows
the scope was granted when it sees Prelude's refreshed access token); ``fraud`` flags the user
and forgets what proofs taught. The facts store does the work; this handler reads and checks
the body, counts the outcome (``stepup_hook_outcomes_reported_total``) and renders the answer
``{"user_id", "scope", "outcome", "recorded": true}``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from hook_service import logs, metrics
from hook_service.endpoints.http import (
    json_response,
    parse_json_object,
    read_json_body,
    require_bearer,
)
from hook_service.errors import InvalidRequest, NoAttempt
from hook_service.facts.base import NAME, Proof
from hook_service.services import Services
from hook_service.store.base import user_tag

logger = logging.getLogger(logs.SERVICE)

OUTCOMES: Final = ("verified", "fraud")
FIELDS: Final = ("user_id", "scope", "outcome")
MAX_SCOPE: Final = 128  # the facts keep scopes up to this long (facts.base.NAME)


async def outcomes(request: Request) -> Response:
    """Record ``verified`` (404 ``no_attempt`` when nothing can be marked) or ``fraud``."""
    services: Services = request.app.state.services
    require_bearer(request, services.settings.api_keys, "POST /outcomes")
    user_id, scope, outcome = read_outcome(parse_json_object(await read_json_body(request)))
    now = services.clock()
    if outcome == "verified":
        if not await services.facts.prove(user_id, Proof(scope), now):
            raise NoAttempt(
                f"no unexpired review attempt of this user for {scope} to mark verified"
            )
    else:
        await services.facts.report_fraud(user_id, now)
    metrics.outcome_reported(outcome)  # recorded ones only: a 404 no_attempt is not counted
    # The user by its tag (as the store's keys name it), never the id or anything raw.
    logger.info("outcome %s recorded: user=%s scope=%s", outcome, user_tag(user_id), scope)
    return json_response({"user_id": user_id, "scope": scope, "outcome": outcome, "recorded": True})


def read_outcome(data: dict[str, Any]) -> tuple[str, str, str]:
    """``(user_id, scope, outcome)`` from the body; :class:`InvalidRequest` names the field."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r} (allowed: {', '.join(FIELDS)})")
    for name in FIELDS:
        if name not in data:
            raise InvalidRequest(f"{name} is required")
        if not isinstance(data[name], str) or not data[name]:
            raise InvalidRequest(f"{name} must be a non-empty string")
    user_id, scope, outcome = (data[name] for name in FIELDS)
    if not NAME.fullmatch(scope):
        raise InvalidRequest(
            f"scope must match ^[a-zA-Z0-9.\\-_:]+$ (contract 2.1), at most {MAX_SCOPE} characters"
        )
    if outcome not in OUTCOMES:
        raise InvalidRequest(f"outcome must be one of {', '.join(OUTCOMES)}")
    return user_id, scope, outcome
