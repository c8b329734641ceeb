"""POST /outcomes and the token as proof, end to end over HTTP (issue 11 point 2), on the
in-memory stores and on a real Redis."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support import (
    ADMIN_TOKEN,
    API_KEY,
    USER_ID,
    bearer,
    hook_body,
    seed_review,
    sign_hook,
)

SCOPE = "transfer:write"


def report(client: TestClient, payload: Any, token: str = API_KEY) -> Any:
    return client.post("/outcomes", headers=bearer(token), json=payload)


def held(client: TestClient, user_id: str = USER_ID) -> dict[str, Any]:
    response = client.get(f"/admin/users/{user_id}/facts", headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 200
    facts: dict[str, Any] = response.json()["facts"]
    return facts


def outcome(kind: str, scope: str = SCOPE, user_id: str = USER_ID) -> dict[str, str]:
    return {"user_id": user_id, "scope": scope, "outcome": kind}


def test_verified_marks_the_latest_review_attempt(app_client: TestClient) -> None:
    seed_review(app_client, steps=())
    response = report(app_client, outcome("verified"))
    assert response.status_code == 200
    assert response.json() == {
        "user_id": USER_ID,
        "scope": SCOPE,
        "outcome": "verified",
        "recorded": True,
    }
    facts = held(app_client)
    assert [d["known_age"] for d in facts["devices"]] == [0]
    assert [i["known_age"] for i in facts["ips"]] == [0]
    assert facts["verified_age"] == 0
    assert [a["proven"] for a in facts["open_attempts"]] == [True]
    # A retried report still answers recorded (the attempt stays marked, once).
    assert report(app_client, outcome("verified")).status_code == 200


@pytest.mark.parametrize(
    "case", ["never asked", "other scope", "other user", "expired", "after fraud"]
)
def test_verified_without_an_attempt_to_mark_is_404_no_attempt(
    app_client: TestClient, clock: Any, case: str
) -> None:
    if case != "never asked":
        seed_review(app_client, steps=(), window=600)
    if case == "expired":
        clock.advance(600)
    if case == "after fraud":
        assert report(app_client, outcome("fraud")).status_code == 200
    scope = "profile:read" if case == "other scope" else SCOPE
    user_id = "usr_other" if case == "other user" else USER_ID
    response = report(app_client, outcome("verified", scope, user_id))
    assert response.status_code == 404
    assert response.json()["error"] == "no_attempt"
    assert scope in response.json()["detail"]
    assert held(app_client)["verified_age"] == -1  # nothing was learned


def test_fraud_flags_the_user_and_forgets_what_proofs_taught(app_client: TestClient) -> None:
    seed_review(app_client, steps=())
    assert report(app_client, outcome("verified")).status_code == 200
    response = report(app_client, outcome("fraud"))
    assert response.status_code == 200
    assert response.json() == {
        "user_id": USER_ID,
        "scope": SCOPE,
        "outcome": "fraud",
        "recorded": True,
    }
    facts = held(app_client)
    assert facts["flagged"] is True and facts["flag_expires_in"] == 7 * 86400
    assert [d["known_age"] for d in facts["devices"]] == [None]  # seen, no longer known
    assert (facts["verified_age"], facts["countries"], facts["open_attempts"]) == (-1, {}, [])


def test_a_first_verification_token_is_proof_for_the_pending_steps_scope(
    app_client: TestClient,
) -> None:
    body = hook_body()  # review: verify_sms then kyc_review, recorded as pending
    assert (
        app_client.post("/hooks/stepup", content=body, headers=sign_hook(body)).json()["status"]
        == "review"
    )
    seed_review(app_client)  # the attempt that decision recorded (the hook's part)
    assert [a["proven"] for a in held(app_client)["open_attempts"]] == [False]
    request = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}
    token = app_client.post("/verification-token", headers=bearer(API_KEY), json=request)
    assert token.status_code == 200
    facts = held(app_client)
    assert [a["proven"] for a in facts["open_attempts"]] == [True]
    assert (facts["step_age"], facts["verified_age"]) == ({"kyc_review": 0}, 0)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"scope": SCOPE, "outcome": "verified"}, "user_id"),
        ({"user_id": USER_ID, "outcome": "verified"}, "scope"),
        ({"user_id": USER_ID, "scope": SCOPE}, "outcome"),
        ({"user_id": "", "scope": SCOPE, "outcome": "verified"}, "user_id"),
        ({"user_id": 42, "scope": SCOPE, "outcome": "verified"}, "user_id"),
        ({"user_id": USER_ID, "scope": ["x"], "outcome": "verified"}, "scope"),
        ({"user_id": USER_ID, "scope": "transfer write", "outcome": "verified"}, "scope"),
        ({"user_id": USER_ID, "scope": "t" * 129, "outcome": "fraud"}, "scope"),
        ({"user_id": USER_ID, "scope": SCOPE, "outcome": "granted"}, "outcome"),
        ({"user_id": USER_ID, "scope": SCOPE, "outcome": None}, "outcome"),
        ({"user_id": USER_ID, "scope": SCOPE, "outcome": "fraud", "why": "x"}, "why"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    app_client: TestClient, payload: dict[str, Any], field: str
) -> None:
    response = report(app_client, payload)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["detail"]
    assert held(app_client)["flagged"] is False  # nothing was written


def test_a_body_that_is_not_a_json_object_is_a_400(client: TestClient) -> None:
    for content in (b"[]", b"{", b'"fraud"'):
        response = client.post(
            "/outcomes",
            content=content,
            headers={**bearer(API_KEY), "Content-Type": "application/json"},
        )
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize("token", [None, "wrong-key", ADMIN_TOKEN])
def test_outcomes_need_the_api_key(client: TestClient, token: str | None) -> None:
    headers = bearer(token) if token else {}
    response = client.post("/outcomes", headers=headers, json=outcome("fraud"))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert held(client)["flagged"] is False


def test_the_log_names_the_user_by_its_tag_only(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        assert report(client, outcome("fraud")).status_code == 200
    line = next(r.getMessage() for r in caplog.records if "outcome fraud" in r.getMessage())
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("hook_service"))
    assert USER_ID not in ours and API_KEY not in caplog.text
    assert "user=" in line and SCOPE in line
