"""The ``store`` fixture: each :class:`~hook_service.store.base.Store` in turn, the Redis one on
the session's real server.

``clock`` is the root conftest's FakeClock: it starts far from the real time on purpose, since
RedisStore must keep Redis TTLs in the injected clock's time domain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hook_service.store.base import Store
from hook_service.store.memory import MemoryStore
from tests.store.support import ON_CLUSTER, redis_store
from tests.support import FakeClock


@pytest.fixture(
    params=[
        "memory",
        "redis",
        pytest.param("sentinel", marks=pytest.mark.sentinel),
        pytest.param("cluster", marks=ON_CLUSTER),
    ]
)
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    if request.param == "memory":
        instance: Store = MemoryStore(clock)
    elif request.param == "sentinel":
        instance = redis_store(request.getfixturevalue("sentinel_deployment").target, clock)
    else:
        url = "cluster_url" if request.param == "cluster" else "redis_url"
        instance = redis_store(request.getfixturevalue(url), clock)
    try:
        yield instance
    finally:
        await instance.aclose()
