"""``/healthz``, ``/readyz`` and ``/openapi.json``."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from ..errors import HookError, KeyStoreError
from ..openapi import openapi_document
from ..services import Services
from .http import json_response

READY_TIMEOUT = 1.0


async def healthz(request: Request) -> Response:
    """The process is alive and serving; checks nothing else."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the store answers, an active key is loaded, the policy is loaded and, when
    signatures are checked, Prelude's JWKS has been loaded at least once."""
    services: Services = request.app.state.services
    checks: dict[str, str] = {"policy": "ok"}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await services.store.ping()
        checks["store"] = "ok"
    except (HookError, TimeoutError):
        checks["store"] = "unreachable"
    try:
        checks["keys"] = "ok" if services.keys.current().active else "no active key"
    except KeyStoreError:
        checks["keys"] = "unreadable"
    if services.prelude_keys is None:
        checks["prelude_jwks"] = "skipped"
    else:
        checks["prelude_jwks"] = "ok" if services.prelude_keys.loaded else "not loaded"
    failed = sorted(name for name, state in checks.items() if state not in ("ok", "skipped"))
    if failed:
        return json_response(
            {
                "error": "not_ready",
                "detail": "not ready: " + ", ".join(f"{name} {checks[name]}" for name in failed),
                "checks": checks,
            },
            status_code=503,
        )
    return json_response({"status": "ready", "checks": checks})


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 description of every endpoint."""
    return json_response(openapi_document(), headers={"Cache-Control": "public, max-age=300"})
