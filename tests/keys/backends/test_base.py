"""The key-store interface and its shared rules (keys/backends/base.py): one key-set JSON
parser, one kid check, one private-key check, and capabilities asked for by protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hook_service import errors
from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends.base import (
    EventedKeyStore,
    LockingKeyStore,
    SealedKeyStore,
    SeedableKeyStore,
    VersionedKeyStore,
    key_problem,
    key_set_from,
    parse_key_set,
)
from hook_service.keys.backends.file import FileKeyStore
from hook_service.keys.backends.keyring import keyring
from hook_service.keys.backends.redis import RedisKeyStore
from hook_service.keys.lifecycle import initial_key_set
from tests.support import TEST_KEK, FakeClock, ed25519_private_key, hook_keys, key_supply, kid_of

pytestmark = pytest.mark.anyio

CAPABILITIES = (
    LockingKeyStore,
    EventedKeyStore,
    SealedKeyStore,
    SeedableKeyStore,
    VersionedKeyStore,
)


@pytest.mark.parametrize(
    "raw", [b"{not json", b"\xff\xfe", b"[]", b'{"version": 1}', b'{"version": "1", "keys": []}']
)
def test_parse_key_set_refuses_anything_but_a_key_set_without_quoting_it(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"^not a valid key set file$"):
        parse_key_set(raw, "key set file")


def test_parse_key_set_gives_the_document_entries_and_version() -> None:
    raw = json.dumps({"format": 1, "version": 3, "keys": [{"kid": "x"}], "mac": {}})
    document, entries, version = parse_key_set(raw, "key set document")
    assert (entries, version) == ([{"kid": "x"}], 3)
    assert document["mac"] == {}


@pytest.mark.parametrize("kid", [None, 7, "short", "x" * 43 + "!", int("9" * 43)])
def test_an_entry_without_a_valid_kid_is_refused_before_any_key_is_looked_up(
    kid: object,
) -> None:
    def private_key(looked_up: str) -> object:
        raise AssertionError(f"looked up {looked_up!r}")

    with pytest.raises(ValueError, match="key entry without a valid kid"):
        key_set_from([{"kid": kid, "state": "active", "created_at": 0}], 1, private_key)  # type: ignore[arg-type]


def test_key_set_from_builds_the_set_with_each_kid_s_key() -> None:
    ks = initial_key_set(100, key_supply([0, 1]))
    records = [k.record() for k in ks.keys]
    keys = {k.kid: k.private_key for k in ks.keys}
    assert key_set_from(records, ks.version, keys.__getitem__) == ks


def test_key_problem_names_what_is_wrong() -> None:
    key = hook_keys()[0]
    assert key_problem(key) is None
    assert key_problem(key, kid_of(0)) is None
    assert key_problem(key, kid_of(1)) == f"key thumbprint does not match kid {kid_of(1)}"
    not_rsa = ed25519_private_key("prelude_ed25519.pem")
    assert key_problem(not_rsa) == "not an RSA key of at least 2048 bits"
    assert key_problem(not_rsa, kid_of(0)) == "not an RSA key of at least 2048 bits"


def test_the_file_store_has_no_capability_and_the_redis_store_has_every_one(
    tmp_path: Path,
) -> None:
    file_store = FileKeyStore(tmp_path, clock=FakeClock())
    # Constructing the Redis store connects to nothing.
    redis_store = RedisKeyStore("redis://127.0.0.1:1/0", keyring((TEST_KEK,)))
    for capability in CAPABILITIES:
        assert not isinstance(file_store, capability), capability
        assert isinstance(redis_store, capability), capability
    assert redis_store.version_key == "hook:keys:version"
    for attribute in ("encrypted", "version_key", "redis_url", "acquire_lock", "events"):
        assert not hasattr(file_store, attribute), attribute


async def test_key_admin_asks_the_store_for_a_capability_it_lacks(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path, clock=FakeClock(), new_key=key_supply([0, 1]))
    before = store.load_or_create()
    admin = KeyAdmin(store, clock=FakeClock())
    with pytest.raises(errors.EventsUnavailable, match="service log only"):
        await admin.events(None, 10)
    with pytest.raises(errors.InvalidRequest, match="Redis key store only"):
        await admin.rewrap("t")
    assert store.load() == before  # nothing written
