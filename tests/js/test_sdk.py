"""Prelude's own web SDK (``@prelude.so/js-sdk`` 0.6.0, run under Node by ``stepup.mjs``) with a
verification token issued by our service: it finds our ``challenge_id`` and sends our token on
unchanged to ``/v1/session/stepup/continue`` (contract 6; issue 10, point 11).

Prelude's side is the simulator's (its keys sign the hook requests and the challenge tokens);
the service is the real one, in-process. Node and the npm dependency are required: without them
these tests fail, never skip (``make test`` installs the dependency with ``npm ci``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from hook_service.simulator.prelude import PreludeChallenge
from tests.simulator.support import sim_keys
from tests.support import API_KEY, USER_ID, FakeClock, bearer, hook_body, verify_like_prelude

HERE = Path(__file__).parent
SCRIPT = HERE / "stepup.mjs"
SDK = HERE / "node_modules" / "@prelude.so" / "js-sdk" / "package.json"
DOMAIN = "app-test.session.prelude.dev"
BASE = f"https://{DOMAIN}/v1/session"
METADATA = {"amount": "1500", "currency": "USD"}


def node_binary() -> str:
    """The node binary, with the pinned SDK installed; the test fails (never skips) otherwise."""
    binary = shutil.which("node")
    if binary is None:
        pytest.fail("node is required by tests/js (install Node.js; e.g. apt-get install nodejs)")
    if not SDK.is_file():
        pytest.fail("@prelude.so/js-sdk is not installed: run `make js-deps` (npm ci in tests/js)")
    assert json.loads(SDK.read_text())["version"] == "0.6.0"
    return binary


@pytest.fixture
def client(make_app: Any, tmp_path: Path) -> Any:
    """The real service, trusting the simulator's Prelude JWKS."""
    jwks = tmp_path / "sim-jwks.json"
    jwks.write_text(json.dumps(sim_keys().jwks()))
    with TestClient(make_app(prelude_jwks_file=jwks)) as test_client:
        yield test_client


def open_challenge(client: TestClient, user_id: str) -> PreludeChallenge:
    """A signed hook request as Prelude sends it; the challenge Prelude opens from the answer."""
    body = hook_body(user_id=user_id)
    answer = client.post("/hooks/stepup", content=body, headers=sim_keys().hook_headers(body))
    assert answer.status_code == 200
    decision = answer.json()
    assert [s["key"] for s in decision["steps"]] == ["verify_sms", "kyc_review"]
    return PreludeChallenge.open(decision, sub=user_id, scope="transfer:write", metadata=METADATA)


def issue(client: TestClient, request: dict[str, str]) -> str:
    """``POST /verification-token`` as the company backend calls it: the token."""
    response = client.post("/verification-token", headers=bearer(API_KEY), json=request)
    assert response.status_code == 200, response.text
    token: str = response.json()["verification_token"]
    return token


def run_sdk(clock: FakeClock, **tokens: str) -> dict[str, Any]:
    """``stepup.mjs`` with Prelude's answers ``tokens``; what the SDK did."""
    node = node_binary()
    given = {"domain": DOMAIN, "now": clock.now, "scope": "transfer:write", "metadata": METADATA}
    done = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps({**given, **tokens}),
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_sdk_finds_our_challenge_id_and_passes_our_token_on_unchanged(
    client: TestClient, clock: FakeClock
) -> None:
    keys, opened = sim_keys(), open_challenge(client, USER_ID)
    challenge_token = keys.challenge_token(opened, "kyc_review", clock.now)
    # The frontend hands the backend its current challenge token (README, "Your backend").
    verification_token = issue(client, {"challenge_token": challenge_token})
    completed = keys.challenge_token(opened, "completed", clock.now)

    sdk = run_sdk(
        clock,
        challenge_token=challenge_token,
        verification_token=verification_token,
        next_challenge_token=completed,
    )

    assert sdk["requested"] == {"ok": {"status": "review", "challenge_token": challenge_token}}
    assert sdk["continued"] == {"ok": {"challenge_token": completed}}
    sent = [(r["method"], r["url"], r["body"]) for r in sdk["requests"]]
    assert sent == [
        ("POST", f"{BASE}/stepup/request", {"scope": "transfer:write", "metadata": METADATA}),
        # The challenge token it cached under our challenge_id, and our token byte for byte.
        (
            "POST",
            f"{BASE}/stepup/continue",
            {"challenge_token": challenge_token, "verification_token": verification_token},
        ),
        # current_step "completed": the SDK ends the flow itself (contract 6).
        ("POST", f"{BASE}/refresh", {"step_up_token": completed}),
    ]
    # What the SDK showed the page, read from the challenge tokens' claims.
    steps = [
        {"order": 1, "expirationDuration": 600, "key": "verify_sms", "done": True},
        {"order": 2, "expirationDuration": 86400, "key": "kyc_review", "done": False},
    ]
    first = {
        "currentStep": "kyc_review",
        "scopeRequested": "transfer:write",
        "userId": USER_ID,
        "sessionId": opened.sid,
        "challengeId": opened.challenge_id,
        "steps": steps,
        "metadata": METADATA,
    }
    last = {**first, "currentStep": "completed", "steps": [{**s, "done": True} for s in steps]}
    assert sdk["challenges"] == [first, last]
    assert sdk["cacheAfterRequest"] == [f"prld.step-up.::{opened.challenge_id}"]
    assert sdk["cacheAfterContinue"] == []  # cleared once the flow completed
    # The token it forwarded is one Prelude accepts for this very challenge.
    claims = verify_like_prelude(
        verification_token, client.get("/.well-known/jwks.json").json(), clock.now
    )
    assert (claims["sub"], claims["challenge_id"], claims["key"]) == (
        USER_ID,
        opened.challenge_id,
        "kyc_review",
    )


def test_a_token_for_another_challenge_never_reaches_prelude(
    client: TestClient, clock: FakeClock
) -> None:
    """The SDK picks the challenge by our token's challenge_id alone: a token issued for a
    challenge this browser does not hold is refused before anything is sent."""
    keys, opened = sim_keys(), open_challenge(client, USER_ID)
    other = "chl_not_this_browsers"
    token = issue(client, {"user_id": USER_ID, "challenge_id": other, "key": "kyc_review"})
    assert jwt.decode(token, options={"verify_signature": False})["challenge_id"] == other

    sdk = run_sdk(
        clock,
        challenge_token=keys.challenge_token(opened, "kyc_review", clock.now),
        verification_token=token,
        next_challenge_token=keys.challenge_token(opened, "completed", clock.now),
    )

    assert sdk["continued"] == {
        "error": "MissingChallengeTokenError",
        "message": f"No cached challenge token found for challenge {other}",
    }
    assert [r["url"] for r in sdk["requests"]] == [f"{BASE}/stepup/request"]
    assert sdk["cacheAfterContinue"] == [f"prld.step-up.::{opened.challenge_id}"]
