"""``/healthz``, ``/readyz`` and ``/openapi.json``."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from hook_service.endpoints.http import json_response
from hook_service.endpoints.openapi import openapi_document
from hook_service.errors import HookError, NotReady
from hook_service.services import Services

READY_TIMEOUT = 1.0


async def healthz(request: Request) -> Response:
    """The process is alive and serving; checks nothing else."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the store answers, the key set on disk is readable and, when signatures are
    checked, Prelude's JWKS has been loaded at least once. The policy and an active key are
    loaded before the app serves at all (start-up fails otherwise)."""
    services: Services = request.app.state.services
    services.keys.current()  # notices a key set changed on disk by another worker or the CLI
    checks: dict[str, str] = {"policy": "ok", "keys": "stale" if services.keys.stale else "ok"}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await services.store.ping()
        checks["store"] = "ok"
    except (HookError, TimeoutError):
        checks["store"] = "unreachable"
    if services.prelude_keys is None:
        checks["prelude_jwks"] = "skipped"
    else:
        checks["prelude_jwks"] = "ok" if services.prelude_keys.loaded else "not loaded"
    failed = [name for name, state in checks.items() if state not in ("ok", "skipped")]
    if failed:
        detail = "not ready: " + ", ".join(f"{name} {checks[name]}" for name in failed)
        return json_response(NotReady(detail).to_json() | {"checks": checks}, status_code=503)
    return json_response({"status": "ready", "checks": checks})


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 description of every endpoint."""
    return json_response(openapi_document(), headers={"Cache-Control": "public, max-age=300"})
