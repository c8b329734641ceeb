"""``app_client``: the app on each store in turn (in-memory, then a real Redis for both the
pending steps and the facts), its lifespan running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.conftest import AppFactory


@pytest.fixture(params=["memory", "redis"])
def app_client(request: pytest.FixtureRequest, make_app: AppFactory) -> Iterator[TestClient]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    with TestClient(make_app(url)) as test_client:
        yield test_client
