"""``/healthz``, ``/readyz`` and ``/openapi.json``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hook_service.endpoints.http import json_response
from hook_service.endpoints.openapi import openapi_document
from hook_service.errors import NotReady
from hook_service.services import Services


async def healthz(request: Request) -> Response:
    """The process is alive and serving; checks nothing else."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when every dependency is (:meth:`Services.readiness`); else 503 naming those that
    are not."""
    services: Services = request.app.state.services
    checks = await services.readiness()
    failed = [name for name, state in checks.items() if state not in ("ok", "skipped")]
    if failed:
        detail = "not ready: " + ", ".join(f"{name} {checks[name]}" for name in failed)
        return json_response(NotReady(detail).to_json() | {"checks": checks}, status_code=503)
    return json_response({"status": "ready", "checks": checks})


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 description of every endpoint."""
    return json_response(openapi_document(), headers={"Cache-Control": "public, max-age=300"})
