"""GET and DELETE /admin/users/{user_id}/facts (issue 11 point 4) on the in-memory stores and
on a real Redis, which is then scanned key by key for anything left of the user."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import pytest
import redis
from jsonschema import Draft202012Validator, ValidationError  # type: ignore[import-untyped]
from starlette.testclient import TestClient

from hook_service.store.base import user_tag
from tests.conftest import AppFactory
from tests.support import (
    ADMIN_TOKEN,
    API_KEY,
    RAW_IP,
    RAW_UA,
    TEST_FACTS_KEY,
    USER_ID,
    bearer,
    mint_token,
    seed_review,
)

EMPTY_ERASED = {
    "facts": {
        "devices": 0,
        "ips": 0,
        "countries": 0,
        "attempts": 0,
        "open_attempts": 0,
        "steps": 0,
        "verified": 0,
        "flag": 0,
    },
    "records": 0,
}


def path(user_id: str) -> str:
    return f"/admin/users/{quote(user_id, safe='')}/facts"


def show(client: TestClient, user_id: str = USER_ID) -> Any:
    response = client.get(path(user_id), headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 200
    return response.json()


def erase(client: TestClient, user_id: str = USER_ID) -> Any:
    response = client.delete(path(user_id), headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 200
    return response.json()


def history(client: TestClient, user_id: str) -> None:
    """A token issued (a proof), a fraud report, another review open: every kind of record."""
    assert mint_token(client, user_id)[0] == 200  # the hook records the attempt it proves
    fraud = {"user_id": user_id, "scope": "transfer:write", "outcome": "fraud"}
    assert client.post("/outcomes", headers=bearer(API_KEY), json=fraud).status_code == 200
    seed_review(client, user_id, scope="profile:read", steps=())


def test_get_shows_counts_ages_and_hashes_never_raw_values(app_client: TestClient) -> None:
    assert mint_token(app_client, USER_ID)[0] == 200  # the hook's attempt, the token's proof
    held = show(app_client)
    assert held["user_id"] == USER_ID
    assert held["records"] == {"pending_steps": 0, "issued_tokens": 1}
    facts = held["facts"]
    [device], [ip] = facts["devices"], facts["ips"]
    assert (device["seen_age"], device["known_age"]) == (0, 0)
    assert len(ip["hash"]) == 16 and ip["hash"] != RAW_IP
    assert facts["step_age"] == {"kyc_review": 0}
    assert facts["attempts"] == {"last_1h": 1, "last_24h": 1}
    text = json.dumps(held)
    assert RAW_IP not in text and RAW_UA not in text and "Mozilla" not in text


def test_get_for_a_user_with_nothing_held(app_client: TestClient) -> None:
    held = show(app_client, "usr_nobody")
    assert held["records"] == {"pending_steps": 0, "issued_tokens": 0}
    assert held["facts"]["devices"] == [] and held["facts"]["verified_age"] == -1


def test_delete_erases_everything_and_answers_what(app_client: TestClient) -> None:
    history(app_client, USER_ID)
    history(app_client, "usr_keep")
    answer = erase(app_client)
    assert answer["user_id"] == USER_ID
    # The token's record and its step's (consumed, kept until the step's expiry).
    assert answer["erased"]["records"] == 2
    assert answer["erased"]["facts"] == {
        "devices": 1,
        "ips": 1,
        "countries": 0,  # fraud forgot the verified country
        "attempts": 2,
        "open_attempts": 1,
        "steps": 0,
        "verified": 0,
        "flag": 1,
    }
    after = show(app_client)
    assert after["records"] == {"pending_steps": 0, "issued_tokens": 0}
    assert after["facts"]["flagged"] is False and after["facts"]["devices"] == []
    assert erase(app_client) == {"user_id": USER_ID, "erased": EMPTY_ERASED}  # idempotent
    kept = show(app_client, "usr_keep")
    assert kept["facts"]["flagged"] is True and kept["records"]["issued_tokens"] == 1


def test_redis_erasure_leaves_no_key_of_the_user(make_app: AppFactory, redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    tags = (user_tag(USER_ID), TEST_FACTS_KEY.user(USER_ID), USER_ID)
    with TestClient(make_app(redis_url)) as client:
        history(client, USER_ID)
        history(client, "usr_keep")
        mine = [k for k in raw.scan_iter(count=100) if any(t in k for t in tags)]
        assert len(mine) >= 5  # facts (seen, known, times, latest, flag) and the token record
        erase(client)
    left = list(raw.scan_iter(count=100))
    raw.close()
    assert [k for k in left if any(t in k for t in tags)] == []
    assert [k for k in left if TEST_FACTS_KEY.user("usr_keep") in k]  # the other user stays


@pytest.mark.parametrize(
    "victim", ["usr_*", "usr_?", "usr_[ab]", "*", "usr/a", "usr a", "usr\na", "usr\x11é"]
)
def test_odd_user_ids_erase_only_themselves(app_client: TestClient, victim: str) -> None:
    users = [victim, "usr_a", "usr_b", "usr_ab", "usr_x"]
    for user in users:
        assert mint_token(app_client, user)[0] == 200
    assert erase(app_client, victim)["erased"]["records"] == 2  # the consumed step, the token
    assert show(app_client, victim)["records"]["issued_tokens"] == 0
    for user in users[1:]:
        held = show(app_client, user)
        assert held["user_id"] == user
        assert held["records"]["issued_tokens"] == 1 and len(held["facts"]["devices"]) == 1


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("token", [None, "wrong-token", API_KEY])
def test_the_admin_token_is_required(client: TestClient, method: str, token: str | None) -> None:
    seed_review(client)
    headers = bearer(token) if token else {}
    response = client.request(method, path(USER_ID), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert len(show(client)["facts"]["devices"]) == 1  # nothing was erased


def test_an_empty_user_id_is_a_400(client: TestClient) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, "/admin/users//facts", headers=bearer(ADMIN_TOKEN))
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
        assert "user_id" in response.json()["detail"]


def test_the_erasure_is_logged_without_the_user_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    seed_review(client)
    with caplog.at_level(logging.INFO):
        erase(client)
    line = next(r.getMessage() for r in caplog.records if "erased" in r.getMessage())
    assert f"user={user_tag(USER_ID)}" in line and "devices:1" in line
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("hook_service"))
    assert USER_ID not in ours and ADMIN_TOKEN not in caplog.text


def test_answers_match_their_openapi_schemas(app_client: TestClient) -> None:
    document = app_client.get("/openapi.json").json()

    def check(name: str, body: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        Draft202012Validator(schema).validate(body)

    history(app_client, USER_ID)
    seed_review(app_client, USER_ID)  # an open attempt with a step, device and IP hashes
    check("UserFacts", show(app_client))
    check("UserFacts", show(app_client, "usr_nobody"))
    verified = {"user_id": USER_ID, "scope": "transfer:write", "outcome": "verified"}
    check("Outcome", app_client.post("/outcomes", headers=bearer(API_KEY), json=verified).json())
    check("UserErased", erase(app_client))
    with pytest.raises(ValidationError):  # the schemas do check something
        check("UserErased", {"user_id": USER_ID, "erased": {"records": -1}})
