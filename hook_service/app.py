"""Application wiring: routes, the one error handler, start-up and shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.convertors import register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hook_service import endpoints, logs, metrics
from hook_service.clock import Clock, system_clock
from hook_service.endpoints.http import json_response
from hook_service.endpoints.keys import JwksDocument
from hook_service.endpoints.observe import RequestObserver
from hook_service.endpoints.users import UserIdConvertor
from hook_service.errors import (
    HookError,
    InternalError,
    InvalidRequest,
    KeyStoreFailure,
    KeyStoreUnavailable,
    MethodNotAllowed,
    NotFound,
)
from hook_service.facts.base import FactsStore
from hook_service.keys.backends.base import KeyStore
from hook_service.logs import configure_logging
from hook_service.metrics_export import Exporter
from hook_service.prelude.jwks import PreludeJwks
from hook_service.services import build_services
from hook_service.settings import Settings
from hook_service.store.base import Store
from hook_service.tokens.base import ClaimGuard
from hook_service.tracing import Tracing

logger = logging.getLogger(logs.SERVICE)

register_url_convertor("user_id", UserIdConvertor())
routes = [
    Route("/hooks/stepup", endpoints.stepup_hook, methods=["POST"]),
    Route("/.well-known/jwks.json", endpoints.jwks, methods=["GET"]),
    Route("/verification-token", endpoints.verification_token, methods=["POST"]),
    Route("/outcomes", endpoints.outcomes, methods=["POST"]),
    Route("/admin/keys", endpoints.list_keys, methods=["GET"]),
    Route("/admin/keys/rotate", endpoints.rotate_keys, methods=["POST"]),
    Route("/admin/keys/events", endpoints.key_events, methods=["GET"]),
    Route("/admin/keys/{kid}/revoke", endpoints.revoke_key, methods=["POST"]),
    Route("/admin/users/{user_id:user_id}/facts", endpoints.user_facts, methods=["GET"]),
    Route("/admin/users/{user_id:user_id}/facts", endpoints.erase_user_facts, methods=["DELETE"]),
    Route("/admin/policy", endpoints.policy_info, methods=["GET"]),
    Route("/admin/policy/reload", endpoints.reload_policy, methods=["POST"]),
    Route("/healthz", endpoints.healthz, methods=["GET"]),
    Route("/readyz", endpoints.readyz, methods=["GET"]),
    Route("/openapi.json", endpoints.openapi, methods=["GET"]),
    Route("/metrics", endpoints.prometheus_metrics, methods=["GET"]),
]


def _as_hook_error(exc: Exception) -> HookError:
    """Every failure as a :class:`HookError`, so one renderer gives every error one shape."""
    if isinstance(exc, KeyStoreFailure):
        # The path and reason go to the log; the caller learns only that keys are unavailable.
        logger.error("key store failure: %s", exc.reason)
        return exc
    if isinstance(exc, HookError):
        return exc
    if isinstance(exc, HTTPException):  # routing: unknown path or method
        kind = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, InvalidRequest)
        return kind(str(exc.detail))
    # Starlette re-raises after this handler, so the server logs the traceback once.
    return InternalError("internal error; see the service log")


async def _render_error(request: Request, exc: Exception) -> Response:
    error = _as_hook_error(exc)
    logs.note(error=error.code)
    if isinstance(error, KeyStoreUnavailable):
        metrics.keystore_error(error)
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else None
    return json_response(error.to_json(), status_code=error.status_code, headers=headers)


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    store: Store | None = None,
    keys: KeyStore | None = None,
    prelude_keys: PreludeJwks | None = None,
    guard: ClaimGuard | None = None,
    facts: FactsStore | None = None,
    tracing: Tracing | None = None,
) -> Starlette:
    """Build the ASGI app. Invalid configuration raises :class:`ConfigError` here, at start-up.

    ``store``, ``keys``, ``prelude_keys``, the token issuer's claim ``guard``, the ``facts``
    store and ``tracing`` may be injected (tests); see
    :func:`~hook_service.services.build_services`."""
    services = build_services(
        settings,
        clock=clock,
        store=store,
        keys=keys,
        prelude_keys=prelude_keys,
        guard=guard,
        facts=facts,
        tracing=tracing,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.startup()
        try:
            yield
        finally:
            await services.aclose()

    observer = Middleware(RequestObserver, log_client=settings.log_client, tracing=services.tracing)
    app = Starlette(
        routes=routes,
        middleware=[observer],
        lifespan=lifespan,
        exception_handlers={
            HookError: _render_error,
            HTTPException: _render_error,
            Exception: _render_error,
        },
    )
    app.state.services = services
    app.state.jwks_document = JwksDocument()
    app.state.metrics = Exporter(services)
    return app


def create_app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory hook_service.app:create_app_from_env`` (several workers)."""
    settings = Settings.from_env()
    configure_logging(settings)
    return create_app(settings)
