"""The OpenAPI document against the behaviour of a live ``hook-service serve`` (issue 10.10).

Schemathesis takes the document (the one ``/openapi.json`` serves: the live one is compared
with it) and sends every operation in it requests generated from it, valid ones (positive) and
ones the document calls invalid (negative), to a real ``serve`` process on loopback (Redis
store and Redis key store). It fails on

* any 5xx (``not_a_server_error``),
* a status code, content type or body the document does not declare for that operation
  (``status_code_conformance``, ``content_type_conformance``, ``response_schema_conformance``),
* an invalid request accepted with a 2xx (``negative_data_rejection``),
* a valid, authenticated request refused as malformed (``positive_data_acceptance``: only
  2xx, 3xx, 404 and 409 are the answers a well-formed request may get here).

Every request carries the credentials its operation's ``security`` names: the API key, an
admin token, or a Prelude signature over the exact body sent (tests/keys/prelude_rsa.pem, the
key of tests/keys/prelude_jwks.json). A valid request is never answered 401: an operation
that needs credentials but does not declare them fails. Nothing here names an endpoint: one
added to the app and to the document is covered by the next run. The settings (examples per
operation, phases) are ``[tool.schemathesis]`` in pyproject.toml.
"""

from __future__ import annotations

import base64
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from hook_service.collaborators import open_key_store
from hook_service.endpoints.openapi import openapi_document
from hook_service.settings import Settings
from tests.conftest import RedisServer
from tests.support import (
    ADMIN_TOKEN,
    API_KEY,
    PRELUDE_JWKS_FILE,
    TEST_KEK,
    KeyFactory,
    ServeProcess,
    sign_hook,
)

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
BEARER = {"apiKey": API_KEY, "adminToken": ADMIN_TOKEN}
SIGNATURE_HEADERS = ("X-Webhook-Signature", "X-Webhook-Signature-Key-Id")


@pytest.fixture(scope="module")
def service(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``hook-service serve`` on a free loopback port: its base URL. Redis holds the pending
    steps and the key set, created beforehand from the pre-generated test keys."""
    redis_server.reset()
    env = {
        "HOOK_REDIS_URL": redis_server.url,
        "HOOK_KEYSTORE": "redis",
        "HOOK_KEY_ENCRYPTION_KEYS": base64.b64encode(TEST_KEK).decode(),
        "HOOK_FACTS_KEY": base64.b64encode(bytes(range(32, 64))).decode(),
        "HOOK_PRELUDE_JWKS_FILE": str(PRELUDE_JWKS_FILE),
        "HOOK_API_KEYS": API_KEY,
        "HOOK_ADMIN_TOKENS": ADMIN_TOKEN,
        "HOOK_LOG_LEVEL": "WARNING",
    }
    open_key_store(Settings.from_env(env), new_key=KeyFactory([0, 1])).load_or_create()
    with ServeProcess(env, tmp_path_factory.mktemp("serve")) as process:
        yield process.url


def _config() -> schemathesis.Config:
    with PYPROJECT.open("rb") as file:
        return schemathesis.Config.from_dict(tomllib.load(file)["tool"]["schemathesis"])


class Credentials:
    """A ``requests`` auth callable: what the operation's ``security`` asks for, on the
    prepared request (so a hook signature covers the body exactly as sent)."""

    def __init__(self, document: dict[str, Any], path: str, method: str) -> None:
        operation = document["paths"][path][method.lower()]
        self.schemes = {name for option in operation.get("security", []) for name in option}

    def __call__(self, request: Any) -> Any:
        for name in self.schemes & set(BEARER):
            request.headers["Authorization"] = f"Bearer {BEARER[name]}"
        if "preludeSignature" in self.schemes:
            body = request.body or b""
            signed = sign_hook(body if isinstance(body, bytes) else body.encode())
            for header in SIGNATURE_HEADERS:
                request.headers[header] = signed[header]
        return request


def accepts_valid_data(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """``positive_data_acceptance``, except where the schema cannot speak.

    A ``challenge_token`` is a credential inside the body: JSON Schema can say it is a compact
    JWS, not that Prelude signed it for these ``user_id``, ``challenge_id`` and ``key``, so a
    generated one is refused (400 or 401) with a detail naming the challenge token. Any other
    refusal of a valid request is a disagreement."""
    body = case.body if isinstance(case.body, dict) else {}
    if "challenge_token" in body and response.status_code in (400, 401):
        detail = response.json().get("detail", "")
        if "challenge token" in detail or "challenge_token" in detail:
            return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    accepts_valid_data,
]

# The document the app serves at /openapi.json (test_the_live_document_is_the_one_tested).
schema = schemathesis.openapi.from_dict(openapi_document(), config=_config())


@schema.parametrize()
def test_every_operation_behaves_as_the_document_says(case: Any, service: str) -> None:
    # A case whose headers are the invalid part (e.g. no Authorization at all) goes out as
    # generated: it must be refused for exactly that.
    meta = case.meta
    if meta is not None and meta.is_negative_at(ParameterLocation.HEADER):
        case.call_and_validate(base_url=service, checks=CHECKS)
        return
    credentials = Credentials(schema.raw_schema, case.operation.path, case.operation.method)
    case.call_and_validate(base_url=service, checks=CHECKS, auth=credentials)


def test_the_live_document_is_the_one_tested(service: str) -> None:
    served = httpx.get(f"{service}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == schema.raw_schema


def test_two_authorization_headers_over_a_real_socket(service: str) -> None:
    # The ASGI server, not the TestClient, parses these: both lines must reach the handler.
    host, port = service.removeprefix("http://").split(":")
    request = (
        "GET /admin/keys HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\n"
        "Authorization: Bearer wrong-secret-0123456789\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b'"error":"invalid_request"' in body
    assert b"send one Authorization header, not 2" in body
    assert ADMIN_TOKEN.encode() not in answer
