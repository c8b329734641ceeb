"""FileKeyStore: files, permissions, atomic writes, locking across processes, corrupt input."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service import errors
from hook_service.keys import lifecycle as keys
from hook_service.keys.backends.file import FileKeyStore
from hook_service.keys.lifecycle import KeySet
from tests.support import (
    FakeClock,
    hook_keys,
    key_supply,
    kid_of,
    no_new_key,
    private_strings,
)

TTL = 300
RETIRE_DELAY = TTL + 600 + 60  # token TTL + Prelude JWKS cache (contract 5) + skew


def rotate(store: FileKeyStore, ttl: int = TTL, *, force: bool = False) -> KeySet:
    """A rotation through the store's one write path (KeyAdmin's, without the audit)."""
    return store.update(lambda ks, now: keys.rotate(ks, now, ttl, store.new_key, force=force))


def revoke(store: FileKeyStore, kid: str) -> KeySet:
    return store.update(lambda ks, now: keys.revoke(ks, kid, now, store.new_key))


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
    rotated = rotate(store, TTL)
    assert rotated.version == 2
    assert rotated.get(kid_of(0)) is not None
    assert (tmp_path / f"{kid_of(0)}.pem").exists()  # retired keys stay until retire_at
    revoked = revoke(store, kid_of(0))
    assert revoked.version == 3
    assert not (tmp_path / f"{kid_of(0)}.pem").exists()
    clock.now = 20_000 + RETIRE_DELAY
    rotated = rotate(store, TTL)  # key 1 retires, key 3 is the new next
    assert {p.name for p in tmp_path.glob("*.pem")} == {f"{k.kid}.pem" for k in rotated.keys}
    assert FileKeyStore(tmp_path, new_key=no_new_key).load_or_create() == rotated


def test_store_deletes_expired_retired_pem(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    clock = FakeClock(10_000)
    store = FileKeyStore(tmp_path, clock=clock, new_key=new_key)
    store.load_or_create()
    rotate(store, TTL, force=True)  # key 0 retired until 10_000 + RETIRE_DELAY
    clock.now = 10_000 + RETIRE_DELAY
    ks = rotate(store, TTL)
    assert ks.get(kid_of(0)) is None
    assert not (tmp_path / f"{kid_of(0)}.pem").exists()
    assert (tmp_path / f"{kid_of(3)}.pem").exists()


def test_store_revoke_unknown_kid(tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]) -> None:
    store = FileKeyStore(tmp_path, new_key=new_key)
    before = store.load_or_create()
    inode = (tmp_path / "keyset.json").stat().st_ino
    with pytest.raises(errors.UnknownKey):
        revoke(store, "A" * 43)
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
    rotated = rotate(a, TTL, force=True)
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

    def refuse(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    # root can always chmod, so simulate a file owned by someone else
    monkeypatch.setattr(os, "fchmod", refuse)
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
        results.put([rotate(store, 30).version for _ in range(rounds)])
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


def test_load_refuses_a_directory_without_a_key_set(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    missing = tmp_path / "typo"
    with pytest.raises(errors.KeyStoreError, match="no key set here"):
        FileKeyStore(missing, new_key=no_new_key).load()
    assert not missing.exists()
    created = FileKeyStore(tmp_path, new_key=new_key).load_or_create()
    assert FileKeyStore(tmp_path, new_key=no_new_key).load() == created


def test_a_change_that_raises_writes_nothing(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    clock = FakeClock(10_000)
    store = FileKeyStore(tmp_path, clock=clock, new_key=new_key)
    store.load_or_create()
    with pytest.raises(errors.RotationTooEarly):
        rotate(store, TTL)
    assert store.current().version == 1  # nothing written
    clock.now += 660
    assert rotate(store, TTL).active.kid == kid_of(1)


OTHER_UID = 4242  # nobody this test runs as


@pytest.fixture
def unprivileged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the checks as uid/gid 12345 with no extra groups (the suite itself runs as root,
    which may read anything)."""
    monkeypatch.setattr(os, "geteuid", lambda: 12345)
    monkeypatch.setattr(os, "getegid", lambda: 12345)
    monkeypatch.setattr(os, "getgroups", lambda: [])


def test_a_world_writable_directory_we_own_is_tightened(
    tmp_path: Path, stored: KeySet, caplog: pytest.LogCaptureFixture
) -> None:
    tmp_path.chmod(0o777)
    assert FileKeyStore(tmp_path, new_key=no_new_key).load_or_create() == stored
    # Others lose write access; group write stays, since the group (root's) is ours.
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o775
    assert "removed their write access" in caplog.text


@pytest.mark.usefixtures("unprivileged")
@pytest.mark.parametrize(("mode", "gid"), [(0o777, 0), (0o770, OTHER_UID), (0o702, 0)])
def test_a_directory_others_can_write_is_refused(
    tmp_path: Path, stored: KeySet, mode: int, gid: int
) -> None:
    # Whoever can write the directory could plant a key we would sign with and publish.
    os.chown(tmp_path, 0, gid)  # root's directory: not ours to tighten
    tmp_path.chmod(mode)
    message = load_error(tmp_path)
    assert str(tmp_path) in message
    assert "lets other users write it" in message


