"""The facts settings and how start-up opens the facts store (design.md "Facts")."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from hook_service import logs
from hook_service.app import create_app
from hook_service.collaborators import open_facts
from hook_service.errors import ConfigError, SettingsError, StoreUnavailable
from hook_service.facts.memory import MemoryFactsStore
from hook_service.facts.redis import RedisFactsStore
from hook_service.settings import Settings
from tests.conftest import AppFactory
from tests.support import PRELUDE_JWKS_FILE, TEST_FACTS_KEY

BASE = {"HOOK_PRELUDE_JWKS_FILE": str(PRELUDE_JWKS_FILE)}
KEY = base64.b64encode(bytes(range(32))).decode()
# HOOK_REDIS_URL needs a KEK (verification tokens are sealed at rest) and names a key store.
REDIS = {
    "HOOK_REDIS_URL": "redis://127.0.0.1:1/0",
    "HOOK_KEYSTORE": "file",
    "HOOK_KEY_ENCRYPTION_KEYS": base64.b64encode(bytes(range(64, 96))).decode(),
}


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings.from_env(BASE)
    assert settings.facts_key is None
    assert (settings.facts_retention, settings.facts_flag_ttl) == (30 * 86400, 7 * 86400)
    assert (settings.geoip_db, settings.replay_window) == (None, 600)


@pytest.mark.parametrize("value", ["c2hvcnQ=", "not base64!", base64.b64encode(b"x" * 33).decode()])
def test_a_bad_facts_key_is_refused_by_name_never_echoed(value: str) -> None:
    with pytest.raises(SettingsError, match="HOOK_FACTS_KEY") as caught:
        Settings.from_env({**BASE, "HOOK_FACTS_KEY": value})
    assert value not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOOK_FACTS_RETENTION", "12h"),  # attempts_24h needs a day of history
        ("HOOK_FACTS_RETENTION", "400d"),
        ("HOOK_FACTS_FLAG_TTL", "10s"),
        ("HOOK_REPLAY_WINDOW", "400d"),
        ("HOOK_REPLAY_WINDOW", "soon"),
    ],
)
def test_out_of_range_durations_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, name: value})


def test_redis_without_a_facts_key_fails_at_start_up_naming_it() -> None:
    settings = Settings.from_env({**BASE, **REDIS})
    with pytest.raises(SettingsError, match="HOOK_FACTS_KEY is required with HOOK_REDIS_URL"):
        open_facts(settings)


def test_the_store_follows_the_redis_url() -> None:
    memory, _ = open_facts(Settings.from_env(BASE))
    assert isinstance(memory, MemoryFactsStore)
    env = {**BASE, **REDIS}
    env["HOOK_FACTS_KEY"] = KEY
    shared, _ = open_facts(Settings.from_env(env))
    assert isinstance(shared, RedisFactsStore)


def test_an_unreadable_city_database_fails_at_start_up_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "city.mmdb"
    bad.write_bytes(b"not a database")
    settings = Settings.from_env({**BASE, "HOOK_GEOIP_DB": str(bad)})
    with pytest.raises(ConfigError, match="HOOK_GEOIP_DB"):
        open_facts(settings)


class _Unanswered(MemoryFactsStore):
    """A facts store whose ping fails, and that counts its pings."""

    pings = 0

    async def ping(self) -> None:
        self.pings += 1
        raise StoreUnavailable("the facts store is unavailable (test)")


def test_start_up_pings_the_stores_and_starts_even_when_one_does_not_answer(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    facts = _Unanswered(TEST_FACTS_KEY)
    app = create_app(settings, facts=facts)
    with caplog.at_level(logging.WARNING, logger=logs.SERVICE), TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    assert facts.pings == 1
    warned = [r.getMessage() for r in caplog.records if r.name == logs.SERVICE]
    assert "the facts did not answer at start-up (the facts store is unavailable (test))" in warned


@pytest.mark.slow
def test_start_up_reads_the_cluster_slot_map_before_the_first_request(
    make_app: AppFactory, cluster_url: str
) -> None:
    app = make_app(cluster_url)
    services = app.state.services
    facts_client, store_client = services.facts._redis, services.store.store._redis
    assert not facts_client._mapped and not store_client._mapped
    with TestClient(app):
        # Mapped by the start-up, not by the first hook call inside its 0.8 s budget.
        assert facts_client._mapped and store_client._mapped
