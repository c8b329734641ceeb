"""bench/scale.py and bench/history.py: the copied users hold their template's history under
their own key names, and the options that run the scale figures (no timing here)."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from bench import prepare
from bench.history import TEMPLATES, populate
from bench.run import _parse
from bench.scale import Sizes, label
from hook_service.facts.hashing import FactsKey
from hook_service.facts.redis import RedisFactsStore
from tests.conftest import RedisServer

FACTS_KEY_B64 = base64.b64encode(bytes(range(96, 128))).decode()  # test-only HOOK_FACTS_KEY
USERS = TEMPLATES * 2 + 3


@pytest.mark.redis
def test_copied_users_hold_their_templates_history_under_their_own_keys(
    redis_url: str, redis_server: RedisServer
) -> None:
    async def run() -> tuple[list[dict[str, Any]], list[int], list[int]]:
        await populate(redis_server.port, FACTS_KEY_B64, USERS)
        client = Redis.from_url(redis_url)
        store = RedisFactsStore(client, key=FactsKey.from_base64(FACTS_KEY_B64))
        try:
            now = time.time()
            shown = [await store.show(prepare.user_id(i), now) for i in range(USERS)]
            names = [store.keys(prepare.user_id(i)) for i in range(USERS)]
            held = [int(await client.exists(*user_names)) for user_names in names]
            ttls = [int(await client.pttl(name)) for name in names[USERS - 1]]
            assert await client.dbsize() == sum(held)
            return shown, held, ttls
        finally:
            await client.aclose()

    shown, held, ttls = asyncio.run(run())
    for index in range(TEMPLATES, USERS):
        assert shown[index] == shown[index % TEMPLATES]
        # Each user's keys are its own: the copies did not land on the templates' names.
        assert held[index] == held[index % TEMPLATES] >= 3  # history, times, latest
    # A template's own month (3 devices, 10 IPs), not an empty history.
    assert (len(shown[USERS - 1]["devices"]), len(shown[USERS - 1]["ips"])) == (3, 10)
    # The copies keep the templates' expiry (a key with a TTL never becomes persistent).
    assert all(ttl > 0 or ttl == -2 for ttl in ttls)


@pytest.mark.redis
def test_fewer_users_than_templates_are_all_templates(
    redis_url: str, redis_server: RedisServer
) -> None:
    async def run() -> list[dict[str, Any]]:
        await populate(redis_server.port, FACTS_KEY_B64, 3)
        store = RedisFactsStore(redis_url, key=FactsKey.from_base64(FACTS_KEY_B64))
        try:
            return [await store.show(prepare.user_id(i), time.time()) for i in range(4)]
        finally:
            await store.aclose()

    shown = asyncio.run(run())
    assert [len(user["devices"]) for user in shown] == [3, 3, 3, 0]


def test_counts_are_named_as_the_figures_name_them() -> None:
    assert [label(n) for n in (1_000, 100_000, 1_000_000, 19_786)] == [
        "1k",
        "100k",
        "1M",
        "19786",
    ]


def test_the_scale_figures_are_on_by_default_and_smaller_with_quick() -> None:
    assert _parse([]).scale and not _parse([]).scale_only
    assert not _parse(["--no-scale"]).scale
    assert _parse(["--scale-only"]).scale_only
    assert Sizes.full().users == (1_000, 100_000, 1_000_000)
    assert Sizes.full().pending == 1_000_000
    assert max(Sizes.quick().users) < max(Sizes.full().users)
