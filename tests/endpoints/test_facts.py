"""POST /hooks/stepup with facts, end to end through the app (issue 11 points 1, 3, 4, 5):
replays in the log and in the counters, cities from HOOK_GEOIP_DB reaching a rule, and no raw
IP or user agent in the log or in Redis. Against the memory stores and a real Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from hook_service.facts.base import Proof
from hook_service.services import Services
from tests.conftest import AppFactory
from tests.facts.support import (
    CHROME_130_WIN,
    LONDON_IP,
    MOUNTAIN_VIEW_IP,
    SAFARI_IOS_17,
    write_city_db,
)
from tests.support import USER_ID, FakeClock, hook_body, sign_hook

CITY_POLICY = {
    "version": 1,
    "scopes": {
        "transfer:write": {
            "rules": [
                {
                    "name": "impossible-travel",
                    "when": "facts.travel_kmh > 900.0",
                    "status": "block",
                },
                {
                    "name": "known-country",
                    "when": 'facts.country == "US" && !facts.country_known',
                    "status": "review",
                    "steps": ["otp"],
                },
                {
                    "name": "in-gb",
                    "when": 'facts.country == "GB"',
                    "status": "review",
                    "steps": ["otp"],
                },
                {"name": "elsewhere", "status": "block"},
            ]
        }
    },
}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def redis_or_none(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


def body_from(ip: str, ua: str, **changes: Any) -> bytes:
    data = json.loads(hook_body(**changes))
    data["signals"] = {"ip": ip, "user_agent": ua, "platform": "WEB"}
    return json.dumps(data).encode()


def services(client: TestClient) -> Services:
    found: Services = client.app.state.services  # type: ignore[attr-defined]
    return found


def settle(client: TestClient) -> None:
    """Wait for the app's background facts writes (settle, record)."""
    assert client.portal is not None
    client.portal.call(services(client).history.background.drain)


@pytest.fixture
def app_client(make_app: AppFactory, redis_or_none: str | None) -> Iterator[TestClient]:
    with TestClient(make_app(redis_or_none)) as client:
        yield client


def test_a_replayed_request_is_answered_again_logged_and_not_counted(
    app_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = body_from(LONDON_IP, CHROME_130_WIN, amount="20")
    headers = sign_hook(body)  # one capture, replayed
    with caplog.at_level(logging.INFO, logger="hook_service.access"):
        first = app_client.post("/hooks/stepup", content=body, headers=headers)
        settle(app_client)
        replays = [
            app_client.post("/hooks/stepup", content=body, headers=headers) for _ in range(12)
        ]
    assert first.headers["x-hook-rule"] == "new-device-new-country"
    assert {(r.headers["x-hook-rule"], r.text) for r in replays} == {
        (first.headers["x-hook-rule"], first.text)
    }
    decisions = [
        r.__dict__["fields"]
        for r in caplog.records
        if r.name == "hook_service.access" and "decision" in r.__dict__["fields"]
    ]
    assert len(decisions) == 13
    assert decisions[0].get("replay") is None
    assert all(line["replay"] is True for line in decisions[1:])
    # Twelve replays would pass the example policy's velocity rule (10 an hour) if counted:
    # a fresh signature over the same body is a new attempt, decided as the first was.
    settle(app_client)
    fresh = app_client.post("/hooks/stepup", content=body, headers=sign_hook(body))
    assert fresh.headers["x-hook-rule"] == "new-device-new-country"


def test_raw_ips_and_user_agents_never_reach_the_log_or_redis(
    make_app: AppFactory, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sent = [
        (LONDON_IP, CHROME_130_WIN),
        (MOUNTAIN_VIEW_IP, SAFARI_IOS_17),
        ("2001:db8::7", "curl/8.5"),
    ]
    with caplog.at_level(logging.DEBUG), TestClient(make_app(redis_url)) as client:
        for ip, ua in sent:
            for amount in ("20", "1500"):
                body = body_from(ip, ua, amount=amount)
                assert (
                    client.post("/hooks/stepup", content=body, headers=sign_hook(body)).status_code
                    == 200
                )
            body = body_from(ip, ua, scope="profile:read")
            client.post("/hooks/stepup", content=body, headers=sign_hook(body))
        settle(client)
    log = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    stored = "\n".join(redis_contents(redis_url))
    assert ":r" in stored and "}:h" in stored  # replay records and history were stored
    for ip, ua in sent:
        for needle in (ip, ua, ua.split()[0]):
            assert needle not in log
            assert needle not in stored


def redis_contents(url: str) -> Iterator[str]:
    """Every key and value in the Redis at ``url``, as text (DUMP may compress: read them)."""
    raw = redis.Redis.from_url(url, decode_responses=True)
    try:
        for key in raw.scan_iter("*"):
            kind = raw.type(key)
            yield key
            if kind == "hash":
                yield from (f"{k!s}={v!s}" for k, v in raw.hgetall(key).items())
            elif kind == "list":
                yield from (str(item) for item in raw.lrange(key, 0, -1))
            elif kind == "string":
                yield f"{raw.get(key)!s}"
            else:
                raise AssertionError(f"unexpected {kind!r} at {key!r}")
    finally:
        raw.close()


def test_cities_reach_the_policy_as_country_and_travel_speed(
    make_app: AppFactory, redis_or_none: str | None, tmp_path: Path, clock: FakeClock
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps(CITY_POLICY))
    city_db = write_city_db(tmp_path / "cities.mmdb")
    app = make_app(redis_or_none, geoip_db=city_db, policy_file=policy)
    with TestClient(app) as client:

        def rule(ip: str) -> str:
            body = body_from(ip, CHROME_130_WIN, amount="20")
            response = client.post("/hooks/stepup", content=body, headers=sign_hook(body))
            assert response.status_code == 200
            settle(client)
            return str(response.headers["x-hook-rule"])

        assert rule(LONDON_IP) == "in-gb"  # country from the city database, no travel yet
        assert client.portal is not None
        proved = client.portal.call(
            services(client).facts.prove, USER_ID, Proof("transfer:write"), clock()
        )
        assert proved  # a verified step-up in London (POST /outcomes does this)
        clock.advance(3600)
        # London -> Mountain View (8,600 km) in an hour.
        assert rule(MOUNTAIN_VIEW_IP) == "impossible-travel"
        clock.advance(30 * 3600)  # 30 h later the same trip is plausible (~290 km/h)
        assert rule(MOUNTAIN_VIEW_IP) == "known-country"


def test_the_eleventh_request_in_an_hour_is_blocked(
    app_client: TestClient, clock: FakeClock
) -> None:
    body = body_from(LONDON_IP, CHROME_130_WIN, amount="20")
    rules = []
    for _ in range(11):  # each freshly signed, as Prelude signs each request
        rules.append(app_client.post("/hooks/stepup", content=body, headers=sign_hook(body)))
        settle(app_client)
        clock.advance(60)
    assert {r.headers["x-hook-rule"] for r in rules[:10]} == {"new-device-new-country"}
    assert rules[10].headers["x-hook-rule"] == "velocity"
    assert rules[10].json()["status"] == "block"
    clock.advance(3600)
    later = app_client.post("/hooks/stepup", content=body, headers=sign_hook(body))
    assert later.headers["x-hook-rule"] == "new-device-new-country"
