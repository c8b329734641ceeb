"""Helpers of the facts tests: a fixed facts key, user agents, places, a city database."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from hook_service.facts.attempts import AttemptFactory
from hook_service.facts.base import REVIEW, Attempt, FactsStore
from hook_service.facts.device import DeviceKeys
from hook_service.facts.geo import Geo
from hook_service.facts.hashing import FactsKey
from hook_service.facts.logic import Limits
from hook_service.facts.memory import MemoryFactsStore
from hook_service.facts.redis import RedisFactsStore

KEY = FactsKey(bytes(range(100, 132)))  # test-only
SCOPE = "transfer:write"

CHROME_130_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
CHROME_131_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.86 Safari/537.36"
)
CHROME_131_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.86 Safari/537.36"
)
FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_IOS_17 = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

LONDON_IP = "81.2.69.142"  # in the test city database: GB, London
LONDON = (51.51, -0.09)
MOUNTAIN_VIEW_IP = "8.8.8.8"  # in the test city database: US, Mountain View
MOUNTAIN_VIEW = (37.39, -122.08)
DUBLIN_IP6 = "2a00:1450:4009:81e::200e"  # in the test city database: IE, Dublin
DUBLIN = (53.35, -6.26)
OTHER_IP = "1.1.1.1"  # not in the test city database; iptocc: AU


def open_store(kind: str, request: pytest.FixtureRequest, limits: Limits) -> FactsStore:
    """A ``memory``, ``redis``, ``sentinel`` or ``cluster`` facts store (on the test's private
    server, Sentinel group or Redis Cluster)."""
    if kind == "memory":
        return MemoryFactsStore(KEY, limits)
    # A generous timeout: the behaviour is under test, not the speed of a loaded CI machine.
    if kind == "sentinel":
        target = request.getfixturevalue("sentinel_deployment").target
        return RedisFactsStore(target, key=KEY, limits=limits, timeout=5)
    cluster = kind == "cluster"
    url = request.getfixturevalue("cluster_url" if cluster else "redis_url")
    return RedisFactsStore(url, key=KEY, limits=limits, timeout=5, cluster=cluster)


KINDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("sentinel", marks=pytest.mark.sentinel),
    pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.slow]),
]
"""The facts stores the behavioural suites run on."""


@functools.cache
def device_keys() -> DeviceKeys:
    """One parser for the whole run (it loads ua-parser's rule set)."""
    return DeviceKeys()


def write_city_db(path: Path) -> Path:
    """A small MaxMind-format city database (GeoLite2-City record shape) at ``path``."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    places = [
        ("81.2.69.0/24", "GB", LONDON),
        ("8.8.8.0/24", "US", MOUNTAIN_VIEW),
        ("2a00:1450::/32", "IE", DUBLIN),
    ]
    for network, country, (lat, lon) in places:
        record = {"country": {"iso_code": country}, "location": {"latitude": lat, "longitude": lon}}
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


class Requests:
    """Attempts as the hook would build them, at the fake clock's time."""

    def __init__(self, clock: Any, geo: Geo | None = None, user_id: str = "usr_1") -> None:
        self.clock = clock
        self.user_id = user_id
        self.factory = AttemptFactory(KEY, device_keys(), geo or Geo())

    def attempt(
        self,
        ip: str | None = LONDON_IP,
        ua: str | None = CHROME_130_WIN,
        *,
        scope: str = SCOPE,
        platform: str = "WEB",
    ) -> Attempt:
        signals: dict[str, Any] = {"platform": platform}
        if ip is not None:
            signals["ip"] = ip
        if ua is not None:
            signals["user_agent"] = ua
        return self.factory.attempt(scope, signals, self.clock())

    def review(self, attempt: Attempt, steps: tuple[str, ...] = (), window: float = 600) -> Attempt:
        return attempt.settled(REVIEW, steps, self.clock() + window)
