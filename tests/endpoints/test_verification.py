"""POST /verification-token end to end, and the issued token as Prelude would verify it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from hook_service.endpoints.http import json_response
from hook_service.endpoints.verification import TokenResponse
from hook_service.keys.lifecycle import PUBLISH_LEAD
from hook_service.tokens.base import IssuedToken
from tests.support import (
    ADMIN_TOKEN,
    API_KEY,
    USER_ID,
    FakeClock,
    active_kid,
    bearer,
    challenge_token,
    expected_claims,
    hook_body,
    issued_claims,
    sign_hook,
    verify_like_prelude,
)

TOKEN = "/verification-token"


def hook(client: TestClient, amount: str = "1500", user_id: str = USER_ID) -> None:
    body = hook_body(amount=amount, user_id=user_id)
    response = client.post("/hooks/stepup", content=body, headers=sign_hook(body))
    assert response.status_code == 200


def explicit(challenge_id: str = "chl_1", key: str = "kyc_review", user_id: str = USER_ID) -> Any:
    return {"user_id": user_id, "challenge_id": challenge_id, "key": key}


def ask(client: TestClient, payload: dict[str, Any], token: str = API_KEY) -> Any:
    return client.post(TOKEN, headers=bearer(token), json=payload)


def test_issued_token_verifies_against_the_served_jwks(
    client: TestClient, clock: FakeClock
) -> None:
    hook(client)
    response = ask(client, explicit())
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"verification_token", "jti", "kid", "expires_at"}
    jwks = client.get("/.well-known/jwks.json").json()
    claims = verify_like_prelude(body["verification_token"], jwks, clock())
    assert claims == {
        "sub": USER_ID,
        "challenge_id": "chl_1",
        "key": "kyc_review",
        "status": "completed",
        "jti": body["jti"],
        "iat": int(clock()),
        "nbf": int(clock()),
        "exp": int(clock()) + 300,
    }
    assert body["expires_at"] == claims["exp"]
    assert len(body["jti"]) >= 22  # 128 random bits, base64url
    assert body["kid"] == active_kid(client)


def test_challenge_token_form(client: TestClient, clock: FakeClock) -> None:
    hook(client)
    token = challenge_token(challenge_id="chl_ct", exp=clock() + 600)
    response = ask(client, {"challenge_token": token})
    assert response.status_code == 200
    claims = verify_like_prelude(
        response.json()["verification_token"], client.get("/.well-known/jwks.json").json(), clock()
    )
    subject = (claims["sub"], claims["challenge_id"], claims["key"])
    assert subject == (USER_ID, "chl_ct", "kyc_review")


def test_both_forms_must_agree(client: TestClient, clock: FakeClock) -> None:
    hook(client)
    token = challenge_token(challenge_id="chl_ct", exp=clock() + 600)
    agreeing = ask(client, {"challenge_token": token, **explicit("chl_ct")})
    assert agreeing.status_code == 200
    assert issued_claims(client, agreeing, clock()) == expected_claims(
        agreeing.json(), clock(), "chl_ct"
    )
    for field, value in [("user_id", "usr_other"), ("challenge_id", "chl_x"), ("key", "kyc_x")]:
        payload = {"challenge_token": token, **explicit("chl_ct"), field: value}
        response = ask(client, payload)
        assert response.status_code == 400
        assert field in response.json()["detail"]


@pytest.mark.parametrize(
    ("make_token", "status", "error"),
    [
        (
            lambda now: challenge_token(exp=now + 600, key="prelude_ed25519_other.pem"),
            401,
            "invalid_signature",
        ),
        (lambda now: challenge_token(exp=now - 120), 401, "invalid_signature"),
        (lambda now: challenge_token(exp=now + 600, kid="unknown-kid"), 401, "invalid_signature"),
        (lambda now: "not-a-jwt", 400, "invalid_request"),
    ],
)
def test_bad_challenge_tokens_are_refused(
    client: TestClient, clock: FakeClock, make_token: Any, status: int, error: str
) -> None:
    hook(client)
    response = ask(client, {"challenge_token": make_token(clock())})
    assert response.status_code == status
    assert response.json()["error"] == error
    # The pending step is still there for the genuine request.
    genuine = ask(client, explicit())
    assert genuine.status_code == 200
    assert issued_claims(client, genuine, clock()) == expected_claims(genuine.json(), clock())


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong-api-key-0123456789"), bearer(ADMIN_TOKEN), {"Authorization": API_KEY}],
)
def test_api_key_is_required(client: TestClient, headers: dict[str, str]) -> None:
    hook(client)
    response = client.post(TOKEN, headers=headers, json=explicit())
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert API_KEY not in response.text


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"user_id": USER_ID, "key": "kyc_review"}, "challenge_id"),
        ({**explicit(), "user_id": 7}, "user_id"),
        ({"challenge_token": 5}, "challenge_token"),
    ],
)
def test_malformed_requests_name_the_field(
    client: TestClient, payload: dict[str, Any], field: str
) -> None:
    response = ask(client, payload)
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_no_pending_step(client: TestClient) -> None:
    hook(client, amount="20")  # otp-only: no custom step
    for payload in (explicit(), explicit(user_id="usr_other"), explicit(key="verify_sms")):
        response = ask(client, payload)
        assert response.status_code == 404
        assert response.json()["error"] == "no_pending_step"


def test_retry_returns_the_same_token_and_other_challenges_get_409(client: TestClient) -> None:
    hook(client)
    first = ask(client, explicit("chl_1")).json()
    again = ask(client, explicit("chl_1")).json()
    assert again == first
    other = ask(client, explicit("chl_2"))
    assert other.status_code == 409
    assert other.json()["error"] == "step_already_used"


@pytest.mark.parametrize(("elapsed", "status"), [(600 + 86400 - 1, 200), (600 + 86400, 404)])
def test_pending_step_lives_for_the_sum_of_the_step_durations(
    client: TestClient, clock: FakeClock, elapsed: int, status: int
) -> None:
    hook(client)  # verify_sms 600 s, then kyc_review 86400 s
    clock.advance(elapsed)
    response = ask(client, explicit())
    assert response.status_code == status
    if status == 404:
        assert response.json()["error"] == "no_pending_step"
    else:
        assert response.json()["expires_at"] == int(clock()) + 300


# Every large transfer asks for kyc_review: the example policy skips it for 30 days once a
# token was issued (the token is proof, design.md "Facts"), so a second decision would not
# re-arm the step there.
KYC_EVERY_TIME = """
version: 1
custom_steps: [kyc_review]
defaults: {grant_mode: single-use, granted_for: 300, expiration_duration: 600}
on_error: {status: block}
scopes:
  "transfer:write":
    rules:
      - name: large-transfer
        status: review
        steps: [otp, {key: kyc_review, expiration_duration: 86400}] # as the example policy
