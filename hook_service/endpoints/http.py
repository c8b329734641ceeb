"""HTTP plumbing shared by the handlers: bounded body reading, media-type check, bearer auth
(one ``Authorization`` header only)."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from hook_service._json import parse_json_object
from hook_service.errors import InvalidRequest, PayloadTooLarge, Unauthorized, UnsupportedMediaType

# The handlers decode their JSON bodies with the one strict decoder the hook uses too.
__all__ = [
    "MAX_BODY_BYTES",
    "EncodedJSONResponse",
    "authorization_header",
    "json_response",
    "parse_json_object",
    "read_json_body",
    "require_bearer",
]

# Prelude keeps hook bodies small (contract 2.1: metadata is at most 5 short entries); 64 KiB
# leaves room for new fields while bounding what an unauthenticated caller can make us buffer.
MAX_BODY_BYTES = 64 * 1024


async def read_json_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body of a JSON request, refused early when too large or not JSON.

    The raw bytes are kept because the hook signature covers exactly them (contract 2.3)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length must be a non-negative integer")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # a chunked body has no Content-Length: count as it arrives
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The caller is gone; nothing will read the answer, but it must not log a traceback.
        raise InvalidRequest("the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def authorization_header(request: Request) -> str:
    """The one ``Authorization`` header of ``request`` ("" when there is none).

    Refused (400 ``invalid_request``) when repeated: Starlette answers the first of repeated
    headers while a proxy in front of us may read the last, so two headers would let the two
    disagree about who is calling (RFC 9110 section 5.3: Authorization is not a list field,
    so a sender must not repeat it)."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise InvalidRequest(f"send one Authorization header, not {len(values)}")
    return values[0] if values else ""


def require_bearer(request: Request, accepted: tuple[str, ...], what: str) -> int:
    """Check ``Authorization: Bearer <secret>`` against ``accepted``; return the matching index.

    The one way every endpoint reads its credentials, so that each refuses a repeated header
    (:func:`authorization_header`). Every accepted secret is compared in constant time, and
    all of them are compared, so the time taken says nothing about which one nearly matched."""
    header = authorization_header(request)
    if not accepted:
        raise Unauthorized(f"{what} is disabled: no credentials are configured")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized(f"{what} requires Authorization: Bearer <token>")
    candidate = presented.strip().encode()
    found = -1
    for index, secret in enumerate(accepted):
        if hmac.compare_digest(candidate, secret.encode()) and found < 0:
            found = index
    if found < 0:
        raise Unauthorized(f"invalid credentials for {what}")
    return found


def json_response(
    data: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON response that is never cached by intermediaries unless the caller says so."""
    merged = {"Cache-Control": "no-store"}
    merged.update(headers or {})
    return JSONResponse(data, status_code=status_code, headers=merged)


class EncodedJSONResponse(Response):
    """What :func:`json_response` sends (200) for a body already encoded as JSON: the same
    bytes and headers in the same order (``cache-control``, then ``headers``, lower-case, then
    ``content-length`` and ``content-type``), without encoding it again (the hot paths'
    answers: :mod:`~hook_service.endpoints.stepup`, :mod:`~hook_service.endpoints.verification`)."""

    def __init__(self, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"cache-control", b"no-store"),
            *headers,
            (b"content-length", str(len(body)).encode("ascii")),
            (b"content-type", b"application/json"),
        ]
