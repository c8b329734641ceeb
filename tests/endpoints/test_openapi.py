"""The OpenAPI document and the behaviour agree on the boundary cases (issue 10.10).

The schemathesis run (test_schemathesis.py) explores at random; these pin the disagreements it
found, and the edges next to them, case by case: a request the document calls valid is not
refused as malformed, and one it calls invalid is refused with 400 ``invalid_request``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from starlette.testclient import TestClient

from hook_service.endpoints.openapi import openapi_document
from tests.conftest import AppFactory
from tests.support import ADMIN_TOKEN, API_KEY, USER_ID, bearer, hook_body, sign_hook


def _valid(component: str, instance: Any) -> bool:
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return bool(OAS31Validator(schema).is_valid(instance))


@pytest.mark.parametrize(("user_id", "valid"), [("", False), ("u", True), (USER_ID, True)])
def test_hook_user_id(client: TestClient, user_id: str, valid: bool) -> None:
    body = hook_body(user_id=user_id)
    assert _valid("HookRequest", json.loads(body)) is valid
    response = client.post("/hooks/stepup", content=body, headers=sign_hook(body))
    assert response.status_code == (200 if valid else 400)
    if not valid:
        assert response.json() == {
            "error": "invalid_request",
            "detail": "user_id must not be empty",
        }


EXPLICIT = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}


@pytest.mark.parametrize(
    ("payload", "valid"),
    [
        ({}, False),
        ({"user_id": USER_ID, "key": "kyc_review"}, False),
        ({**EXPLICIT, "challenge_id": ""}, False),
        ({**EXPLICIT, "key": 7}, False),
        ({"challenge_token": ""}, False),
        ({"challenge_token": "not-a-jwt"}, False),
        (EXPLICIT, True),
        ({**EXPLICIT, "metadata": "ignored"}, True),
    ],
)
def test_verification_token_request(client: TestClient, payload: Any, valid: bool) -> None:
    assert _valid("VerificationTokenRequest", payload) is valid
    response = client.post("/verification-token", headers=bearer(API_KEY), json=payload)
    if valid:  # well formed: no step was recorded for it, so there is none to find
        assert (response.status_code, response.json()["error"]) == (404, "no_pending_step")
    else:
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_the_challenge_token_forms_are_valid_by_the_document() -> None:
    # Their verification (Prelude's signature, expiry, agreement) is for the handler to refuse
    # (tests/endpoints/test_verification.py); the document only promises the shape.
    assert _valid("VerificationTokenRequest", {"challenge_token": "eyJh.eyJz.c2ln"})
    assert _valid("VerificationTokenRequest", {**EXPLICIT, "challenge_token": "eyJh.eyJz.c2ln"})


@pytest.fixture
def redis_keys_client(make_app: AppFactory, redis_url: str) -> Iterator[TestClient]:
    with TestClient(make_app(redis_url, keystore="redis")) as client:
        yield client


MAX = 2**64 - 1


@pytest.mark.parametrize(
    "after",
    [
        "",
        "0-0",
        "1760000000000-0",
        f"{MAX}-{MAX}",
        f"{MAX + 1}-0",
        f"0-{MAX + 1}",
        "99999999999999999999-0",
        "00000000000000000001-1",
        "000000000000000000001-1",
        "1-",
        "-1",
        "1-1-1",
        "1_0-0",
    ],
)
def test_event_cursor(redis_keys_client: TestClient, after: str) -> None:
    document = openapi_document()
    parameters = document["paths"]["/admin/keys/events"]["get"]["parameters"]
    pattern = next(p for p in parameters if p["name"] == "after")["schema"]["pattern"]
    valid = re.search(pattern, after) is not None
    response = redis_keys_client.get(
        "/admin/keys/events", params={"after": after}, headers=bearer(ADMIN_TOKEN)
    )
    assert response.status_code == (200 if valid else 400), response.json()
    if not valid:
        assert response.json()["error"] == "invalid_request"
        assert response.json()["detail"].startswith("after ")