@pytest.mark.usefixtures("unprivileged")
def test_group_write_for_our_own_group_is_accepted(
    tmp_path: Path, stored: KeySet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Kubernetes fsGroup volume: root:<our group>, setgid, group-writable.
    monkeypatch.setattr(os, "getgroups", lambda: [OTHER_UID])
    os.chown(tmp_path, 0, OTHER_UID)
    tmp_path.chmod(0o2770)
    assert FileKeyStore(tmp_path, new_key=no_new_key).load_or_create() == stored


@pytest.mark.usefixtures("unprivileged")
def test_files_of_another_user_are_refused(tmp_path: Path, stored: KeySet) -> None:
    pem = tmp_path / f"{stored.active.kid}.pem"
    os.chown(pem, OTHER_UID, OTHER_UID)
    message = load_error(tmp_path)
    assert str(pem) in message
    assert f"owned by uid {OTHER_UID}" in message
    os.chown(tmp_path, OTHER_UID, OTHER_UID)
    assert f"{tmp_path}: owned by uid {OTHER_UID}" in load_error(tmp_path)


def test_root_hands_what_it_writes_to_the_directory_owner(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    # An operator runs the keys CLI as root on the service user's directory: the service must
    # still be able to read the result.
    for path in (tmp_path, *tmp_path.iterdir()):
        os.chown(path, OTHER_UID, OTHER_UID)
    store = FileKeyStore(tmp_path, new_key=new_key)
    store.load_or_create()
    rotated = rotate(store, TTL, force=True)
    for path in (tmp_path / "keyset.json", tmp_path / f"{rotated.next.kid}.pem"):
        assert (path.stat().st_uid, path.stat().st_gid) == (OTHER_UID, OTHER_UID)


def test_symlinked_pem_is_refused(tmp_path: Path, stored: KeySet) -> None:
    pem = tmp_path / f"{stored.active.kid}.pem"
    elsewhere = tmp_path.parent / f"{tmp_path.name}-planted.pem"
    elsewhere.write_bytes(pem.read_bytes())
    pem.unlink()
    pem.symlink_to(elsewhere)
    assert str(pem) in load_error(tmp_path)


def test_read_only_directory_still_loads(tmp_path: Path, stored: KeySet) -> None:
    # A secret volume mounted read-only: no lock file can be created, and none is needed.
    (tmp_path / ".lock").unlink()
    real_open = os.open

    def read_only(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "open", read_only)
        assert FileKeyStore(tmp_path, new_key=no_new_key).load_or_create() == stored


@pytest.mark.parametrize("damage", ["truncated", "deeply nested"])
def test_a_broken_reload_publishes_the_last_good_set_but_refuses_to_sign(
    tmp_path: Path, stored: KeySet, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    store = FileKeyStore(tmp_path, new_key=no_new_key)
    good = store.load_or_create()
    meta = tmp_path / "keyset.json"
    original = meta.read_bytes()
    meta.write_bytes(original[:-5] if damage == "truncated" else b"[" * 100_000)
    assert store.current() == good  # the JWKS stays up
    assert store.current() == good
    assert store.stale is not None and "not a valid key set file" in store.stale
    assert caplog.text.count("not a valid key set file") == 1  # logged once, not per request
    # The unreadable change may have been a revocation: do not sign with what we remember.
    with pytest.raises(errors.KeyStoreUnavailable):
        store.signing_set()
    meta.write_bytes(original)  # repaired
    assert store.signing_set() == good
    assert store.stale is None


def test_a_failed_write_leaves_the_old_set(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileKeyStore(tmp_path, new_key=new_key)
    before = store.load_or_create()

    def crash(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    real_replace = os.replace

    def crash_on_commit(src: Any, dst: Any) -> None:
        # The new PEM lands; the commit point, keyset.json, does not.
        if str(dst).endswith("keyset.json"):
            crash(src, dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_commit)
    with pytest.raises(errors.KeyStoreFailure, match="No space left"):  # a 503 while serving
        rotate(store, TTL, force=True)
    monkeypatch.undo()
    assert FileKeyStore(tmp_path, new_key=no_new_key).load() == before
    assert not list(tmp_path.glob(".tmp-*"))
    # No private key that the key set does not list stays behind.
    assert {p.name for p in tmp_path.glob("*.pem")} == {f"{k.kid}.pem" for k in before.keys}


def test_a_rotation_after_repair_ends_the_stale_period(
    tmp_path: Path, new_key: Callable[[], rsa.RSAPrivateKey]
) -> None:
    store = FileKeyStore(tmp_path, new_key=new_key)
    store.load_or_create()
    meta = tmp_path / "keyset.json"
    original = meta.read_bytes()
    meta.write_bytes(original[:-5])
    store.current()
    assert store.stale is not None
    meta.write_bytes(original)  # repaired, and the next thing to happen is a rotation
    rotated = rotate(store, TTL, force=True)
    assert store.stale is None
    assert store.signing_set() == rotated
