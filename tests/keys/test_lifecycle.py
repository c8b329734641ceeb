"""Key life cycle (pure): thumbprints, states, rotation, revocation, JWKS. Keys come from
tests/keys/hook_rsa_*.pem."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from hook_service import errors
from hook_service.keys import lifecycle as keys
from hook_service.keys.lifecycle import SigningKey
from tests.support import (
    b64u_int,
    hook_keys,
    key_supply,
    kid_of,
    no_new_key,
    private_strings,
)

TTL = 300
RETIRE_DELAY = TTL + 600 + 60  # token TTL + Prelude JWKS cache (contract 5) + skew
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")
B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


# --- thumbprint and key generation --------------------------------------------------------


def test_thumbprint_rfc7638_example() -> None:
    # RFC 7638 sec. 3.1: the example RSA key and its SHA-256 thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    public_key = rsa.RSAPublicNumbers(e=65537, n=b64u_int(n)).public_key()
    assert keys.thumbprint(public_key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("index", range(4))
def test_thumbprint_matches_joserfc(index: int) -> None:
    public_key = hook_keys()[index].public_key()
    expected = RSAKey.import_key(public_key).thumbprint()
    assert keys.thumbprint(public_key) == expected


def test_generate_rsa_key_is_2048_bit_with_e_65537() -> None:
    key = keys.generate_rsa_key()
    assert key.key_size == 2048
    assert key.public_key().public_numbers().e == 65537


# --- pure life cycle ------------------------------------------------------------------------


def test_initial_key_set_has_active_and_next(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.initial_key_set(1000, new_key)
    assert ks.version == 1
    assert (ks.active.kid, ks.next.kid) == (kid_of(0), kid_of(1))
    assert (ks.active.activated_at, ks.next.activated_at) == (1000, None)
    assert ks.active.created_at == ks.next.created_at == 1000
    assert [k.kid for k in ks.published(10**12)] == [kid_of(0), kid_of(1)]


def test_public_jwk_has_only_public_members(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.rotate(keys.initial_key_set(1000, new_key), 2000, TTL, new_key)
    jwks = ks.jwks(2000)
    assert len(jwks["keys"]) == 3  # next, active and the retired one
    for jwk in jwks["keys"]:
        assert list(jwk) == ["kty", "kid", "use", "alg", "n", "e"]
        assert (jwk["kty"], jwk["use"], jwk["alg"]) == ("RSA", "sig", "RS256")
        assert not set(PRIVATE_MEMBERS) & set(jwk)
        key = ks.get(jwk["kid"])
        assert key is not None
        public = key.private_key.public_key().public_numbers()
        for member in ("n", "e"):  # base64url, no padding, round-trips (RFC 7518 sec. 6.3.1)
            assert B64URL.fullmatch(jwk[member])
        assert (b64u_int(jwk["n"]), b64u_int(jwk["e"])) == (public.n, public.e)
        assert jwk["e"] == "AQAB"
        assert base64.urlsafe_b64decode(jwk["n"] + "==")[0] != 0  # minimal octets
        text = json.dumps(jwks)
        for secret in private_strings(key.private_key):
            assert secret not in text


def test_rotate_moves_states_and_sets_retire_at(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.initial_key_set(1000, new_key)
    rotated = keys.rotate(ks, 5000, TTL, new_key)
    assert rotated.version == 2
    assert rotated.active.kid == kid_of(1)
    assert rotated.active.activated_at == 5000
    assert (rotated.next.kid, rotated.next.created_at) == (kid_of(2), 5000)
    old = rotated.get(kid_of(0))
    assert old is not None
    assert (old.state, old.retire_at, old.activated_at) == ("retired", 5000 + RETIRE_DELAY, 1000)
    assert ks.active.kid == kid_of(0)  # the input is not modified


def test_retired_key_published_until_retire_at(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.rotate(keys.initial_key_set(1000, new_key), 5000, TTL, new_key)
    retire_at = 5000 + RETIRE_DELAY

    def kids(now: int) -> set[str]:
        return {jwk["kid"] for jwk in ks.jwks(now)["keys"]}

    assert kid_of(0) in kids(retire_at - 1)
    assert kids(retire_at) == {kid_of(1), kid_of(2)}


def test_rotate_drops_retired_keys_past_retire_at(
    new_key: Callable[[], rsa.RSAPrivateKey],
) -> None:
    ks = keys.rotate(keys.initial_key_set(1000, new_key), 5000, TTL, new_key)
    soon = keys.rotate(ks, 5001, TTL, key_supply([3]), force=True)
    assert [k.state for k in soon.keys].count("retired") == 2  # key 0 still published
    later = keys.rotate(ks, 5000 + RETIRE_DELAY, TTL, key_supply([3]))
    assert later.get(kid_of(0)) is None
    assert [(k.kid, k.state) for k in later.keys] == [
        (kid_of(2), "active"),
        (kid_of(3), "next"),
        (kid_of(1), "retired"),
    ]


def test_revoke_active_promotes_next(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.initial_key_set(1000, new_key)
    revoked = keys.revoke(ks, kid_of(0), 3000, new_key)
    assert revoked.get(kid_of(0)) is None
    assert (revoked.active.kid, revoked.active.activated_at) == (kid_of(1), 3000)
    assert revoked.next.kid == kid_of(2)
    assert revoked.version == 2
    assert kid_of(0) not in {jwk["kid"] for jwk in revoked.jwks(3000)["keys"]}


def test_revoke_next_creates_new_next(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.initial_key_set(1000, new_key)
    revoked = keys.revoke(ks, kid_of(1), 3000, new_key)
    assert [(k.kid, k.state) for k in revoked.keys] == [
        (kid_of(0), "active"),
        (kid_of(2), "next"),
    ]
    assert revoked.active.activated_at == 1000


def test_revoke_retired_removes_it(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.rotate(keys.initial_key_set(1000, new_key), 2000, TTL, new_key)
    revoked = keys.revoke(ks, kid_of(0), 2100, no_new_key)
    assert [k.kid for k in revoked.keys] == [kid_of(1), kid_of(2)]
    assert kid_of(0) not in {jwk["kid"] for jwk in revoked.jwks(2100)["keys"]}


def test_revoke_unknown_kid(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.initial_key_set(1000, new_key)
    with pytest.raises(errors.UnknownKey):
        keys.revoke(ks, "no-such-kid", 2000, new_key)


def test_key_set_refuses_duplicate_kid() -> None:
    with pytest.raises(ValueError, match="same kid"):
        keys.initial_key_set(1000, key_supply([0, 0]))


def test_reprs_have_no_private_material(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.initial_key_set(1000, new_key)
    text = repr(ks) + repr(ks.active) + str(ks.next)
    assert ks.active.kid in text
    for key in (ks.active, ks.next):
        for secret in private_strings(key.private_key):
            assert secret not in text
    assert "private_key" not in text


def test_to_json_admin_shape(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.rotate(keys.initial_key_set(1_760_000_000, new_key), 1_760_000_700, TTL, new_key)
    body = ks.to_json(1_760_000_700)
    assert body["keys"][2] == {
        "kid": kid_of(0),
        "state": "retired",
        "created_at": "2025-10-09T08:53:20Z",
        "activated_at": "2025-10-09T08:53:20Z",
        "retire_at": "2025-10-09T09:21:00Z",
    }
    assert body["keys"][1]["activated_at"] is None
    assert body["keys"][1]["retire_at"] is None
    # Once past retire_at the retired key is no longer part of the set the admin API shows.
    later = ks.to_json(1_760_000_700 + RETIRE_DELAY)
    assert [key["kid"] for key in later["keys"]] == [kid_of(1), kid_of(2)]


@pytest.mark.parametrize(
    ("age", "force", "allowed"),
    [(0, False, False), (659, False, False), (660, False, True), (5, True, True)],
)
def test_rotation_waits_for_the_next_key_to_be_published_long_enough(
    new_key: Callable[[], rsa.RSAPrivateKey], age: int, force: bool, allowed: bool
) -> None:
    # 660 s = Prelude's 10-minute JWKS cache + 1 minute skew (contract sec. 5).
    ks = keys.initial_key_set(1000, new_key)
    if allowed:
        assert keys.rotate(ks, 1000 + age, TTL, new_key, force=force).active.kid == kid_of(1)
    else:
        with pytest.raises(errors.RotationTooEarly) as caught:
            keys.rotate(ks, 1000 + age, TTL, new_key, force=force)
        assert caught.value.status_code == 409
        assert kid_of(1) in caught.value.detail
        assert "force" in caught.value.detail


def test_the_publish_lead_is_a_parameter(new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    ks = keys.initial_key_set(1000, new_key)
    with pytest.raises(errors.RotationTooEarly):
        keys.rotate(ks, 1000 + 660, TTL, new_key, publish_lead=900)
    assert keys.rotate(ks, 1000 + 900, TTL, new_key, publish_lead=900).version == 2
    assert keys.rotate(ks, 1000, TTL, new_key, publish_lead=0).active.kid == kid_of(1)


def test_rotation_is_due_after_the_interval_and_the_lead() -> None:
    ks = keys.initial_key_set(1000, key_supply([0, 1]))
    day = 86400
    assert not keys.rotation_due(ks, 1000 + day - 1, day)
    assert keys.rotation_due(ks, 1000 + day, day)
    # After a revocation of the active key the fresh next key must wait for the lead.
    revoked = keys.revoke(ks, kid_of(0), 1000 + day, key_supply([2]))
    assert not keys.rotation_due(revoked, 1000 + day + day - 1, day)
    assert keys.rotation_due(revoked, 1000 + 2 * day, day)
    assert not keys.rotation_due(revoked, 1000 + 2 * day, day, publish_lead=day + 1)


def test_with_next_installs_an_imported_key_that_waits_for_the_lead() -> None:
    ks = keys.initial_key_set(1000, key_supply([0, 1]))
    imported = keys.with_next(ks, hook_keys()[2], 2000)
    assert (imported.next.kid, imported.next.created_at, imported.version) == (kid_of(2), 2000, 2)
    assert imported.active == ks.active and imported.get(kid_of(1)) is None
    with pytest.raises(errors.RotationTooEarly):
        keys.rotate(imported, 2000 + 659, TTL, no_new_key)
    with pytest.raises(errors.InvalidRequest, match=kid_of(0)):
        keys.with_next(ks, hook_keys()[0], 2000)


def test_record_round_trip_and_bad_records() -> None:
    key = SigningKey.new(hook_keys()[0], "active", 5)
    record = key.record()
    assert record == {
        "kid": kid_of(0),
        "state": "active",
        "created_at": 5,
        "activated_at": 5,
        "retire_at": None,
    }
    assert SigningKey.from_record(record, lambda kid: hook_keys()[0]) == key
    bad_records: list[Any] = [{**record, "state": "spare"}, {**record, "created_at": "5"}, []]
    for bad in [*bad_records, {"kid": 1}]:
        with pytest.raises(ValueError):
            SigningKey.from_record(bad, lambda kid: hook_keys()[0])


# --- FileKeyStore ------------------------------------------------------------------------


def test_signing_key_new_uses_thumbprint_as_kid() -> None:
    key = SigningKey.new(hook_keys()[2], "next", 7)
    assert key.kid == kid_of(2)
    assert (key.state, key.created_at, key.activated_at, key.retire_at) == ("next", 7, None, None)
