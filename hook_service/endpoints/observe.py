"""What every request leaves behind (docs/operations.md): its ``X-Request-Id``, one log line,
the request metrics and, with tracing on, its span.

A pure ASGI middleware (no per-request task or body copy). The request id is the caller's
``X-Request-Id`` when it is 1 to 128 characters of ``[A-Za-z0-9._:-]``, else a new one, and
is echoed in the response. The endpoints and the core add the line's own fields with
:func:`hook_service.logs.note`; the error handler adds ``error``. The client address is logged
only with ``HOOK_LOG_CLIENT=true``; a user agent, a token or a secret never is.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import nullcontext
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hook_service import logs, metrics
from hook_service.tracing import Tracing

REQUEST_ID_HEADER: Final = b"x-request-id"
_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_MAX_PATH_CHARS: Final = 256  # an unmatched path is the caller's text: bounded in the line
VERIFICATION_ROUTE: Final = "/verification-token"


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's well-formed ``X-Request-Id``, or a new random one (32 hex digits)."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return os.urandom(16).hex()


class RequestObserver:
    """Wraps the app: request id, the request line, ``stepup_hook_requests_total``, the
    duration histogram, the token outcome counter, and the request span."""

    def __init__(self, app: ASGIApp, *, log_client: bool, tracing: Tracing | None) -> None:
        self.app = app
        self.log_client = log_client
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(scope["headers"])
        echoed = (REQUEST_ID_HEADER, rid.encode("ascii"))
        notes: dict[str, object] = {"request_id": rid}
        status = 500  # an exception before the answer started: the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = logs.REQUEST.set(notes)
        span = self._span(scope, rid)
        try:
            with span as current:
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    if current is not None:
                        _finish_span(current, scope, status)
        finally:
            logs.REQUEST.reset(token)
            self._done(scope, notes, status, time.perf_counter() - start)

    def _span(self, scope: Scope, rid: str) -> Any:
        if self.tracing is None:
            return nullcontext()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        return self.tracing.request(scope["method"], headers, rid)

    def _done(self, scope: Scope, notes: dict[str, object], status: int, seconds: float) -> None:
        route = scope.get("route")
        label = getattr(route, "path", None) or metrics.OTHER
        metrics.request(label, status, seconds)
        if label == VERIFICATION_ROUTE:
            outcome = notes.get("token") or notes.get("error") or metrics.OTHER
            metrics.token(str(outcome))
        fields: dict[str, object] = {
            "request_id": notes.pop("request_id"),
            "method": scope["method"],
            "path": scope["path"][:_MAX_PATH_CHARS],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        if self.log_client and scope.get("client"):
            fields["client"] = scope["client"][0]
        fields.update(notes)
        logs.request_line(fields)


def _finish_span(span: Any, scope: Scope, status: int) -> None:
    route = getattr(scope.get("route"), "path", None)
    if route is not None:
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
