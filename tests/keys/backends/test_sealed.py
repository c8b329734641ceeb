"""The sealed key-set document: private keys encrypted, and the whole document authenticated
under the KEK, so whoever can write to Redis but holds no KEK cannot change which keys are
published or sign (re-add a revoked key, extend a retired one, promote a key early)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hook_service.keys.backends import sealed as keydoc
from hook_service.keys.backends.keyring import DecryptError, keyring
from hook_service.keys.lifecycle import initial_key_set, revoke, rotate
from tests.support import key_supply, kid_of

KEK_A = bytes(range(32))
KEK_B = bytes(range(32, 64))
NS = "hook:keys:"


def test_a_document_round_trips() -> None:
    ring = keyring([KEK_A])
    ks = rotate(initial_key_set(1000, key_supply([0, 1])), 5000, 300, key_supply([2]))
    back = keydoc.decode(keydoc.encode(ks, ring, NS), ring, {}, NS)
    assert back == ks
    assert [k.private_key.private_numbers() for k in back.keys] == [
        k.private_key.private_numbers() for k in ks.keys
    ]


def tampered(raw: str, edit: Any) -> str:
    document = json.loads(raw)
    edit(document)
    return json.dumps(document)


def test_metadata_cannot_be_edited_without_the_kek() -> None:
    ring = keyring([KEK_A])
    ks = rotate(initial_key_set(1000, key_supply([0, 1])), 5000, 300, key_supply([2]))
    raw = keydoc.encode(ks, ring, NS)

    def keep_retired(d: Any) -> None:  # a retired key published for ever
        next(k for k in d["keys"] if k["state"] == "retired")["retire_at"] = 2**40

    def promote(d: Any) -> None:  # the next key signs before its publish lead
        for k in d["keys"]:
            k["state"] = {"active": "next", "next": "active"}.get(k["state"], k["state"])

    for edit in (keep_retired, promote, lambda d: d.update(version=99)):
        for known in ({}, {k.kid: k.private_key for k in ks.keys}):  # start-up and running
            with pytest.raises(DecryptError, match="altered"):
                keydoc.decode(tampered(raw, edit), ring, known, NS)


def test_a_revoked_key_cannot_be_put_back() -> None:
    ring = keyring([KEK_A])
    before = initial_key_set(1000, key_supply([0, 1]))
    old = json.loads(keydoc.encode(before, ring, NS))
    after = revoke(before, kid_of(0), 2000, key_supply([2]))
    raw = keydoc.encode(after, ring, NS)
    entry = next(k for k in old["keys"] if k["kid"] == kid_of(0))  # from an old copy
    resurrected = tampered(
        raw, lambda d: d["keys"].append({**entry, "state": "retired", "retire_at": 2**40})
    )
    with pytest.raises(DecryptError, match="altered"):
        keydoc.decode(resurrected, ring, {}, NS)


def test_a_document_is_bound_to_its_key_set_name() -> None:
    ring = keyring([KEK_A])
    raw = keydoc.encode(initial_key_set(1000, key_supply([0, 1])), ring, "staging:keys:")
    with pytest.raises(DecryptError, match="altered"):
        keydoc.decode(raw, ring, {}, NS)


def test_any_configured_kek_verifies_and_an_unknown_one_is_named() -> None:
    ks = initial_key_set(1000, key_supply([0, 1]))
    raw = keydoc.encode(ks, keyring([KEK_A]), NS)
    assert keydoc.decode(raw, keyring([KEK_B, KEK_A]), {}, NS) == ks
    with pytest.raises(DecryptError, match="HOOK_KEY_ENCRYPTION_KEYS"):
        keydoc.decode(raw, keyring([KEK_B]), {}, NS)
    unsigned = tampered(raw, lambda d: d.pop("mac"))
    with pytest.raises(DecryptError, match="altered"):
        keydoc.decode(unsigned, keyring([KEK_A]), {}, NS)
