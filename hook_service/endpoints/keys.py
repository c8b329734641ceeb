"""``GET /.well-known/jwks.json`` and the admin key API (design.md, "Admin API")."""

from __future__ import annotations

import hashlib
import json
import math
import re

from starlette.requests import Request
from starlette.responses import Response

from hook_service.endpoints.http import (
    json_response,
    parse_json_object,
    read_json_body,
    require_bearer,
)
from hook_service.errors import InvalidRequest
from hook_service.keys.admin import PRELUDE_CACHE_WARNING
from hook_service.keys.lifecycle import KeySet
from hook_service.services import Services

# Prelude caches our JWKS for 10 minutes anyway (contract 5); 5 minutes keeps other verifiers
# close behind a rotation while sparing the endpoint.
JWKS_CACHE_CONTROL = "public, max-age=300"


class JwksDocument:
    """The served JWKS: body, ETag and finished response headers, rebuilt only when the
    published keys change (a new key set, or a retired key reaching ``retire_at``)."""

    def __init__(self) -> None:
        self._source: KeySet | None = None
        self._valid_until = -math.inf
        self._kids: tuple[int, tuple[str, ...]] | None = None
        self.body = b""
        self.etag = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.not_modified_headers: list[tuple[bytes, bytes]] = []

    def refresh(self, key_set: KeySet, now: float) -> None:
        # The hot path: the same key set object and no retirement due yet (a key set is
        # immutable, so identity means nothing changed).
        if key_set is self._source and now < self._valid_until:
            return
        published = key_set.published(now)
        self._source = key_set
        self._valid_until = min((k.retire_at for k in published if k.retire_at), default=math.inf)
        kids = (key_set.version, tuple(key.kid for key in published))
        if kids == self._kids:
            return
        body = json.dumps(key_set.jwks(now), separators=(",", ":")).encode()
        self.body = body
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        common = [(b"cache-control", JWKS_CACHE_CONTROL.encode()), (b"etag", self.etag.encode())]
        self.not_modified_headers = common
        self.headers = [
            *common,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]
        self._kids = kids


class _Prebuilt(Response):
    """A response whose body and raw headers were built once per key set (the JWKS is the
    most requested document: every verifier fetches it)."""

    def __init__(
        self, status_code: int, body: bytes, raw_headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.raw_headers = raw_headers
        self.background = None


def _etag_matches(header: str | None, etag: str) -> bool:
    # RFC 9110 section 13.1.2: If-None-Match uses weak comparison and may list several tags.
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


async def jwks(request: Request) -> Response:
    """Public keys that verify our verification tokens: next, active and retired ones."""
    services: Services = request.app.state.services
    document: JwksDocument = request.app.state.jwks_document
    document.refresh(services.keys.current(), services.clock())
    if _etag_matches(request.headers.get("if-none-match"), document.etag):
        return _Prebuilt(304, b"", document.not_modified_headers)
    return _Prebuilt(200, document.body, document.headers)


async def list_keys(request: Request) -> Response:
    """The key set with states and dates; never private material."""
    services: Services = request.app.state.services
    require_bearer(request, services.settings.admin_tokens, "the admin API")
    return json_response(services.keys.current().to_json(services.clock()))


async def rotate_keys(request: Request) -> Response:
    """next -> active, active -> retired, a new next. Refused (409 ``rotation_too_early``)
    while the next key is younger than the publish lead, unless ``{"force": true}``; an early
    forced rotation answers with a ``warning``."""
    services: Services = request.app.state.services
    admin = require_bearer(request, services.settings.admin_tokens, "the admin API")
    force = await _force_flag(request)
    key_set, warning = await services.key_admin.rotate(
        services.settings.admin_actor(admin), force=force
    )
    body = key_set.to_json(services.clock())
    return json_response(body | ({"warning": warning} if warning else {}))


async def _force_flag(request: Request) -> bool:
    # The body is optional (design.md: "takes an optional body"); an empty one means no force.
    headers = request.headers
    if not any(name in headers for name in ("content-type", "transfer-encoding")) and (
        headers.get("content-length") in (None, "0")
    ):
        return False
    body = await read_json_body(request)
    if not body.strip():
        return False
    force = parse_json_object(body).get("force", False)
    if not isinstance(force, bool):
        raise InvalidRequest("force must be a boolean")
    return force


async def revoke_key(request: Request) -> Response:
    """Drop a key from every replica's JWKS now; revoking the active key promotes next. The
    ``warning`` says that Prelude may still hold it in its 10-minute JWKS cache."""
    services: Services = request.app.state.services
    admin = require_bearer(request, services.settings.admin_tokens, "the admin API")
    key_set = await services.key_admin.revoke(
        request.path_params["kid"], services.settings.admin_actor(admin)
    )
    body = key_set.to_json(services.clock())
    return json_response(body | {"warning": PRELUDE_CACHE_WARNING})


EVENTS_PAGE = 100
MAX_EVENTS_PAGE = 1000
_LIMIT = re.compile(r"[0-9]{1,4}")


async def key_events(request: Request) -> Response:
    """The key audit trail, oldest first: ``?after=<id>&limit=<n>`` pages through it."""
    services: Services = request.app.state.services
    require_bearer(request, services.settings.admin_tokens, "the admin API")
    params = request.query_params
    unknown = set(params) - {"after", "limit"}
    if unknown:
        raise InvalidRequest(f"unknown query parameter {sorted(unknown)[0]!r}")
    raw_limit = params.get("limit", str(EVENTS_PAGE))
    # ASCII digits only: str.isdigit() also accepts '²', which int() then refuses.
    if not _LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_EVENTS_PAGE:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_EVENTS_PAGE}")
    # Present but empty is a malformed cursor, not "from the start" (the OpenAPI document's
    # pattern says so; the key store refuses it with 400 like any other bad id).
    after = params.get("after")
    events, cursor = await services.key_admin.events(after, int(raw_limit))
    return json_response({"events": [e.to_json() for e in events], "next": cursor})
