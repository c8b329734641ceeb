"""GET /.well-known/jwks.json and the admin key API."""

from __future__ import annotations

import stat
from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.testclient import TestClient

from hook_service.keys import lifecycle as keys
from hook_service.keys.backends.file import FileKeyStore
from hook_service.settings import Settings
from tests.support import (
    ADMIN_TOKEN,
    API_KEY,
    USER_ID,
    FakeClock,
    bearer,
    hook_body,
    key_supply,
    sign_hook,
)

JWKS = "/.well-known/jwks.json"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def admin(client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
    return client.request(method, path, headers=bearer(ADMIN_TOKEN), **kwargs)


def states(client: TestClient) -> dict[str, str]:
    keys = admin(client, "GET", "/admin/keys").json()["keys"]
    return {key["kid"]: key["state"] for key in keys}


def test_jwks_publishes_next_and_active_public_keys_only(client: TestClient) -> None:
    response = client.get(JWKS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "public, max-age=300"
    keys = response.json()["keys"]
    assert {key["kid"] for key in keys} == set(states(client))
    for key in keys:
        assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}
        assert (key["kty"], key["use"], key["alg"], key["e"]) == ("RSA", "sig", "RS256", "AQAB")
        assert not PRIVATE_MEMBERS & set(key)
        assert "=" not in key["n"]


def test_jwks_etag_and_304(client: TestClient) -> None:
    first = client.get(JWKS)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    cached = client.get(JWKS, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    assert client.get(JWKS, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(JWKS, headers={"If-None-Match": '"other"'}).status_code == 200
    admin(client, "POST", "/admin/keys/rotate", json={"force": True})
    changed = client.get(JWKS, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


def test_first_start_creates_active_and_next_with_private_files(
    client: TestClient, settings: Settings
) -> None:
    keys = admin(client, "GET", "/admin/keys").json()["keys"]
    assert sorted(key["state"] for key in keys) == ["active", "next"]
    for key in keys:
        assert set(key) == {"kid", "state", "created_at", "activated_at", "retire_at"}
        assert key["created_at"].endswith("Z") or key["created_at"].endswith("+00:00")
        assert key["retire_at"] is None
        pem = settings.keys_dir / f"{key['kid']}.pem"
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    active = next(key for key in keys if key["state"] == "active")
    assert active["activated_at"] is not None


def test_a_retired_key_leaves_the_jwks_at_retire_at_without_any_other_change(
    client: TestClient, clock: FakeClock, settings: Settings
) -> None:
    old_active = next(kid for kid, state in states(client).items() if state == "active")
    admin(client, "POST", "/admin/keys/rotate", json={"force": True})
    first = client.get(JWKS)
    assert old_active in {key["kid"] for key in first.json()["keys"]}
    # design.md: retire_at = rotation + token TTL + 10 min Prelude cache + 1 min skew.
    clock.advance(settings.token_ttl + 600 + 60 - 1)
    assert client.get(JWKS).content == first.content  # still published, served from cache
    clock.advance(1)
    gone = client.get(JWKS, headers={"If-None-Match": first.headers["etag"]})
    assert gone.status_code == 200
    assert old_active not in {key["kid"] for key in gone.json()["keys"]}
    assert gone.headers["etag"] != first.headers["etag"]
    assert gone.headers["content-length"] == str(len(gone.content))


def test_jwks_headers_built_once_are_not_grown_by_a_middleware(make_app: Any) -> None:
    # The header lists are built once per key set and shared by every response: a middleware
    # adding headers (CORS here) or a HEAD or 304 answer must leave them as built.
    app = make_app()
    cors = CORSMiddleware(app, allow_origins=["*"])
    with TestClient(cors) as client:
        origin = {"Origin": "https://verifier.example"}
        first = client.get(JWKS, headers=origin)
        etag = first.headers["etag"]
        for headers in (origin, origin | {"If-None-Match": etag}, origin):
            again = client.request("GET", JWKS, headers=headers)
            assert again.headers.get_list("access-control-allow-origin") == ["*"]
        assert client.head(JWKS).headers.get_list("etag") == [etag]
        document = app.state.jwks_document
        assert [name for name, _ in document.headers].count(b"access-control-allow-origin") == 0
        assert len(document.not_modified_headers) == 2


def test_rotate_moves_next_to_active(client: TestClient, clock: FakeClock) -> None:
    before = states(client)
    old_active = next(kid for kid, state in before.items() if state == "active")
    old_next = next(kid for kid, state in before.items() if state == "next")
    clock.advance(660)  # the next key has been published for the full lead
    response = admin(client, "POST", "/admin/keys/rotate", json={"force": False})
    assert response.status_code == 200
    after = {key["kid"]: key for key in response.json()["keys"]}
    assert after[old_next]["state"] == "active"
    assert after[old_active]["state"] == "retired"
    assert after[old_active]["retire_at"] is not None
    new_next = [kid for kid, key in after.items() if key["state"] == "next"]
    assert len(new_next) == 1 and new_next[0] not in before
    assert set(after) == {key["kid"] for key in client.get(JWKS).json()["keys"]}


def test_rotation_too_early_is_refused_unless_forced(client: TestClient, clock: FakeClock) -> None:
    before = states(client)
    clock.advance(659)
    early = admin(client, "POST", "/admin/keys/rotate", json={"force": False})
    assert early.status_code == 409
    assert early.json()["error"] == "rotation_too_early"
    assert states(client) == before
    forced = admin(client, "POST", "/admin/keys/rotate", json={"force": True})
    assert forced.status_code == 200
    assert "verifiers holding an older cached JWKS" in forced.json()["warning"]
    following = next(kid for kid, state in before.items() if state == "next")
    assert states(client)[following] == "active"


def test_the_publish_lead_comes_from_the_setting(make_app: Any, clock: FakeClock) -> None:
    with TestClient(make_app(key_publish_lead=900)) as client:
        clock.advance(660)
        early = admin(client, "POST", "/admin/keys/rotate")
        assert (early.status_code, early.json()["error"]) == (409, "rotation_too_early")
        clock.advance(240)
        on_time = admin(client, "POST", "/admin/keys/rotate")
        assert on_time.status_code == 200 and "warning" not in on_time.json()


def test_revoke_answers_with_the_prelude_cache_warning(client: TestClient) -> None:
    kid = next(kid for kid, state in states(client).items() if state == "next")
    revoked = admin(client, "POST", f"/admin/keys/{kid}/revoke")
    assert revoked.status_code == 200
    assert set(revoked.json()) == {"keys", "warning"}
    assert "up to 10 minutes" in revoked.json()["warning"]


def test_rotate_with_an_empty_body_and_bad_bodies(client: TestClient, clock: FakeClock) -> None:
    before = states(client)
    for body, field in [
        ({"force": "yes"}, "force"),
        (b"[" * 10_000, "JSON"),
        (b"[true]", "object"),
    ]:
        if isinstance(body, bytes):
            bad = client.post(
                "/admin/keys/rotate",
                content=body,
                headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/json"},
            )
        else:
            bad = admin(client, "POST", "/admin/keys/rotate", json=body)
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_request"
        assert field in bad.json()["detail"]
    assert states(client) == before
    clock.advance(660)
    rotated = admin(client, "POST", "/admin/keys/rotate")  # no body at all
    assert rotated.status_code == 200
    assert states(client) != before


def test_revoke_active_promotes_next(client: TestClient) -> None:
    before = states(client)
    active = next(kid for kid, state in before.items() if state == "active")
    following = next(kid for kid, state in before.items() if state == "next")
    response = admin(client, "POST", f"/admin/keys/{active}/revoke")
    assert response.status_code == 200
    after = {key["kid"]: key["state"] for key in response.json()["keys"]}
    assert active not in after
    assert after[following] == "active"
    assert list(after.values()).count("next") == 1
    assert active not in {key["kid"] for key in client.get(JWKS).json()["keys"]}


def test_revoke_unknown_kid_is_404(client: TestClient) -> None:
    response = admin(client, "POST", "/admin/keys/nope/revoke")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_key"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin/keys"), ("POST", "/admin/keys/rotate"), ("POST", "/admin/keys/x/revoke")],
)
@pytest.mark.parametrize("headers", [{}, bearer(API_KEY), bearer("nope-nope-nope-nope-nope")])
def test_admin_api_needs_an_admin_token(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    before = states(client)
    response = client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert states(client) == before


def test_admin_api_is_off_without_tokens(make_app: Any) -> None:
    with TestClient(make_app(admin_tokens=())) as client:
        response = client.get("/admin/keys", headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 401
    assert "disabled" in response.json()["detail"]


def test_rotation_by_another_process_is_seen(client: TestClient, settings: Settings) -> None:
    # Another worker on the same host (hook_rsa_4.pem: the app's store used keys 1 and 2).
    other = FileKeyStore(settings.keys_dir, new_key=key_supply([3]))
    ttl = settings.token_ttl
    rotated = other.update(lambda ks, now: keys.rotate(ks, now, ttl, other.new_key, force=True))
    assert states(client)[rotated.active.kid] == "active"


def test_a_damaged_key_file_keeps_the_jwks_up_but_stops_signing(
    client: TestClient, settings: Settings, clock: FakeClock
) -> None:
    body = hook_body(amount="1500")
    client.post("/hooks/stepup", content=body, headers=sign_hook(body))
    served = client.get(JWKS).json()
    meta = settings.keys_dir / "keyset.json"
    original = meta.read_bytes()
    meta.write_bytes(original[:-5])  # a half-restored file; it may have held a revocation
    assert client.get(JWKS).json() == served  # the last good set keeps being published
    unavailable = {
        "error": "key_store_unavailable",
        "detail": "the key set changed on disk but cannot be read; not signing until it can",
    }
    request = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}
    token = client.post("/verification-token", headers=bearer(API_KEY), json=request)
    assert (token.status_code, token.json()) == (503, unavailable)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["keys"] == "stale"
    clock.advance(660)
    rotated = admin(client, "POST", "/admin/keys/rotate")
    assert rotated.status_code == 503
    assert rotated.json()["error"] == "key_store_unavailable"
    meta.write_bytes(original)  # repaired: signing resumes
    assert client.get("/readyz").status_code == 200
    retry = client.post("/verification-token", headers=bearer(API_KEY), json=request)
    assert retry.status_code == 200


def test_retry_after_revoking_the_signing_key_is_refused(client: TestClient) -> None:
    body = hook_body(amount="1500")
    client.post("/hooks/stepup", content=body, headers=sign_hook(body))
    request = {
        "user_id": "usr_39CfbdV8AsXQwdphtbJe4yH07aF",
        "challenge_id": "chl_1",
        "key": "kyc_review",
    }
    first = client.post("/verification-token", headers=bearer(API_KEY), json=request)
    assert first.status_code == 200
    assert admin(client, "POST", f"/admin/keys/{first.json()['kid']}/revoke").status_code == 200
    retry = client.post("/verification-token", headers=bearer(API_KEY), json=request)
    assert retry.status_code == 409
    assert retry.json()["error"] == "step_already_used"
    assert "revoked" in retry.json()["detail"]
