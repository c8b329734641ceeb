"""Key life cycle (pure) and FileKeyStore. Keys come from tests/keys/hook_rsa_1..4.pem."""

from __future__ import annotations

import base64
import functools
import json
import multiprocessing
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from hook_service import errors, keys
from hook_service.keys import FileKeyStore, KeySet, SigningKey

KEY_DIR = Path(__file__).parent / "keys"
TTL = 300
RETIRE_DELAY = TTL + 600 + 60  # token TTL + Prelude JWKS cache (contract 5) + skew
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")
B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


@functools.cache
def hook_keys() -> tuple[rsa.RSAPrivateKey, ...]:
    loaded = []
    for i in range(1, 5):
        key = serialization.load_pem_private_key(
            (KEY_DIR / f"hook_rsa_{i}.pem").read_bytes(), password=None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        loaded.append(key)
    return tuple(loaded)


def key_supply(indices: list[int] | None = None) -> Callable[[], rsa.RSAPrivateKey]:
    """Hands out the pre-generated keys in order; fails the test when they run out."""
    supply = iter([hook_keys()[i] for i in (indices if indices is not None else range(4))])

    def take() -> rsa.RSAPrivateKey:
        key = next(supply, None)
        if key is None:
            pytest.fail("test needs more than the pre-generated keys")
        return key

    return take


@pytest.fixture
def new_key() -> Callable[[], rsa.RSAPrivateKey]:
    return key_supply()


def no_new_key() -> rsa.RSAPrivateKey:
    raise AssertionError("no key should be generated here")


class FakeClock:
    def __init__(self, now: float = 1_760_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def kid_of(i: int) -> str:
    return keys.thumbprint(hook_keys()[i].public_key())


def b64u_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def private_strings(key: rsa.RSAPrivateKey) -> list[str]:
    """Renderings of the private numbers that must never show up in output."""
    nums = key.private_numbers()
    out = []
    for v in (nums.d, nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp):
        out += [str(v)[:40], format(v, "x")[:40], keys._b64u_uint(v)[:40]]
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out += [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    return out


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
    soon = keys.rotate(ks, 5001, TTL, key_supply([3]))
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
    ks = keys.rotate(keys.initial_key_set(1_760_000_000, new_key), 1_760_000_100, TTL, new_key)
    body = ks.to_json()
    assert body["keys"][2] == {
        "kid": kid_of(0),
        "state": "retired",
        "created_at": "2025-10-09T08:53:20Z",
        "activated_at": "2025-10-09T08:53:20Z",
        "retire_at": "2025-10-09T09:11:00Z",
    }
    assert body["keys"][1]["activated_at"] is None
    assert body["keys"][1]["retire_at"] is None


# --- FileKeyStore ------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_first_start_creates_files(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    directory = tmp_path / "keys"
    ks = FileKeyStore(directory, clock=FakeClock(1234.9), new_key=new_key).load_or_create()
    assert (ks.active.kid, ks.next.kid, ks.version) == (kid_of(0), kid_of(1), 1)
    assert ks.active.created_at == 1234
    assert mode(directory) == 0o700
    for kid in (kid_of(0), kid_of(1)):
        pem = directory / f"{kid}.pem"
        assert mode(pem) == 0o600
        assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    meta = json.loads((directory / "keyset.json").read_text())
    assert meta["version"] == 1
    assert [(e["kid"], e["state"]) for e in meta["keys"]] == [
        (kid_of(0), "active"),
        (kid_of(1), "next"),
    ]
    assert not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]


def test_store_second_start_loads_same_set(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    first = FileKeyStore(tmp_path, new_key=new_key).load_or_create()
    second = FileKeyStore(tmp_path, new_key=no_new_key).load_or_create()
    assert second == first
    assert second.active.private_key.private_numbers() == first.active.private_key.private_numbers()


def test_store_rotate_and_revoke_persist_and_delete_pems(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    clock = FakeClock(10_000)
    store = FileKeyStore(tmp_path, clock=clock, new_key=new_key)
    store.load_or_create()
    clock.now = 20_000
    rotated = store.rotate(TTL)
    assert rotated.version == 2
    assert rotated.get(kid_of(0)) is not None
    assert (tmp_path / f"{kid_of(0)}.pem").exists()  # retired keys stay until retire_at
    revoked = store.revoke(kid_of(0))
    assert revoked.version == 3
    assert not (tmp_path / f"{kid_of(0)}.pem").exists()
    clock.now = 20_000 + RETIRE_DELAY
    rotated = store.rotate(TTL)  # key 1 retires, key 3 is the new next
    assert {p.name for p in tmp_path.glob("*.pem")} == {f"{k.kid}.pem" for k in rotated.keys}
    assert FileKeyStore(tmp_path, new_key=no_new_key).load_or_create() == rotated


def test_store_deletes_expired_retired_pem(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    clock = FakeClock(10_000)
    store = FileKeyStore(tmp_path, clock=clock, new_key=new_key)
    store.load_or_create()
    store.rotate(TTL)  # key 0 retired until 10_000 + RETIRE_DELAY
    clock.now = 10_000 + RETIRE_DELAY
    ks = store.rotate(TTL)
    assert ks.get(kid_of(0)) is None
    assert not (tmp_path / f"{kid_of(0)}.pem").exists()
    assert (tmp_path / f"{kid_of(3)}.pem").exists()


def test_store_revoke_unknown_kid(tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    store = FileKeyStore(tmp_path, new_key=new_key)
    before = store.load_or_create()
    inode = (tmp_path / "keyset.json").stat().st_ino
    with pytest.raises(errors.UnknownKey):
        store.revoke("A" * 43)
    assert store.current() == before
    assert (tmp_path / "keyset.json").stat().st_ino == inode  # nothing was written


def test_current_reloads_after_another_instance_rotates(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    a = FileKeyStore(tmp_path, new_key=new_key)
    b = FileKeyStore(tmp_path, new_key=no_new_key)
    a.load_or_create()
    seen = b.load_or_create()
    assert b.current() is seen  # unchanged file: no re-read
    rotated = a.rotate(TTL)
    now_b = b.current()
    assert now_b == rotated
    assert now_b.active.kid == kid_of(1)
    assert b.current() is now_b


def test_current_loads_when_nothing_cached(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    ks = FileKeyStore(tmp_path, new_key=new_key).current()
    assert ks.active.kid == kid_of(0)


# --- FileKeyStore errors ------------------------------------------------------------------


@pytest.fixture
def stored(tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]) -> KeySet:
    return FileKeyStore(tmp_path, new_key=new_key).load_or_create()


def load_error(directory: Path) -> str:
    with pytest.raises(errors.KeyStoreError) as info:
        FileKeyStore(directory, new_key=no_new_key).load_or_create()
    return str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe", b"[]", b'{"version": 1}', b'{"version": "1", "keys": []}'],
)
def test_corrupt_keyset_json(tmp_path: Path, stored: KeySet, content: bytes) -> None:
    (tmp_path / "keyset.json").write_bytes(content)
    assert str(tmp_path / "keyset.json") in load_error(tmp_path)


def test_keyset_json_breaking_invariants(tmp_path: Path, stored: KeySet) -> None:
    path = tmp_path / "keyset.json"
    meta = json.loads(path.read_text())
    meta["keys"][1]["state"] = "active"
    path.write_text(json.dumps(meta))
    message = load_error(tmp_path)
    assert str(path) in message
    assert "exactly one" in message


def test_keyset_json_with_path_traversal_kid(tmp_path: Path, stored: KeySet) -> None:
    path = tmp_path / "keyset.json"
    meta = json.loads(path.read_text())
    meta["keys"][0]["kid"] = "../../etc/passwd"
    path.write_text(json.dumps(meta))
    assert str(path) in load_error(tmp_path)


def test_unreadable_keyset_json(tmp_path: Path, stored: KeySet) -> None:
    path = tmp_path / "keyset.json"
    path.unlink()
    path.mkdir()  # exists but cannot be read as a file
    assert str(path) in load_error(tmp_path)


def test_missing_pem_for_listed_kid(tmp_path: Path, stored: KeySet) -> None:
    pem = tmp_path / f"{stored.next.kid}.pem"
    pem.unlink()
    assert str(pem) in load_error(tmp_path)


def test_pem_whose_thumbprint_differs_from_kid(tmp_path: Path, stored: KeySet) -> None:
    active_pem = tmp_path / f"{stored.active.kid}.pem"
    active_pem.write_bytes((tmp_path / f"{stored.next.kid}.pem").read_bytes())
    message = load_error(tmp_path)
    assert str(active_pem) in message
    assert "thumbprint" in message
    for secret in private_strings(hook_keys()[1]):
        assert secret not in message


def test_corrupt_pem_error_has_path_but_no_key_bytes(tmp_path: Path, stored: KeySet) -> None:
    pem = tmp_path / f"{stored.active.kid}.pem"
    lines = pem.read_bytes().splitlines()
    pem.write_bytes(b"\n".join([*lines[:5], lines[6][::-1], *lines[7:]]))  # damaged body
    with pytest.raises(errors.KeyStoreError) as info:
        FileKeyStore(tmp_path, new_key=no_new_key).load_or_create()
    message = str(info.value)
    assert str(pem) in message
    for line in lines[1:-1]:
        assert line.decode() not in message
    assert info.value.__cause__ is None


def test_too_open_pem_mode_is_fixed(tmp_path: Path, stored: KeySet) -> None:
    pem = tmp_path / f"{stored.active.kid}.pem"
    pem.chmod(0o644)
    FileKeyStore(tmp_path, new_key=no_new_key).load_or_create()
    assert mode(pem) == 0o600


def test_too_open_pem_mode_that_cannot_be_fixed(
    tmp_path: Path, stored: KeySet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = tmp_path / f"{stored.active.kid}.pem"
    pem.chmod(0o644)

    def refuse(path: Any, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    # root can always chmod, so simulate a file owned by someone else
    monkeypatch.setattr(os, "chmod", refuse)
    message = load_error(tmp_path)
    assert str(pem) in message
    assert "644" in message


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(errors.KeyStoreError, match=re.escape(str(blocker))):
        FileKeyStore(blocker / "keys", new_key=no_new_key).load_or_create()


# --- several processes on one directory ---------------------------------------------------


def _create_in_child(directory: str, indices: list[int], barrier: Any, results: Any) -> None:
    try:
        store = FileKeyStore(Path(directory), clock=FakeClock(), new_key=key_supply(indices))
        barrier.wait()
        ks = store.load_or_create()
        results.put((ks.version, [(k.kid, k.state) for k in ks.keys]))
    except BaseException as exc:
        results.put(repr(exc))


def test_concurrent_first_start_creates_one_key_set(tmp_path: Path) -> None:
    hook_keys()  # load once in the parent; forked children inherit them
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    # each process would create a different set: keys (i, i+1 mod 4)
    procs = [
        ctx.Process(
            target=_create_in_child, args=(str(tmp_path), [i, (i + 1) % 4], barrier, results)
        )
        for i in range(4)
    ]
    for p in procs:
        p.start()
    seen = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(not isinstance(r, str) for r in seen), seen
    assert len({json.dumps(r) for r in seen}) == 1, seen
    on_disk = FileKeyStore(tmp_path, new_key=no_new_key).load_or_create()
    assert [(k.kid, k.state) for k in on_disk.keys] == seen[0][1]
    assert on_disk.version == 1
    assert len(list(tmp_path.glob("*.pem"))) == 2


def _rotate_in_child(
    directory: str, rounds: int, clock: Any, counter: Any, barrier: Any, results: Any
) -> None:
    def shared_clock() -> float:
        # advances past every retire_at, so each rotation prunes the previous retired key
        with clock.get_lock():
            clock.value += 10_000
            return float(clock.value)

    def cycling_key() -> rsa.RSAPrivateKey:
        with counter.get_lock():
            counter.value += 1
            index: int = counter.value
        return hook_keys()[index % 4]

    try:
        store = FileKeyStore(Path(directory), clock=shared_clock, new_key=cycling_key)
        barrier.wait()
        results.put([store.rotate(30).version for _ in range(rounds)])
    except BaseException as exc:
        results.put(repr(exc))


def test_concurrent_rotations_are_not_lost(tmp_path: Path) -> None:
    FileKeyStore(tmp_path, clock=FakeClock(0), new_key=key_supply([0, 1])).load_or_create()
    ctx = multiprocessing.get_context("fork")
    clock, counter = ctx.Value("q", 0), ctx.Value("q", 1)
    barrier, results = ctx.Barrier(2), ctx.Queue()
    rounds = 6
    procs = [
        ctx.Process(
            target=_rotate_in_child,
            args=(str(tmp_path), rounds, clock, counter, barrier, results),
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    seen = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(isinstance(r, list) for r in seen), seen
    versions = sorted(v for r in seen for v in r)
    assert versions == list(range(2, 2 + 2 * rounds))  # every rotation saw its own version
    final = FileKeyStore(tmp_path, new_key=no_new_key).load_or_create()
    assert final.version == 1 + 2 * rounds
    assert {p.name for p in tmp_path.glob("*.pem")} == {f"{k.kid}.pem" for k in final.keys}


def test_signing_key_new_uses_thumbprint_as_kid() -> None:
    key = SigningKey.new(hook_keys()[2], "next", 7)
    assert key.kid == kid_of(2)
    assert (key.state, key.created_at, key.activated_at, key.retire_at) == ("next", 7, None, None)
