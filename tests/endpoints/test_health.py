"""Health, readiness, OpenAPI and the shape of routing errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from hook_service.app import routes
from tests.support import free_port


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_every_check(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"policy": "ok", "store": "ok", "keys": "ok", "prelude_jwks": "ok"},
    }


@pytest.mark.redis
def test_readyz_is_503_when_the_store_is_down(
    make_app: Any, redis_server: Any, redis_url: str
) -> None:
    with TestClient(make_app(redis_url)) as client:
        assert client.get("/readyz").status_code == 200
        redis_server.stop()
        try:
            response = client.get("/readyz")
        finally:
            redis_server.start()
        assert client.get("/readyz").status_code == 200
    assert response.status_code == 503
    assert response.json()["error"] == "not_ready"
    assert response.json()["checks"]["store"] == "unreachable"
    assert "store" in response.json()["detail"]


def test_readyz_is_503_until_prelude_jwks_loads(make_app: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"  # nothing listens there
    with TestClient(make_app(prelude_jwks_file=None, prelude_jwks_url=url)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["prelude_jwks"] == "not loaded"
    assert response.json()["detail"] == "not ready: prelude_jwks not loaded"


def test_readyz_skips_prelude_jwks_when_signatures_are_off(make_app: Any) -> None:
    with TestClient(make_app(prelude_jwks_file=None, insecure_skip_signature=True)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["prelude_jwks"] == "skipped"


def test_openapi_is_valid_and_covers_every_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    validate(document)  # raises on an invalid OpenAPI document
    assert document["openapi"].startswith("3.1")
    for route in routes:
        assert isinstance(route, Route)
        assert route.methods is not None
        # OpenAPI templates name the parameter only: {user_id:path} is {user_id}.
        operations = document["paths"][re.sub(r":\w+}", "}", route.path)]
        assert {method.lower() for method in route.methods} - {"head"} <= set(operations)


def test_unknown_path_and_method_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = client.get("/hooks/stepup")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
