"""The shared HTTP plumbing of endpoints/http.py: one ``Authorization`` header (issue 10.9).

Starlette's ``request.headers.get`` answers the first of repeated headers; a proxy in front of
us that reads the last one would then authenticate a different credential than we do. So a
request with more than one ``Authorization`` header is refused outright, on every operation
that reads one: the cases below come from the OpenAPI document's bearer-secured operations, so
an endpoint added later is covered as soon as it declares its security.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from hook_service.endpoints.openapi import openapi_document
from tests.support import ADMIN_TOKEN, API_KEY, USER_ID, hook_body, sign_hook

WRONG = "wrong-secret-0123456789"


def _bearer_operations() -> list[tuple[str, str, str]]:
    """``(method, path, secret)`` for every operation secured by an HTTP bearer scheme."""
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    secrets = {"apiKey": API_KEY, "adminToken": ADMIN_TOKEN}
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for requirement in operation.get("security", []):
                for name in requirement:
                    if schemes[name].get("scheme") == "bearer":
                        concrete = re.sub(r"\{[^}]+\}", "x", path)
                        found.append((method.upper(), concrete, secrets[name]))
    return found


BEARER_OPERATIONS = _bearer_operations()


def test_the_bearer_operations_are_found() -> None:
    paths = {path for _, path, _ in BEARER_OPERATIONS}
    assert {"/verification-token", "/admin/keys", "/admin/keys/rotate"} <= paths
    assert "/hooks/stepup" not in paths  # signed by Prelude, no Authorization header


def _raw(*values: str) -> list[tuple[str, str]]:
    # A list of tuples: httpx (and the TestClient's ASGI scope) keep every repeated header.
    return [("Authorization", f"Bearer {value}") for value in values]


@pytest.mark.parametrize(("method", "path", "secret"), BEARER_OPERATIONS)
@pytest.mark.parametrize("order", ["right-wrong", "wrong-right", "right-right"])
def test_two_authorization_headers_are_refused(
    client: TestClient, method: str, path: str, secret: str, order: str
) -> None:
    values = [secret if part == "right" else WRONG for part in order.split("-")]
    response = client.request(method, path, headers=_raw(*values), json={})
    assert response.status_code == 400
    body = response.json()
    assert body == {
        "error": "invalid_request",
        "detail": "send one Authorization header, not 2",
    }
    assert secret not in response.text


def _states(client: TestClient) -> dict[str, str]:
    listed = client.get("/admin/keys", headers=_raw(ADMIN_TOKEN))
    assert listed.status_code == 200
    return {key["kid"]: key["state"] for key in listed.json()["keys"]}


def test_a_refused_rotation_changes_nothing(client: TestClient) -> None:
    before = _states(client)
    refused = client.post(
        "/admin/keys/rotate", headers=_raw(ADMIN_TOKEN, ADMIN_TOKEN), json={"force": True}
    )
    assert refused.status_code == 400
    assert _states(client) == before
    rotated = client.post("/admin/keys/rotate", headers=_raw(ADMIN_TOKEN), json={"force": True})
    assert rotated.status_code == 200
    assert _states(client) != before


def test_a_refused_token_request_leaves_the_step_pending(client: TestClient) -> None:
    body = hook_body()
    assert client.post("/hooks/stepup", content=body, headers=sign_hook(body)).status_code == 200
    request: dict[str, Any] = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}
    refused = client.post("/verification-token", headers=_raw(API_KEY, WRONG), json=request)
    assert refused.status_code == 400
    issued = client.post("/verification-token", headers=_raw(API_KEY), json=request)
    assert issued.status_code == 200
    assert set(issued.json()) == {"verification_token", "jti", "kid", "expires_at"}
