"""The key invariant under load (issue: "signing keys for several instances", point 7).

Two instances on one Redis key store issue tokens continuously while forced and scheduled
rotations and a revocation happen. Every token must carry a kid that both instances' JWKS
served just before it was issued, verify against that key, and never be signed by the
revoked key once the revocation has returned."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.testclient import TestClient

from tests.support import ADMIN_TOKEN, PROPAGATION, FakeClock, bearer, mint_token, wait_for

JWKS = "/.well-known/jwks.json"
INTERVAL = 86400
SETTLE = PROPAGATION + 0.3  # between key events: the promised propagation bound, plus margin


@dataclass
class Issued:
    started: float
    token: str
    kid: str
    jwks: dict[str, dict[str, Any]]  # kid -> JWK, served by either instance before or after
    in_a: bool
    in_b: bool


def served(client: TestClient) -> dict[str, dict[str, Any]]:
    return {key["kid"]: key for key in client.get(JWKS).json()["keys"]}


def issue_until(
    stop: threading.Event,
    me: TestClient,
    other: TestClient,
    name: str,
    out: list[Issued],
    refused: list[int],
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        before_me, before_other = served(me), served(other)
        started = time.monotonic()
        status, body = mint_token(me, f"usr_{name}_{n}")
        after_me, after_other = served(me), served(other)
        if status != 200:
            # A fake-clock jump can expire the step between hook and claim (404), and a claim
            # that raced the revocation is refused (409); neither hands out a token.
            assert status in (404, 409), body
            refused.append(status)
            continue
        kid = jwt.get_unverified_header(body["verification_token"])["kid"]
        out.append(
            Issued(
                started,
                body["verification_token"],
                kid,
                {**before_me, **after_me, **before_other, **after_other},
                # Served before the request: a verifier that fetched either JWKS before the
                # token existed already knows its kid (a next key is published a change ahead).
                kid in before_me,
                kid in before_other,
            )
        )


def test_no_token_ever_carries_an_unpublished_or_revoked_kid(
    make_app: Any, redis_url: str, clock: FakeClock
) -> None:
    apps = [make_app(redis_url, keystore="redis", key_rotation_interval=INTERVAL) for _ in "ab"]
    for app in apps:
        app.state.services.scheduler.tick = 0.02
    issued: list[Issued] = []
    refused: list[int] = []
    stop = threading.Event()
    with ExitStack() as stack:
        a, b = (stack.enter_context(TestClient(app)) for app in apps)
        workers = [
            threading.Thread(target=issue_until, args=(stop, a, b, "a", issued, refused)),
            threading.Thread(target=issue_until, args=(stop, b, a, "b", issued, refused)),
        ]
        for worker in workers:
            worker.start()
        try:

            def versions() -> set[int]:
                return {app.state.services.keys.current().version for app in apps}

            time.sleep(SETTLE)
            forced = a.post("/admin/keys/rotate", headers=bearer(ADMIN_TOKEN), json={"force": True})
            assert forced.status_code == 200 and "warning" in forced.json()
            time.sleep(SETTLE)
            clock.advance(INTERVAL)  # a scheduled rotation, by one of the two schedulers
            wait_for(lambda: versions() == {3}, within=5)
            time.sleep(SETTLE)
            forced = b.post("/admin/keys/rotate", headers=bearer(ADMIN_TOKEN), json={"force": True})
            assert forced.status_code == 200
            time.sleep(SETTLE)
            victim = next(k["kid"] for k in forced.json()["keys"] if k["state"] == "active")
            revoked = a.post(f"/admin/keys/{victim}/revoke", headers=bearer(ADMIN_TOKEN))
            revoke_returned = time.monotonic()
            assert revoked.status_code == 200
            time.sleep(SETTLE)
            clock.advance(INTERVAL)
            wait_for(lambda: versions() == {6}, within=5)
            time.sleep(SETTLE)
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=30)
    scheduled = sum(app.state.services.scheduler.rotations for app in apps)
    assert scheduled == 2
    assert len(issued) >= 20, f"only {len(issued)} tokens issued ({len(refused)} refused)"
    signers = {token.kid for token in issued}
    assert len(signers) >= 4  # the load really spanned the rotations
    for token in issued:
        # The kid was in both instances' JWKS before the token was issued ...
        assert token.in_a and token.in_b, token
        # ... and the token verifies with the key published under it.
        key = jwt.PyJWK(token.jwks[token.kid]).key
        jwt.decode(
            token.token,
            key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
        if token.started > revoke_returned:
            assert token.kid != victim, "signed by a revoked key after the revoke returned"
    assert any(t.started > revoke_returned for t in issued)
    assert any(t.kid == victim and t.started < revoke_returned for t in issued)
