"""Application wiring: routes, the one error handler, start-up and shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import endpoints
from .clock import Clock, system_clock
from .endpoints.http import json_response
from .endpoints.keys import JwksDocument
from .errors import HookError
from .keystore import FileKeyStore
from .prelude_keys import PreludeKeys
from .services import build_services
from .settings import Settings
from .store import Store

logger = logging.getLogger("hook_service")

routes = [
    Route("/hooks/stepup", endpoints.stepup_hook, methods=["POST"]),
    Route("/.well-known/jwks.json", endpoints.jwks, methods=["GET"]),
    Route("/verification-token", endpoints.verification_token, methods=["POST"]),
    Route("/admin/keys", endpoints.list_keys, methods=["GET"]),
    Route("/admin/keys/rotate", endpoints.rotate_keys, methods=["POST"]),
    Route("/admin/keys/{kid}/revoke", endpoints.revoke_key, methods=["POST"]),
    Route("/healthz", endpoints.healthz, methods=["GET"]),
    Route("/readyz", endpoints.readyz, methods=["GET"]),
    Route("/openapi.json", endpoints.openapi, methods=["GET"]),
]


async def _hook_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HookError)
    return json_response(exc.to_json(), status_code=exc.status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Routing errors (404, 405) in the same shape as every other error.
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return json_response(
        {"error": code, "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return json_response(
        {"error": "internal_error", "detail": "internal error; see the service log"},
        status_code=500,
    )


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    store: Store | None = None,
    keys: FileKeyStore | None = None,
    prelude_keys: PreludeKeys | None = None,
) -> Starlette:
    """Build the ASGI app. Invalid configuration raises :class:`ConfigError` here, at start-up."""
    services = build_services(
        settings, clock=clock, store=store, keys=keys, prelude_keys=prelude_keys
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.startup()
        try:
            yield
        finally:
            await services.aclose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HookError: _hook_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    app.state.services = services
    app.state.jwks_document = JwksDocument()
    return app


def create_app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory hook_service.app:create_app_from_env`` (several workers)."""
    return create_app(Settings.from_env())
