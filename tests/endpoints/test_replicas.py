"""Several app instances on one Redis key store (HOOK_KEYSTORE=redis): one key set, every
replica, within 1 s; revocation; the audit endpoint; scheduled rotation by exactly one replica.
The tests on ``two`` run on one Redis and on the three-master Redis Cluster
(``HOOK_REDIS_CLUSTER``): hooks recording custom steps, tokens, rotations and revocations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from hook_service.errors import KeyStoreError, SettingsError
from hook_service.keys.backends.base import KeyStore
from hook_service.keys.backends.keyring import fingerprint
from hook_service.keys.lifecycle import PUBLISH_LEAD
from tests.store.support import ON_CLUSTER
from tests.support import ADMIN_TOKEN, API_KEY, TEST_KEK, FakeClock, bearer, mint_token, wait_for

JWKS = "/.well-known/jwks.json"


def kid_in(body: Any) -> str:
    kid: str = jwt.get_unverified_header(body["verification_token"])["kid"]
    assert kid == body["kid"]
    return kid


def kids(client: TestClient) -> set[str]:
    return {key["kid"] for key in client.get(JWKS).json()["keys"]}


def admin(client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
    return client.request(method, path, headers=bearer(ADMIN_TOKEN), **kwargs)


@pytest.fixture(params=["single", pytest.param("cluster", marks=ON_CLUSTER)])
def two(make_app: Any, request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, TestClient]]:
    redis_url = request.getfixturevalue(
        "cluster_url" if request.param == "cluster" else "redis_url"
    )
    with ExitStack() as stack:
        a = stack.enter_context(TestClient(make_app(redis_url, keystore="redis")))
        b = stack.enter_context(TestClient(make_app(redis_url, keystore="redis")))
        yield a, b


def test_a_rotation_through_a_reaches_b_within_a_second(
    two: tuple[TestClient, TestClient], clock: FakeClock
) -> None:
    a, b = two
    assert a.get(JWKS).json() == b.get(JWKS).json()
    clock.advance(PUBLISH_LEAD)
    rotated = admin(a, "POST", "/admin/keys/rotate")
    assert rotated.status_code == 200 and "warning" not in rotated.json()
    new_active = next(k["kid"] for k in rotated.json()["keys"] if k["state"] == "active")
    wait_for(lambda: b.get(JWKS).json() == a.get(JWKS).json())
    status, body = mint_token(b, "usr_after_rotation")
    assert status == 200 and kid_in(body) == new_active


def test_a_revoke_through_a_is_honoured_by_b_at_once(
    two: tuple[TestClient, TestClient], clock: FakeClock
) -> None:
    a, b = two
    status, body = mint_token(b, "usr_before")
    old = kid_in(body)
    revoked = admin(a, "POST", f"/admin/keys/{old}/revoke")
    assert revoked.status_code == 200
    assert "10 minutes" in revoked.json()["warning"]
    assert old not in {k["kid"] for k in revoked.json()["keys"]}
    assert old not in kids(a)  # the replica that handled it: immediately
    # B may not have had the message yet, but it never signs with the revoked key: it checks
    # the shared version before signing.
    status, body = mint_token(b, "usr_after")
    assert status == 200 and kid_in(body) != old
    wait_for(lambda: old not in kids(b))
    assert b.get(JWKS).json() == a.get(JWKS).json()


@pytest.mark.parametrize("steps", ["on the key set's Redis", "on another Redis"])
def test_b_never_signs_with_a_revoked_key_even_without_the_change_message(
    make_app: Any, redis_url: str, redis_server_factory: Any, steps: str
) -> None:
    # create_app takes the store and the key store separately. On one Redis the claim script
    # checks the key set's version; on two it cannot, and the endpoint re-reads the set.
    keys_url = redis_url if steps == "on the key set's Redis" else redis_server_factory().url
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(
                TestClient(make_app(keys_url, keystore="redis", store_url=redis_url))
            )
            for _ in range(2)
        )
        status, body = mint_token(b, "usr_before")
        assert status == 200
        old = kid_in(body)
        assert b.portal is not None
        watched: KeyStore = b.app.state.services.keys  # type: ignore[attr-defined]
        b.portal.call(watched.aclose)  # B's watcher stops: it hears of no change from now on
        assert admin(a, "POST", f"/admin/keys/{old}/revoke").status_code == 200
        assert old in kids(b)  # B has not applied the revocation to its JWKS yet ...
        status, body = mint_token(b, "usr_after")
        assert status == 200 and kid_in(body) != old  # ... but checked before signing


def test_a_token_of_a_revoked_key_is_not_handed_out_again(
    two: tuple[TestClient, TestClient],
) -> None:
    a, b = two
    status, body = mint_token(b, "usr_retry")
    assert status == 200
    old = kid_in(body)
    assert admin(a, "POST", f"/admin/keys/{old}/revoke").status_code == 200
    # The same challenge asks again: the stored token (signed by the revoked key) must not
    # be re-sent, by either replica.
    request = {"user_id": "usr_retry", "challenge_id": "chl-usr_retry", "key": "kyc_review"}
    for client in (b, a):
        again = client.post("/verification-token", headers=bearer(API_KEY), json=request)
        assert (again.status_code, again.json()["error"]) == (409, "step_already_used")
        assert "revoked" in again.json()["detail"]


def test_audit_events_name_the_admin_token_by_its_label(
    make_app: Any, redis_url: str, clock: FakeClock
) -> None:
    other = "second-admin-token-0123456789"
    app = make_app(
        redis_url,
        keystore="redis",
        admin_tokens=(ADMIN_TOKEN, other),
        admin_token_labels=("ops", "oncall"),
    )
    with TestClient(app) as client:
        clock.advance(PUBLISH_LEAD)
        rotated = client.post("/admin/keys/rotate", headers=bearer(other))
        assert rotated.status_code == 200
        revoked_kid = next(k["kid"] for k in rotated.json()["keys"] if k["state"] == "next")
        assert admin(client, "POST", f"/admin/keys/{revoked_kid}/revoke").status_code == 200
        events = admin(client, "GET", "/admin/keys/events").json()["events"]
    actors = {e["event"]: e["actor"] for e in events if e["actor"].startswith("admin")}
    assert actors["activated"] == "admin:oncall"
    assert actors["revoked"] == "admin:ops"
    assert not any(ADMIN_TOKEN in str(e) or other in str(e) for e in events)


def test_forced_rotation_warns(two: tuple[TestClient, TestClient]) -> None:
    a, _ = two
    early = admin(a, "POST", "/admin/keys/rotate")
    assert (early.status_code, early.json()["error"]) == (409, "rotation_too_early")
    forced = admin(a, "POST", "/admin/keys/rotate", json={"force": True})
    assert forced.status_code == 200
    assert "refetch" in forced.json()["warning"]


def test_key_events_page_through_the_audit_stream(
    two: tuple[TestClient, TestClient], clock: FakeClock
) -> None:
    a, b = two
    clock.advance(PUBLISH_LEAD)
    admin(a, "POST", "/admin/keys/rotate")
    everything = admin(b, "GET", "/admin/keys/events").json()
    assert everything["next"] is None
    rotation = [e for e in everything["events"] if e["actor"] == "admin token #1"]
    assert [e["event"] for e in rotation] == ["created", "activated", "retired"]
    assert {e["replica"] for e in rotation} == {"replica-1"}
    assert all(e["time"] == int(clock()) and e["version"] == 2 for e in rotation)
    first = admin(b, "GET", "/admin/keys/events?limit=2").json()
    assert [e["id"] for e in first["events"]] == [e["id"] for e in everything["events"][:2]]
    rest = admin(b, "GET", f"/admin/keys/events?after={first['next']}&limit=100").json()
    assert first["events"] + rest["events"] == everything["events"]
    assert rest["next"] is None
    last = admin(b, "GET", f"/admin/keys/events?after={2**64 - 1}-{2**64 - 1}").json()
    assert last == {"events": [], "next": None}  # no id can follow the largest one
    for bad in ("limit=0", "limit=x", "limit=1001", "after=zzz", "colour=red"):
        response = admin(b, "GET", f"/admin/keys/events?{bad}")
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert b.get("/admin/keys/events").status_code == 401


@pytest.mark.parametrize(
    "bad",
    [
        "limit=%C2%B2",  # '²': str.isdigit() says yes, int() says no
        "limit=%D9%A1",  # an Arabic-Indic one
        "after=99999999999999999999-0",  # past 2**64: Redis refuses the id
    ],
)
def test_a_bad_events_query_is_a_400_and_does_not_stop_signing(
    two: tuple[TestClient, TestClient], bad: str
) -> None:
    _, b = two
    response = admin(b, "GET", f"/admin/keys/events?{bad}")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    # An audit query is not the key set: it must not mark the key set unreadable.
    assert b.get("/readyz").json()["checks"]["keys"] == "ok"
    status, body = mint_token(b, "usr_after_bad_query")
    assert status == 200 and body["kid"]


def test_key_events_with_the_file_store_say_where_they_are(client: TestClient) -> None:
    response = admin(client, "GET", "/admin/keys/events")
    assert response.status_code == 404
    assert response.json()["error"] == "events_unavailable"
    assert "log" in response.json()["detail"]


@pytest.mark.parametrize("two", ["single"], indirect=True)  # pauses the one server
def test_readyz_reports_stale_keys_while_redis_is_down(
    two: tuple[TestClient, TestClient], redis_server: Any
) -> None:
    a, _ = two
    served = a.get(JWKS).json()
    redis_server.pause()
    try:
        wait_for(lambda: a.get("/readyz").json()["checks"]["keys"] == "stale", within=10)
        assert a.get(JWKS).json() == served  # the last good set keeps being published
        # Signing stops with a JSON 503, not a 500 (the unseen change may be a revocation).
        request = {"user_id": "usr_down", "challenge_id": "chl-down", "key": "kyc_review"}
        refused = a.post("/verification-token", headers=bearer(API_KEY), json=request)
        assert (refused.status_code, refused.json()["error"]) == (503, "key_store_unavailable")
    finally:
        redis_server.resume()
    wait_for(lambda: a.get("/readyz").status_code == 200, within=10)


def rotated_once(schedulers: list[Any], apps: list[Any], rotations: int) -> None:
    """Wait for the ``rotations``-th scheduled rotation to land everywhere, then for every
    scheduler to look again three times, and check that nobody rotated a second time."""
    wait_for(lambda: sum(s.rotations for s in schedulers) == rotations, within=5)
    version = rotations + 1
    wait_for(lambda: all(app.state.services.keys.current().version == version for app in apps))
    seen = [s.checks for s in schedulers]
    wait_for(lambda: all(s.checks >= n + 3 for s, n in zip(schedulers, seen, strict=True)), 5)
    assert sum(s.rotations for s in schedulers) == rotations


def test_scheduled_rotation_happens_once_per_interval(
    make_app: Any, redis_url: str, clock: FakeClock
) -> None:
    interval = 86400
    apps = [make_app(redis_url, keystore="redis", key_rotation_interval=interval) for _ in range(3)]
    schedulers = [app.state.services.scheduler for app in apps]
    for scheduler in schedulers:
        scheduler.tick = 0.02
    with ExitStack() as stack:
        clients = [stack.enter_context(TestClient(app)) for app in apps]
        for round_ in (1, 2, 3):
            clock.advance(interval)
            rotated_once(schedulers, apps, round_)
        events = admin(clients[0], "GET", "/admin/keys/events").json()["events"]
    activated = [e for e in events if e["event"] == "activated" and e["actor"] == "scheduler"]
    assert len(activated) == 3
    assert [e["version"] for e in activated] == [2, 3, 4]


def test_start_up_refuses_a_kek_that_cannot_decrypt_the_stored_keys(
    make_app: Any, redis_url: str
) -> None:
    make_app(redis_url, keystore="redis")  # creates the key set under TEST_KEK
    other = bytes(range(1, 33))
    with pytest.raises(KeyStoreError) as caught:
        make_app(redis_url, keystore="redis", key_encryption_keys=(other,))
    assert "HOOK_KEY_ENCRYPTION_KEYS cannot decrypt the stored signing keys" in str(caught.value)
    assert fingerprint(TEST_KEK) in str(caught.value)
    # With the old KEK listed after the new one, the replica starts (KEK rotation).
    app = make_app(redis_url, keystore="redis", key_encryption_keys=(other, TEST_KEK))
    assert app.state.services.keys.current().version == 1


def test_start_up_refuses_the_redis_key_store_without_a_kek(make_app: Any, redis_url: str) -> None:
    with pytest.raises(SettingsError, match="HOOK_KEY_ENCRYPTION_KEYS is required"):
        make_app(redis_url, keystore="redis", key_encryption_keys=())
