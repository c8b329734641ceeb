"""``simulate rotation`` in-process against the real service: tokens from before and after a
rotation verify at every moment for a Prelude-like verifier; a refused rotation is reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from hook_service.simulator.report import Report
from hook_service.simulator.rotation import custom_step_request, simulate_rotation
from hook_service.simulator.scenarios import load_scenarios, shipped_scenarios
from tests.simulator.support import service_client, sim_keys
from tests.support import ADMIN_TOKEN, API_KEY, FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def real_app(make_app: Any, tmp_path: Path) -> Any:
    jwks = tmp_path / "sim-jwks.json"
    jwks.write_text(json.dumps(sim_keys().jwks()))
    return make_app(prelude_jwks_file=jwks)


def _admin_rotation(scope: Any) -> bool:
    """A rotation asked with the admin token (the simulator's unauthenticated probe is not)."""
    bearer = dict(scope.get("headers", [])).get(b"authorization")
    is_rotate = scope["type"] == "http" and scope["path"] == "/admin/keys/rotate"
    return is_rotate and bearer == f"Bearer {ADMIN_TOKEN}".encode()


async def rotate(app: Any, clock: FakeClock, force: bool, **options: Any) -> Report:
    spec = custom_step_request(load_scenarios(shipped_scenarios()))
    async with service_client(app, clock, **options) as service:
        return await simulate_rotation(service, spec, force=force, clock=clock)


async def test_forced_rotation_keeps_every_token_verifiable(
    real_app: Any, clock: FakeClock
) -> None:
    report = await rotate(real_app, clock, force=True)
    assert report.failures() == []
    titles = [c.title for c in report.checks]
    assert titles[:6] == [
        "GET /admin/keys",
        "GET /admin/keys refuses a wrong admin token",
        "POST /admin/keys/rotate refuses no admin token",
        "token before rotation #1",
        "token before rotation #2",
        "POST /admin/keys/rotate",
    ]
    # The next key was published before the rotation, so Prelude's cache already knew it.
    rotated = report.check("POST /admin/keys/rotate").detail
    assert rotated.endswith("the verifier's cached JWKS already held the new kid")
    before, after = (
        report.check("token before rotation #1"),
        report.check("token after rotation #1"),
    )
    kid_before = before.detail.split("kid ")[1].split(",")[0]
    kid_after = after.detail.split("kid ")[1].split(",")[0]
    assert kid_before != kid_after
    assert rotated.startswith(f"{kid_after} now signs; {kid_before} retired")
    # Token TTL 300 s, retire_at = rotation + 300 + 660 s: the moments the verifier looked at.
    moments = [c for c in report.checks if c.name.startswith("tokens at now+")]
    assert [c.name for c in moments] == [
        "tokens at now+0 s",
        "tokens at now+299 s",
        "tokens at now+599 s",
        "tokens at now+959 s",
    ]
    assert [c.detail for c in moments] == [
        "4 valid, all verify; 0 expired; 2 signing keys found; cached JWKS",
        "4 valid, all verify; 0 expired; 2 signing keys found; cached JWKS",
        "0 valid, all verify; 4 expired; 2 signing keys found; cached JWKS",
        # Past the 10-minute cache: refetched, and the retired key is still published.
        "0 valid, all verify; 4 expired; 2 signing keys found; JWKS refetched",
    ]
    assert report.check("retired key stays published until its tokens have expired").passed
    signed = report.check("tokens are signed by the key the admin API calls active").detail
    assert signed == f"2 by {kid_before} before, 2 by {kid_after} after"
    assert report.passed
    # Credentials and issued tokens never reach a report (a JWT starts with eyJ).
    rendered = report.render_json() + report.render_table()
    for secret in ("eyJ", API_KEY, ADMIN_TOKEN):
        assert secret not in rendered


async def test_rotation_too_early_is_reported_and_fails(real_app: Any, clock: FakeClock) -> None:
    report = await rotate(real_app, clock, force=False)
    result = report.check("POST /admin/keys/rotate")
    assert result.reason == "rotation_too_early"
    assert "run again with --force, or wait until the next key has been published" in (
        result.detail
    )
    assert "409 rotation_too_early" in result.detail
    assert not report.passed


async def test_a_wrong_admin_token_is_reported(real_app: Any, clock: FakeClock) -> None:
    report = await rotate(real_app, clock, force=True, admin_token="not-" + ADMIN_TOKEN)
    result = report.check("GET /admin/keys")
    assert (result.reason, result.detail.split(":")[0]) == (
        "admin_api_failed",
        "HTTP 401 unauthorized",
    )
    assert len(report.checks) == 1


async def test_a_service_that_drops_the_retired_key_too_soon_fails(
    real_app: Any, clock: FakeClock
) -> None:
    services = real_app.state.services

    async def only_active_key(scope: Any, receive: Any, send: Any) -> None:
        # Wrong on purpose: the JWKS lists the active key only, so a rotation unpublishes the
        # key that signed every token still in flight.
        if scope["type"] == "http" and scope["path"] == "/.well-known/jwks.json":
            key_set = services.keys.current()
            keys = [k for k in key_set.jwks(clock())["keys"] if k["kid"] == key_set.active.kid]
            await JSONResponse({"keys": keys})(scope, receive, send)
            return
        await real_app(scope, receive, send)

    wrapped = Starlette(lifespan=real_app.router.lifespan_context)
    wrapped.mount("/", only_active_key)
    report = await rotate(wrapped, clock, force=True)
    failed = report.failures()
    # The new active key was never published before the rotation: its first token made the
    # verifier refetch, and that fresh copy no longer holds the key of the older tokens.
    assert "cached JWKS already held" not in report.check("POST /admin/keys/rotate").detail
    assert [c.name for c in failed] == [
        "tokens at now+0 s",
        "tokens at now+299 s",
        "tokens at now+599 s",
        "tokens at now+959 s",
    ]
    for check in failed:
        assert check.reason == "invalid_verification_token"
        assert check.detail.startswith("kid: kid '")
        assert check.detail.endswith("' is not in the service's JWKS")
    assert not report.passed


async def test_a_retire_at_before_the_tokens_expire_is_caught(
    real_app: Any, clock: FakeClock
) -> None:
    async def early_retire_at(scope: Any, receive: Any, send: Any) -> None:
        # Wrong on purpose: the rotation answer says the retired key leaves the JWKS now.
        if not _admin_rotation(scope):
            await real_app(scope, receive, send)
            return
        messages: list[Any] = []

        async def keep(message: Any) -> None:
            messages.append(message)

        await real_app(scope, receive, keep)
        body = json.loads(b"".join(m.get("body", b"") for m in messages[1:]))
        for key in body["keys"]:
            if key["state"] == "retired":
                key["retire_at"] = "2025-10-09T08:53:20Z"  # the fake clock's "now"
        await JSONResponse(body)(scope, receive, send)

    wrapped = Starlette(lifespan=real_app.router.lifespan_context)
    wrapped.mount("/", early_retire_at)
    report = await rotate(wrapped, clock, force=True)
    result = report.check("retired key stays published until its tokens have expired")
    assert result.reason == "retired_too_early"
    assert result.detail.endswith("leaves the JWKS 300 s before a token it signed expires")
    assert not report.passed


async def _answer_of(app: Any, scope: Any, receive: Any) -> Any:
    """``app``'s JSON answer to ``scope``, captured instead of sent."""
    messages: list[Any] = []

    async def keep(message: Any) -> None:
        messages.append(message)

    await app(scope, receive, keep)
    return json.loads(b"".join(m.get("body", b"") for m in messages[1:]))


async def test_a_key_unpublished_while_the_warm_cache_still_holds_it_is_caught(
    real_app: Any, clock: FakeClock
) -> None:
    services = real_app.state.services
    retire_at = "2025-10-09T09:00:00Z"  # the fake clock's "now" + 400 s: after every token

    async def drops_retired(scope: Any, receive: Any, send: Any) -> None:
        # Wrong on purpose: the next key is published ahead (so the verifier's warm cache never
        # needs a refetch), but the retired key leaves the JWKS at once, not at its retire_at.
        if scope["type"] == "http" and scope["path"] == "/.well-known/jwks.json":
            key_set = services.keys.current()
            keys = [
                jwk
                for jwk in key_set.jwks(clock())["keys"]
                if key_set.get(jwk["kid"]).state != "retired"
            ]
            await JSONResponse({"keys": keys})(scope, receive, send)
        elif _admin_rotation(scope):
            body = await _answer_of(real_app, scope, receive)
            for key in body["keys"]:
                if key["state"] == "retired":
                    key["retire_at"] = retire_at
            await JSONResponse(body)(scope, receive, send)
        else:
            await real_app(scope, receive, send)

    wrapped = Starlette(lifespan=real_app.router.lifespan_context)
    wrapped.mount("/", drops_retired)
    report = await rotate(wrapped, clock, force=True)
    assert report.check("POST /admin/keys/rotate").detail.endswith(
        "the verifier's cached JWKS already held the new kid"
    )
    # The warm cache alone would pass every moment; a verifier filling its cache now fails.
    failed = [c for c in report.failures() if c.name.startswith("tokens at now+")]
    assert [c.name for c in failed] == [
        "tokens at now+0 s",
        "tokens at now+299 s",
        "tokens at now+399 s",
    ]
    for check in failed:
        assert check.reason == "invalid_verification_token"
        assert check.detail.endswith("' is not in the service's JWKS")
    assert report.check("retired key stays published until its tokens have expired").passed
    assert not report.passed


async def test_a_rotation_that_keeps_signing_with_the_old_key_fails(
    real_app: Any, clock: FakeClock
) -> None:
    async def pretends_to_rotate(scope: Any, receive: Any, send: Any) -> None:
        # Wrong on purpose: the rotation answer looks right, but nothing was rotated.
        if not _admin_rotation(scope):
            await real_app(scope, receive, send)
            return
        listing = {**scope, "method": "GET", "path": "/admin/keys", "raw_path": b"/admin/keys"}
        body = await _answer_of(real_app, listing, receive)
        states = {"active": "retired", "next": "active"}
        for key in body["keys"]:
            key["state"] = states.get(key["state"], key["state"])
            if key["state"] == "retired":
                key["retire_at"] = "2025-10-10T00:00:00Z"
        body["keys"].append({"kid": "made-up-next", "state": "next", "retire_at": None})
        await JSONResponse(body)(scope, receive, send)

    wrapped = Starlette(lifespan=real_app.router.lifespan_context)
    wrapped.mount("/", pretends_to_rotate)
    report = await rotate(wrapped, clock, force=True)
    result = report.check("tokens are signed by the key the admin API calls active")
    assert result.reason == "wrong_signing_key"
    old = report.check("GET /admin/keys").detail.split()[1].rstrip(",")
    assert result.detail.endswith(f"after the rotation, got {old}, {old}")
    assert not report.passed


@pytest.mark.parametrize(
    "keys",
    [
        "not a list",
        [1, 2],
        [],
        [{"kid": "a", "state": "active"}],  # no next key
    ],
)
async def test_an_odd_admin_key_listing_is_reported_not_raised(
    real_app: Any, clock: FakeClock, keys: Any
) -> None:
    async def odd_listing(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/admin/keys":
            await JSONResponse({"keys": keys})(scope, receive, send)
            return
        await real_app(scope, receive, send)

    wrapped = Starlette(lifespan=real_app.router.lifespan_context)
    wrapped.mount("/", odd_listing)
    report = await rotate(wrapped, clock, force=True)
    assert [(c.title, c.reason) for c in report.checks] == [("GET /admin/keys", "admin_api_failed")]
    assert "exactly one active and one next key" in report.checks[0].detail


@pytest.mark.parametrize("retire_at", ["next tuesday", "2025-10-10T00:00:00", 1760000000])
async def test_an_unusable_retire_at_fails_without_a_traceback(
    real_app: Any, clock: FakeClock, retire_at: Any
) -> None:
    async def odd_retire_at(scope: Any, receive: Any, send: Any) -> None:
        if not _admin_rotation(scope):
            await real_app(scope, receive, send)
            return
        body = await _answer_of(real_app, scope, receive)
        for key in body["keys"]:
            if key["state"] == "retired":
                key["retire_at"] = retire_at
        await JSONResponse(body)(scope, receive, send)

    wrapped = Starlette(lifespan=real_app.router.lifespan_context)
    wrapped.mount("/", odd_retire_at)
    report = await rotate(wrapped, clock, force=True)
    result = report.check("retired key stays published until its tokens have expired")
    assert result.reason == "retired_too_early"
    assert result.detail.endswith("no retire_at with a time zone")


async def test_an_admin_api_open_to_anyone_fails(real_app: Any, clock: FakeClock) -> None:
    async def open_listing(scope: Any, receive: Any, send: Any) -> None:
        # Wrong on purpose: the key listing answers whatever the Authorization header says.
        if scope["type"] == "http" and scope["path"] == "/admin/keys":
            headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
            headers.append((b"authorization", f"Bearer {ADMIN_TOKEN}".encode()))
            scope = {**scope, "headers": headers}
        await real_app(scope, receive, send)

    wrapped = Starlette(lifespan=real_app.router.lifespan_context)
    wrapped.mount("/", open_listing)
    report = await rotate(wrapped, clock, force=True)
    result = report.check("GET /admin/keys refuses a wrong admin token")
    assert (result.reason, result.detail) == ("admin_api_unprotected", "HTTP 200; expected 401")
    assert report.check("POST /admin/keys/rotate refuses no admin token").passed
    assert not report.passed