default: {status: block}
"""


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def either(request: pytest.FixtureRequest, make_app: Any, tmp_path: Path) -> Iterator[TestClient]:
    """A client of an app asking for kyc_review on every large transfer, on the in-memory
    store, then on a real Redis."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    policy = tmp_path / "kyc-every-time.yaml"
    policy.write_text(KYC_EVERY_TIME)
    with TestClient(make_app(url, policy_file=policy)) as test_client:
        yield test_client


def test_a_new_review_rearms_the_step(either: TestClient, clock: FakeClock) -> None:
    hook(either)
    first = ask(either, explicit("chl_1"))
    assert first.status_code == 200
    assert issued_claims(either, first, clock()) == expected_claims(first.json(), clock(), "chl_1")
    clock.advance(5)
    hook(either)
    second = ask(either, explicit("chl_2"))
    assert second.status_code == 200
    assert second.json()["jti"] != first.json()["jti"]
    assert issued_claims(either, second, clock()) == expected_claims(
        second.json(), clock(), "chl_2"
    )


def test_a_new_review_leaves_the_first_challenge_its_token(
    either: TestClient, clock: FakeClock
) -> None:
    # Issue 10, point 5: the user starts again after the backend got its token for chl_1, and
    # the backend's retry for chl_1 (its reply was lost) must still get that token.
    hook(either)
    first = ask(either, explicit("chl_1"))
    assert first.status_code == 200
    clock.advance(5)
    hook(either)  # a new signed request: a new decision
    second = ask(either, explicit("chl_2"))
    assert second.status_code == 200
    retry = ask(either, explicit("chl_1"))
    assert retry.status_code == 200 and retry.json() == first.json()
    assert ask(either, explicit("chl_2")).json() == second.json()


