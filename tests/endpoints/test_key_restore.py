"""Redis restarted empty under running replicas (HOOK_KEYSTORE=redis, no persistence): they
restore the key set and sign again within about a second, with the same JWKS and an audit
trail that says so; a replica started meanwhile takes their set instead of making a new one."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import ExitStack
from itertools import count
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import RedisServer
from tests.support import (
    ADMIN_TOKEN,
    PROPAGATION,
    FakeClock,
    bearer,
    mint_token,
    verify_like_prelude,
    wait_for,
)

JWKS = "/.well-known/jwks.json"
_users = count()


def jwks(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get(JWKS).json()
    return document


def keys_ready(client: TestClient) -> bool:
    """Whether ``/readyz`` says the key set is readable."""
    return bool(client.get("/readyz").json()["checks"]["keys"] == "ok")


def signs(client: TestClient) -> bool:
    """One hook and its token through ``client``: whether a token came back."""
    status, _ = mint_token(client, f"usr_restore_{next(_users)}")
    return status == 200


@pytest.fixture
def two(make_app: Any, redis_url: str, clock: FakeClock) -> Iterator[tuple[TestClient, TestClient]]:
    with ExitStack() as stack:
        a = stack.enter_context(TestClient(make_app(redis_url, keystore="redis")))
        b = stack.enter_context(TestClient(make_app(redis_url, keystore="redis")))
        # A rotation first: a retired key is published too, and the set is at version 2.
        rotated = a.post("/admin/keys/rotate", headers=bearer(ADMIN_TOKEN), json={"force": True})
        assert rotated.status_code == 200
        wait_for(lambda: jwks(b) == jwks(a))
        yield a, b


def test_replicas_restore_an_emptied_redis_and_sign_again(
    two: tuple[TestClient, TestClient], redis_server: RedisServer, clock: FakeClock
) -> None:
    a, b = two
    published = jwks(a)
    assert len(published["keys"]) == 3
    redis_server.stop()
    wait_for(lambda: not signs(a) and not signs(b), within=5)  # the outage is noticed
    redis_server.start()  # no persistence: it comes back empty
    # Within about a second both replicas have restored the set (one wrote it) and sign.
    # One poll (0.5 s) after Redis answers again; the rest is room for a shared CPU.
    wait_for(lambda: signs(a) and signs(b), within=1.5 * PROPAGATION)
    for client in (a, b):
        assert jwks(client) == published  # every published kid is still there
        # A poll on a pooled connection from before the restart may still fail once and
        # mark the set stale for one poll; the next good poll clears it.
        wait_for(functools.partial(keys_ready, client))
        status, body = mint_token(client, f"usr_after_{next(_users)}")
        assert status == 200
        claims = verify_like_prelude(body["verification_token"], jwks(client), clock())
        assert claims["sub"].startswith("usr_after_")
    events = a.get("/admin/keys/events", headers=bearer(ADMIN_TOKEN)).json()["events"]
    restored = [e for e in events if e["event"] == "restored"]
    assert sorted(e["kid"] for e in restored) == sorted(k["kid"] for k in published["keys"])
    assert {e["version"] for e in restored} == {2} and len({e["replica"] for e in restored}) == 1
    # Every kind on the page, restored included, is one the OpenAPI document promises.
    schema = a.get("/openapi.json").json()["components"]["schemas"]["KeyEvents"]
    kinds = schema["properties"]["events"]["items"]["properties"]["event"]["enum"]
    assert {e["event"] for e in events} <= set(kinds) and "restored" in kinds


def test_a_replica_started_on_the_emptied_redis_takes_the_running_set(
    two: tuple[TestClient, TestClient],
    make_app: Any,
    redis_url: str,
    redis_server: RedisServer,
) -> None:
    a, _ = two
    published = jwks(a)
    redis_server.stop()
    redis_server.start()
    # Started at once, before or after the running replicas noticed: it ends up with their
    # set, and a set it might have created meanwhile gives way to theirs.
    with TestClient(make_app(redis_url, keystore="redis")) as started:
        wait_for(lambda: jwks(started) == published and signs(started), within=1.5 * PROPAGATION)
        wait_for(lambda: signs(a))
        assert jwks(a) == published
