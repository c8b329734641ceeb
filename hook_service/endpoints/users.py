"""``GET`` and ``DELETE /admin/users/{user_id}/facts``: what the service holds for a user, and
erasing it (issue 11 point 4, design.md "Facts"), with the admin token.

What is held: the facts (:meth:`FactsStore.show`: counts, ages in seconds and keyed hashes,
never a raw IP, user agent or coordinate) and the store's records of that user (pending custom
steps, issued-token records). ``DELETE`` erases all of them and answers the counts of what it
erased; it is idempotent (a second call erases nothing), so a 503 half-way is retried.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.convertors import Convertor
from starlette.requests import Request
from starlette.responses import Response

from hook_service import logs
from hook_service.endpoints.http import json_response, require_bearer
from hook_service.errors import InvalidRequest
from hook_service.services import Services
from hook_service.store.base import user_tag

logger = logging.getLogger(logs.SERVICE)


class UserIdConvertor(Convertor[str]):
    """The route's ``{user_id:user_id}``: any characters, ``/`` and line breaks included (a
    user id is any non-empty string, and Starlette's ``path`` stops at a newline: such a user
    would get 404 and could never be erased). Registered by :mod:`hook_service.app`."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def _user(request: Request) -> tuple[Services, str, int]:
    """The services, the path's user id and which admin token was presented."""
    services: Services = request.app.state.services
    admin = require_bearer(request, services.settings.admin_tokens, "the admin API")
    user_id: str = request.path_params["user_id"]
    if not user_id:
        raise InvalidRequest("user_id must be a non-empty string")
    return services, user_id, admin


async def user_facts(request: Request) -> Response:
    """``{"user_id", "facts": {...}, "records": {"pending_steps", "issued_tokens"}}``."""
    services, user_id, _ = _user(request)
    now = services.clock()
    facts = await services.facts.show(user_id, now)
    records = await services.store.user_records(user_id, now)
    body: dict[str, Any] = {
        "user_id": user_id,
        "facts": facts,
        "records": {
            "pending_steps": records.pending_steps,
            "issued_tokens": records.issued_tokens,
        },
    }
    return json_response(body)


async def erase_user_facts(request: Request) -> Response:
    """``{"user_id", "erased": {"facts": {counts}, "records": n}}``: history and flag first,
    then the pending steps and issued-token records."""
    services, user_id, admin = _user(request)
    facts = await services.facts.erase(user_id, services.clock())
    records = await services.store.erase_user(user_id)
    # Who erased, and the user by its tag (as the store's keys name it): never the id itself.
    logger.info(
        "user data erased by %s: user=%s records=%d facts=%s",
        services.settings.admin_actor(admin),
        user_tag(user_id),
        records,
        ",".join(f"{k}:{v}" for k, v in facts.items()),
    )
    return json_response({"user_id": user_id, "erased": {"facts": facts, "records": records}})
