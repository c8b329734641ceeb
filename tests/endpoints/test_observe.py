"""endpoints/observe.py: the request id, the one line per request and what it never holds."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import AppFactory
from tests.support import API_KEY, USER_ID, bearer, hook_body, sign_hook


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__["fields"] for r in caplog.records if r.name == "hook_service.access"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("req-1.a:b_C", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("has space", False),
        ("new\nline", False),
    ],
)
def test_request_id_is_kept_when_well_formed_else_generated(
    client: TestClient, caplog: pytest.LogCaptureFixture, sent: str, kept: bool
) -> None:
    with caplog.at_level("INFO", logger="hook_service.access"):
        answer = client.get("/healthz", headers=[("X-Request-Id", sent.encode())])
    echoed = answer.headers["x-request-id"]
    if kept:
        assert echoed == sent
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", echoed)
    [line] = lines(caplog)
    assert line["request_id"] == echoed
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert isinstance(line["duration_ms"], float)


def test_hook_and_token_lines_carry_their_fields_and_no_secret(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = hook_body(amount="1500")
    headers = sign_hook(body) | {"User-Agent": "SecretAgent/1.0"}
    request = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}
    with caplog.at_level("INFO", logger="hook_service.access"):
        assert client.post("/hooks/stepup", content=body, headers=headers).status_code == 200
        token = client.post("/verification-token", headers=bearer(API_KEY), json=request)
        client.post("/verification-token", json=request)
    hook_line, token_line, refused_line = lines(caplog)
    assert hook_line["scope"] == "transfer:write" and hook_line["user_id"] == USER_ID
    assert (hook_line["rule"], hook_line["decision"]) == ("large-transfer", "review")
    assert len(str(hook_line["policy_revision"])) == 64 and hook_line["on_error"] is None
    issued = token.json()
    assert token_line == {
        **token_line,
        "token": "issued",
        "jti": issued["jti"],
        "kid": issued["kid"],
        "user_id": USER_ID,
        "key": "kyc_review",
    }
    assert (refused_line["status"], refused_line["error"]) == (401, "unauthorized")
    logged = repr(lines(caplog))
    secrets = (issued["verification_token"], API_KEY, headers["X-Webhook-Signature"][20:60])
    for private in (*secrets, "SecretAgent", "203.0.113.42", "testclient", "+33612345678"):
        assert private not in logged
    assert "client" not in hook_line


def test_client_address_only_with_hook_log_client(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The access logger's own level (an earlier test's configure_logging may have set it).
    access = caplog.at_level("INFO", logger="hook_service.access")
    with TestClient(make_app(log_client=True)) as client, access:
        client.get("/healthz")
    [line] = lines(caplog)
    assert line["client"] == "testclient"  # Starlette's TestClient peer


def test_an_on_error_answer_names_its_reason(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = hook_body(amount="abc")  # double("abc") fails: on_error
    with caplog.at_level("INFO", logger="hook_service.access"):
        client.post("/hooks/stepup", content=body, headers=sign_hook(body))
    [line] = lines(caplog)
    assert (line["rule"], line["decision"], line["on_error"]) == (
        "on_error",
        "block",
        "policy_error",
    )