def test_a_replayed_hook_request_neither_extends_nor_rearms_the_step(
    either: TestClient, clock: FakeClock
) -> None:
    body = hook_body()
    headers = sign_hook(body)
    assert either.post("/hooks/stepup", content=body, headers=headers).status_code == 200
    clock.advance(86_000)
    replay = either.post("/hooks/stepup", content=body, headers=headers)
    assert replay.status_code == 200 and replay.json()["status"] == "review"
    clock.advance(1_000)  # past the first decision's 600 + 86400 s, not the replay's
    assert ask(either, explicit("chl_1")).json()["error"] == "no_pending_step"
    headers = sign_hook(body)  # a genuine new request (PSS salts every signature)
    assert either.post("/hooks/stepup", content=body, headers=headers).status_code == 200
    assert ask(either, explicit("chl_1")).status_code == 200
    again = either.post("/hooks/stepup", content=body, headers=headers)  # replayed
    assert again.status_code == 200
    refused = ask(either, explicit("chl_2"))  # the replay did not re-arm the used step
    assert (refused.status_code, refused.json()["error"]) == (409, "step_already_used")


def test_challenge_token_for_another_scope_gets_no_pending_step(
    either: TestClient, clock: FakeClock
) -> None:
    # Issue 10, point 11: the pending step was recorded for transfer:write.
    hook(either)
    token = challenge_token(exp=clock() + 600, scope_requested="profile:read")
    response = ask(either, {"challenge_token": token})
    assert response.status_code == 404
    assert response.json() == {
        "error": "no_pending_step",
        "detail": "the challenge is for scope 'profile:read', but the pending 'kyc_review' "
        "step was recorded for scope 'transfer:write'",
    }
    genuine = ask(either, {"challenge_token": challenge_token(exp=clock() + 600)})
    assert genuine.status_code == 200  # the refused call consumed nothing
    assert issued_claims(either, genuine, clock()) == expected_claims(genuine.json(), clock())
    # A retry of that challenge is compared too: the same token, for its scope only.
    assert ask(either, {"challenge_token": challenge_token(exp=clock() + 600)}).json() == (
        genuine.json()
    )


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"steps": None}, "challenge_token has no steps claim"),
        ({"scope_requested": None}, "challenge_token has no scope_requested claim"),
        ({"steps": [("verify_sms", True)]}, "current_step 'kyc_review' is not one of"),
        (
            {"steps": [("verify_sms", True), ("kyc_review", True)]},
            "current_step 'kyc_review' is already done",
        ),
    ],
)
def test_challenge_token_must_show_its_current_step_pending(
    client: TestClient, clock: FakeClock, claims: dict[str, Any], detail: str
) -> None:
    hook(client)
    response = ask(client, {"challenge_token": challenge_token(exp=clock() + 600, **claims)})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith(detail)
    assert ask(client, explicit()).status_code == 200  # nothing was consumed


async def _concurrent(apps: list[Starlette], payloads: list[dict[str, Any]]) -> list[Any]:
    results: list[Any] = [None] * len(payloads)

    async def call(index: int) -> None:
        app = apps[index % len(apps)]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hook") as http:
            results[index] = await http.post(TOKEN, headers=bearer(API_KEY), json=payloads[index])

    async with anyio.create_task_group() as group:
        for index in range(len(payloads)):
            group.start_soon(call, index)
    return results


