"""``GET /.well-known/jwks.json`` and the admin key API (design.md, "Admin API")."""

from __future__ import annotations

import hashlib
import json
import logging

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidRequest
from ..keys import KeySet
from ..services import Services
from .http import json_response, parse_json_object, read_json_body, require_bearer

logger = logging.getLogger("hook_service.keys")

# Prelude caches our JWKS for 10 minutes anyway (contract 5); 5 minutes keeps other verifiers
# close behind a rotation while sparing the endpoint.
JWKS_CACHE_CONTROL = "public, max-age=300"


class JwksDocument:
    """The served JWKS body and its ETag, rebuilt only when the published key set changes."""

    def __init__(self) -> None:
        self._cache_key: tuple[int, tuple[str, ...]] | None = None
        self.body = b""
        self.etag = ""

    def refresh(self, key_set: KeySet, now: float) -> None:
        published = key_set.published(now)
        cache_key = (key_set.version, tuple(key.kid for key in published))
        if cache_key == self._cache_key:
            return
        body = json.dumps(key_set.jwks(now), separators=(",", ":")).encode()
        self.body = body
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self._cache_key = cache_key


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
    headers = {"Cache-Control": JWKS_CACHE_CONTROL, "ETag": document.etag}
    if _etag_matches(request.headers.get("if-none-match"), document.etag):
        return Response(status_code=304, headers=headers)
    return Response(document.body, media_type="application/json", headers=headers)


async def list_keys(request: Request) -> Response:
    """The key set with states and dates; never private material."""
    services: Services = request.app.state.services
    require_bearer(request, services.settings.admin_tokens, "the admin API")
    return json_response(services.keys.current().to_json(services.clock()))


async def rotate_keys(request: Request) -> Response:
    """next -> active, active -> retired, a new next. Refused (409 ``rotation_too_early``)
    while the next key is younger than the publish lead, unless ``{"force": true}``."""
    services: Services = request.app.state.services
    admin = require_bearer(request, services.settings.admin_tokens, "the admin API")
    force = await _force_flag(request)
    # Key generation and file writes block; keep them off the event loop.
    key_set = await to_thread.run_sync(
        lambda: services.keys.rotate(services.settings.token_ttl, force=force)
    )
    logger.log(
        logging.WARNING if force else logging.INFO,
        "keys rotated by admin token #%d: active kid=%s version=%d force=%s",
        admin + 1,
        key_set.active.kid,
        key_set.version,
        force,
    )
    return json_response(key_set.to_json(services.clock()))


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
    """Drop a key from the JWKS now; revoking the active key promotes next."""
    services: Services = request.app.state.services
    admin = require_bearer(request, services.settings.admin_tokens, "the admin API")
    kid = request.path_params["kid"]
    key_set = await to_thread.run_sync(services.keys.revoke, kid)
    logger.warning(
        "key %s revoked by admin token #%d; Prelude may keep it in its JWKS cache for up to "
        "10 minutes",
        kid,
        admin + 1,
    )
    return json_response(key_set.to_json(services.clock()))
