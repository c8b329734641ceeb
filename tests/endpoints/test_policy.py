"""GET /admin/policy and POST /admin/policy/reload; the revision in the decision log line."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from hook_service.cli import cli
from hook_service.policy.engine import example_policy_path
from tests.conftest import AppFactory
from tests.support import ADMIN_TOKEN, bearer, hook_body, sign_hook

SMALL = hook_body(amount="20")


def rule_of(client: TestClient, body: bytes = SMALL) -> str:
    response = client.post("/hooks/stepup", content=body, headers=sign_hook(body))
    assert response.status_code == 200
    return str(response.headers["x-hook-rule"])


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_bytes(example_policy_path().read_bytes())
    return path


def test_admin_policy_needs_the_admin_token(make_app: AppFactory, policy_file: Path) -> None:
    with TestClient(make_app(policy_file=policy_file)) as client:
        for method, path in (("GET", "/admin/policy"), ("POST", "/admin/policy/reload")):
            response = client.request(method, path)
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"


def test_get_admin_policy(make_app: AppFactory, policy_file: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow.yaml"
    shadow.write_bytes(example_policy_path().read_bytes().replace(b"1000.0", b"500.0"))
    with TestClient(make_app(policy_file=policy_file, shadow_policy_file=shadow)) as client:
        body = client.get("/admin/policy", headers=bearer(ADMIN_TOKEN)).json()
        assert body["revision"] == hashlib.sha256(policy_file.read_bytes()).hexdigest()
        assert body["source"] == str(policy_file)
        assert body["loaded_at"] == "2025-10-09T08:53:20Z"
        assert body["shadow"]["revision"] == hashlib.sha256(shadow.read_bytes()).hexdigest()
        assert (body["shadow"]["disagreements"], body["shadow"]["errors"]) == (0, 0)
        # 700 is large for the shadow only: the live answer stands, the disagreement counts.
        assert rule_of(client, hook_body(amount="700")) == "otp-only"
        body = client.get("/admin/policy", headers=bearer(ADMIN_TOKEN)).json()
        assert body["shadow"]["disagreements"] == 1


def test_reload_switches_decisions_and_an_invalid_file_keeps_the_old(
    make_app: AppFactory, policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(make_app(policy_file=policy_file)) as client:
        assert rule_of(client) == "otp-only"
        policy_file.write_text(policy_file.read_text().replace("name: otp-only", "name: otp-v2"))
        response = client.post("/admin/policy/reload", headers=bearer(ADMIN_TOKEN))
        assert response.status_code == 200
        revision = hashlib.sha256(policy_file.read_bytes()).hexdigest()
        assert response.json()["revision"] == revision
        assert rule_of(client) == "otp-v2"

        policy_file.write_text(
            policy_file.read_text().replace("granted_for: 300", "granted_for: 0", 1)
        )
        refused = client.post("/admin/policy/reload", headers=bearer(ADMIN_TOKEN))
        check = CliRunner().invoke(cli, ["policy", "check", str(policy_file)])
        assert refused.status_code == 400
        assert refused.json() == {
            "error": "invalid_policy",
            "detail": check.stderr.removeprefix("error: ").strip(),
        }
        assert "granted_for must be an integer from 1 to 86400, got 0" in refused.json()["detail"]
        assert (
            client.get("/admin/policy", headers=bearer(ADMIN_TOKEN)).json()["revision"] == revision
        )
        with caplog.at_level(logging.INFO, "hook_service.access"):
            assert rule_of(client) == "otp-v2"  # the old policy stays in force
    (line,) = [
        r.__dict__["fields"]
        for r in caplog.records
        if r.name == "hook_service.access" and "decision" in r.__dict__["fields"]
    ]
    assert line["policy_revision"] == revision


def test_a_bad_shadow_policy_stops_start_up_naming_its_variable(
    make_app: AppFactory, tmp_path: Path
) -> None:
    shadow = tmp_path / "shadow.yaml"
    shadow.write_text("version: 1\nwen: x\n")
    with pytest.raises(Exception, match=r"^HOOK_SHADOW_POLICY_FILE: .*shadow.yaml: unknown key"):
        make_app(shadow_policy_file=shadow)