async def _prepare(app: Starlette) -> None:
    # No TestClient here: leaving its context would run the shutdown and close the store.
    body = hook_body(amount="1500")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hook") as http:
        response = await http.post("/hooks/stepup", content=body, headers=sign_hook(body))
    assert response.headers["x-hook-rule"] == "large-transfer"


@pytest.mark.anyio
@pytest.mark.parametrize("same_challenge", [True, False])
async def test_concurrent_calls_mint_exactly_one_token(make_app: Any, same_challenge: bool) -> None:
    app = make_app()
    await _prepare(app)
    payloads = [explicit("chl_1" if same_challenge else f"chl_{i}") for i in range(10)]
    responses = await _concurrent([app], payloads)
    ok = [r for r in responses if r.status_code == 200]
    jtis = {r.json()["jti"] for r in ok}
    assert len(jtis) == 1
    if same_challenge:
        assert len(ok) == 10
    else:
        assert len(ok) == 1
        assert {r.json()["error"] for r in responses if r.status_code != 200} == {
            "step_already_used"
        }


@pytest.mark.anyio
@pytest.mark.redis
async def test_single_use_across_two_instances_on_one_redis(make_app: Any, redis_url: str) -> None:
    app_a = make_app(redis_url)
    app_b = make_app(redis_url)
    await _prepare(app_a)
    payloads = [explicit(f"chl_{i}") for i in range(10)]
    responses = await _concurrent([app_a, app_b], payloads)
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    winner = next(
        (payload, response)
        for payload, response in zip(payloads, responses, strict=True)
        if response.status_code == 200
    )
    retry = await _concurrent([app_b], [winner[0]])
    assert retry[0].json()["jti"] == winner[1].json()["jti"]


@pytest.mark.redis
def test_store_down_is_503(make_app: Any, redis_server: Any, redis_url: str) -> None:
    with TestClient(make_app(redis_url)) as client:
        hook(client)
        redis_server.stop()
        try:
            response = ask(client, explicit())
        finally:
            redis_server.start()
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"


def test_token_from_before_a_rotation_verifies_until_retirement(
    client: TestClient, clock: FakeClock
) -> None:
    # A routine rotation: the next key has been published long enough (no force needed).
    clock.advance(PUBLISH_LEAD)
    hook(client)
    before = ask(client, explicit("chl_1")).json()
    rotated = client.post("/admin/keys/rotate", headers=bearer(ADMIN_TOKEN))
    assert rotated.status_code == 200
    # Another user: the first one's token was proof of kyc_review, not asked again for 30 days.
    hook(client, user_id="usr_after_rotation")
    after = ask(client, explicit("chl_2", user_id="usr_after_rotation")).json()
    assert after["kid"] != before["kid"]
    jwks = client.get("/.well-known/jwks.json").json()
    verify_like_prelude(before["verification_token"], jwks, clock())
    verify_like_prelude(after["verification_token"], jwks, clock())
    # retire_at = rotation + TTL + 10 min Prelude cache + 1 min skew; then the old kid is gone.
    clock.advance(300 + 600 + 60 + 1)
    kids = {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}
    assert before["kid"] not in kids
    assert after["kid"] in kids


@pytest.mark.parametrize(
    ("token", "jti", "kid"),
    [
        ("eyJh.eyJz.c2ln-_", "j_1-A", "k" * 43),
        ('a"b\\c', "jti\u00e9", "kid\n"),  # a record altered in Redis: encoded as JSON
        ("", "", ""),
    ],
)
def test_token_response_is_what_json_response_sends(token: str, jti: str, kid: str) -> None:
    issued = IssuedToken(token, jti, kid, 1_760_000_300, "chl_1", USER_ID, "kyc_review")
    fast, generic = TokenResponse(issued), json_response(issued.to_json())
    assert (fast.status_code, fast.body, fast.raw_headers) == (
        generic.status_code,
        generic.body,
        generic.raw_headers,
    )
