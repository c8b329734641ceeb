"""``POST /verification-token``: the company backend asks for a custom step's token (design.md)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hook_service import logs
from hook_service.endpoints.http import (
    json_response,
    parse_json_object,
    read_json_body,
    require_bearer,
)
from hook_service.errors import InvalidRequest, KeySetChanged, NoPendingStep, StepAlreadyUsed
from hook_service.services import Services
from hook_service.store.base import KeySetGuard
from hook_service.tokens.jwt import (
    IssuedToken,
    mint_verification_token,
    read_challenge_kid,
    verify_challenge_token,
)

logger = logging.getLogger(logs.TOKENS)

_FIELDS = ("user_id", "challenge_id", "key")
# A claim that finds the key set changed is retried with the new set; more than a few changes
# during one request means something is churning the keys.
CLAIM_ATTEMPTS = 3


async def verification_token(request: Request) -> Response:
    """Mint (once) the RS256 verification token for a pending custom step."""
    services: Services = request.app.state.services
    require_bearer(request, services.settings.api_keys, "POST /verification-token")
    data = parse_json_object(await read_json_body(request))
    user_id, challenge_id, key = await _subject(services, data)
    if key not in services.policy.custom_steps:
        raise NoPendingStep(f"{key!r} is not a custom step of the policy")
    now = int(services.clock())
    result, fresh = await _sign_and_claim(services, user_id, challenge_id, key, now)
    logger.info(
        "verification token %s jti=%s kid=%s user_id=%s key=%s",
        "issued" if fresh else "re-sent",
        result.jti,
        result.kid,
        user_id,
        key,
    )
    return json_response(result.to_json())


async def _sign_and_claim(
    services: Services, user_id: str, challenge_id: str, key: str, now: int
) -> tuple[IssuedToken, bool]:
    """Sign with the active key and claim the pending step, never past a revocation that
    returned anywhere: with the Redis key store and store on one Redis, the claim's own script
    checks that the key set is still at the version that signed (one round trip); otherwise
    the shared key set is re-read before signing and after claiming."""
    version_key = services.claim_guard
    key_set = services.keys.signing_set() if version_key else await services.keys.refresh()
    for _ in range(CLAIM_ATTEMPTS):
        issued = mint_verification_token(
            key_set.active,
            user_id=user_id,
            challenge_id=challenge_id,
            key=key,
            now=now,
            ttl=services.settings.token_ttl,
        )
        guard = None if version_key is None else KeySetGuard(version_key, key_set.version)
        try:
            result, fresh = await services.store.claim(user_id, key, issued, now, guard)
            break
        except KeySetChanged:  # another replica changed the keys: nothing was claimed
            key_set = await services.keys.refresh()
    else:
        raise KeySetChanged("the signing keys kept changing while issuing a token; try again")
    # A retry gets the token stored at its first claim: its key may have been revoked since.
    latest = services.keys.current() if version_key else await services.keys.refresh()
    if all(k.kid != result.kid for k in latest.published(now)):
        # Never hand out a token Prelude can no longer verify, nor keep a revoked key's
        # signature in circulation.
        raise StepAlreadyUsed(
            "the token for this challenge was signed by a key that has since been revoked; "
            "start a new step-up"
        )
    return result, fresh


async def _subject(services: Services, data: dict[str, Any]) -> tuple[str, str, str]:
    """``(user_id, challenge_id, key)`` from the explicit fields, the challenge token, or both.

    A challenge token is untrusted input from the frontend (contract 1, note 4): it is verified
    against Prelude's EdDSA keys, and explicit fields given beside it must agree with it."""
    explicit: dict[str, str] = {}
    for name in _FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"{name} must be a non-empty string")
        explicit[name] = value
    token = data.get("challenge_token")
    if token is None:
        missing = [name for name in _FIELDS if name not in explicit]
        if missing:
            raise InvalidRequest(
                f"give challenge_token, or all of user_id, challenge_id and key "
                f"(missing: {', '.join(missing)})"
            )
        return explicit["user_id"], explicit["challenge_id"], explicit["key"]
    if not isinstance(token, str) or not token:
        raise InvalidRequest("challenge_token must be a non-empty string")
    if services.prelude_keys is None:
        raise InvalidRequest(
            "challenge_token cannot be verified: set HOOK_PRELUDE_JWKS_URL or "
            "HOOK_PRELUDE_JWKS_FILE, or send user_id, challenge_id and key"
        )
    public_key = await services.prelude_keys.ed25519_key(read_challenge_kid(token))
    claims = verify_challenge_token(token, public_key, int(services.clock()))
    from_token = {
        "user_id": claims.sub,
        "challenge_id": claims.challenge_id,
        "key": claims.current_step,
    }
    for name, value in explicit.items():
        if value != from_token[name]:
            raise InvalidRequest(f"{name} does not match the challenge token")
    return from_token["user_id"], from_token["challenge_id"], from_token["key"]
