"""``GET /admin/policy`` and ``POST /admin/policy/reload`` (docs/policy.md "Reloading").

The core is :class:`~hook_service.policy.holder.PolicyHolder`; these handlers check the admin
token, call it and render its answer."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hook_service import logs
from hook_service.endpoints.http import json_response, require_bearer
from hook_service.errors import InvalidPolicy, PolicyError
from hook_service.services import Services

logger = logging.getLogger(logs.POLICY)


async def policy_info(request: Request) -> Response:
    """The policy in force: ``{revision, source, loaded_at, shadow: {...} | null}``."""
    services: Services = request.app.state.services
    require_bearer(request, services.settings.admin_tokens, "the admin API")
    return json_response(services.policy.info())


async def reload_policy(request: Request) -> Response:
    """Re-read and validate the policy (and shadow) files of this process; a valid pair
    replaces the old between requests, an invalid one is 400 ``invalid_policy`` with the
    message ``policy check`` prints, and the old policy stays."""
    services: Services = request.app.state.services
    require_bearer(request, services.settings.admin_tokens, "the admin API")
    try:
        return json_response(services.policy.reload())
    except PolicyError as exc:
        logger.error("policy reload refused, the policy in force stays: %s", exc)
        raise InvalidPolicy(str(exc)) from None


_LOADED: dict[str, Any] = {
    "type": "object",
    "required": ["revision", "source", "loaded_at"],
    "properties": {
        "revision": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "SHA-256 of the file",
        },
        "source": {"type": "string", "description": "the file's path"},
        "loaded_at": {"type": "string", "format": "date-time"},
    },
}
_SHADOW: dict[str, Any] = {
    **_LOADED,
    "properties": {
        **_LOADED["properties"],
        "disagreements": {"type": "integer", "minimum": 0},
        "errors": {"type": "integer", "minimum": 0},
    },
}
_INFO: dict[str, Any] = {
    **_LOADED,
    "required": [*_LOADED["required"], "shadow"],
    "properties": {**_LOADED["properties"], "shadow": {"oneOf": [_SHADOW, {"type": "null"}]}},
}


def openapi_paths(json: Any, errors: Any, admin: Any) -> dict[str, Any]:
    """The two paths for ``/openapi.json`` (built with openapi.py's own helpers)."""
    answer = json(_INFO, "the policy in force and the shadow policy")
    return {
        "/admin/policy": {
            "get": {
                "summary": "The policy in force: revision, source, loaded_at, shadow",
                "security": admin,
                "responses": {"200": answer, **errors(401)},
            }
        },
        "/admin/policy/reload": {
            "post": {
                "summary": "Re-read and validate the policy files; invalid keeps the old",
                "security": admin,
                "responses": {
                    "200": answer,
                    "400": json(
                        {"$ref": "#/components/schemas/Error"},
                        "invalid_policy: the detail is policy check's message; the old "
                        "policy stays",
                    ),
                    **errors(401),
                },
            }
        },
    }
