"""Where the key set lives: :class:`FileKeyStore`, a directory shared by the workers of one host.

The life cycle itself is pure and lives in :mod:`hook_service.keys.lifecycle`; this module only
reads and writes it, atomically and under a file lock. It implements the core
:class:`~hook_service.keys.backends.base.KeyStore` and no capability: the ``flock`` makes each
change exclusive (no rotation lock needed), key events go to the log, keys are plain PKCS#8
files guarded by file permissions (no KEK).

Failures raise :class:`errors.KeyStoreFailure` (a 503 while serving); :meth:`load` and
:meth:`load_or_create`, which run at start-up and in the CLI, raise
:class:`errors.KeyStoreError` (a ConfigError) instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from anyio import to_thread
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service import errors, logs
from hook_service.clock import Clock, system_clock
from hook_service.keys.backends.base import (
    Change,
    Describe,
    LastGoodSet,
    key_problem,
    key_set_from,
    parse_key_set,
)
from hook_service.keys.backends.permissions import check_directory, check_key_file, hand_over
from hook_service.keys.events import KeyEvent
from hook_service.keys.lifecycle import KID, KeySet, NewKey, generate_rsa_key, initial_key_set

log = logging.getLogger(logs.KEYSTORE)


class FileKeyStore(LastGoodSet):
    """The key set in a directory: ``keyset.json`` (metadata, version) and ``<kid>.pem``
    (PKCS#8, mode 0600). Writes are atomic (temp file + fsync + rename) and every
    read-modify-write holds an exclusive ``flock`` on ``<dir>/.lock``, so several workers on one
    host never create two key sets or lose a rotation. Errors name paths, never key bytes."""

    not_signing = "the key set changed on disk but cannot be read; not signing until it can"

    def __init__(
        self,
        directory: Path,
        *,
        clock: Clock = system_clock,
        new_key: NewKey = generate_rsa_key,
    ) -> None:
        self.directory = Path(directory)
        self._meta = self.directory / "keyset.json"
        self._clock = clock
        self.new_key = new_key
        self._cached: tuple[tuple[int, ...], KeySet] | None = None
        self._failed_stat: tuple[int, ...] | None = None
        self.stale: str | None = None
        """Why the key set on disk could not be re-read, while the last good one serves."""

    def load_or_create(self) -> KeySet:
        """Load the key set; on first start create an active and a next key."""
        with _starting():
            try:  # mode applies to a directory we create (design: 0700); an existing one is kept
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise errors.KeyStoreError(
                    f"{self.directory}: cannot create: {exc.strerror}"
                ) from None
            check_directory(self.directory)
            if self._meta.exists():  # the usual start; also works on a read-only mount
                return self.load()
            with self._lock():
                if self._meta.exists():  # another worker may have won the race: use its set
                    return self._read()
                ks = initial_key_set(int(self._clock()), self.new_key)
                self._write(ks)
                return ks

    def current(self) -> KeySet:
        """The key set, re-read only when ``keyset.json`` changed (another worker rotated).

        If the re-read fails (a half-restored file, an unmounted volume) the last good set keeps
        the JWKS up and :attr:`stale` says why; :meth:`signing_set` then refuses to sign, since
        the unreadable change may have been a revocation."""
        cached = self._cached
        if cached is None:
            return self.load_or_create()
        stat_key: tuple[int, ...] = ()
        try:
            stat_key = self._stat_key()
            if stat_key in (cached[0], self._failed_stat):
                return cached[1]  # unchanged, or the same unreadable file as last time
            with self._lock(exclusive=False):
                ks = self._read()
        except errors.KeyStoreFailure as exc:
            if self.stale is None:
                log.error("%s; still publishing key set version %d", exc, cached[1].version)
            self.stale, self._failed_stat = str(exc), stat_key
            return cached[1]
        return ks

    def load(self) -> KeySet:
        """Load an existing key set; :class:`errors.KeyStoreError` when there is none (a
        mistyped directory must not silently get a new key set)."""
        if not os.path.isdir(self.directory):
            raise errors.KeyStoreError(f"{self.directory}: no key set here (no such directory)")
        with _starting():
            check_directory(self.directory)
            if not self._meta.exists():
                raise errors.KeyStoreError(
                    f"{self._meta}: no key set here (the service creates one)"
                )
            with self._lock(exclusive=False):
                return self._read()

    def update(self, change: Change) -> KeySet:
        """Read, ``change(key_set, now)`` and write, all under the exclusive lock (the life
        cycle's functions and the publish lead are applied by :class:`KeyAdmin`)."""
        return self._change(change, lambda before, after, now: [])[0]

    def _change(self, change: Change, describe: Describe) -> tuple[KeySet, list[KeyEvent]]:
        with self._lock():
            before = self._read()
            now = int(self._clock())
            after = change(before, now)
            self._write(after)
            return after, describe(before, after, now)

    # --- the rest of the KeyStore protocol (hook_service.keys.backends.base) ----------------

    async def refresh(self) -> KeySet:
        """:meth:`signing_set`: its ``stat`` already sees every change committed on this host."""
        return self.signing_set()

    async def change(
        self, change: Change, describe: Describe, *, fence: int | None = None
    ) -> tuple[KeySet, list[KeyEvent]]:
        """:meth:`update` off the event loop. ``fence`` is unused: the ``flock`` already makes
        each change exclusive on this host, and the change re-checks the set it read."""
        return await to_thread.run_sync(self._change, change, describe)

    async def start(self) -> None:
        """Nothing to follow: :meth:`current` sees another worker's change by its ``stat``."""
        return None

    async def aclose(self) -> None:
        return None

    @contextlib.contextmanager
    def _lock(self, *, exclusive: bool = True) -> Iterator[None]:
        path = self.directory / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if not exclusive and exc.errno in (errno.EROFS, errno.EACCES):
                # A read-only mount (a secret volume) has no writer to wait for.
                yield
                return
            raise errors.KeyStoreFailure(f"{path}: cannot open lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _stat_key(self) -> tuple[int, ...]:
        # os.replace gives a new inode on every write; mtime and size catch in-place edits.
        try:
            st = os.stat(self._meta)
        except OSError as exc:
            raise errors.KeyStoreFailure(f"{self._meta}: cannot stat: {exc.strerror}") from None
        return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)

    def _read(self) -> KeySet:
        path = self._meta
        stat_key = self._stat_key()  # under the lock, so it matches the bytes read below
        try:
            _, entries, version = parse_key_set(path.read_bytes(), "key set file")
            ks = key_set_from(entries, version, self._load_pem)
        except OSError as exc:
            raise errors.KeyStoreFailure(f"{path}: cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise errors.KeyStoreFailure(f"{path}: {exc}") from None
        self._install(stat_key, ks)
        return ks

    def _load_pem(self, kid: str) -> rsa.RSAPrivateKey:
        path = self.directory / f"{kid}.pem"
        try:  # a missing file is FileNotFoundError: keyset.json lists a key whose PEM is gone
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)  # never follow a planted symlink
            with os.fdopen(fd, "rb") as file:
                check_key_file(path, file.fileno())
                data = file.read()
        except OSError as exc:
            msg = f"{path}: listed in {self._meta.name} but cannot be read: {exc.strerror}"
            raise errors.KeyStoreFailure(msg) from None
        try:  # the parser's message could quote input; say only what is wrong
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise errors.KeyStoreFailure(f"{path}: not an unencrypted PEM private key") from None
        problem = key_problem(key, kid)
        if problem is not None:
            raise errors.KeyStoreFailure(f"{path}: {problem}")
        assert isinstance(key, rsa.RSAPrivateKey)  # key_problem checked it
        return key

    def _install(self, stat_key: tuple[int, ...], ks: KeySet) -> None:
        # The one place a set read or written successfully becomes current: it also ends any
        # stale period, whichever path (re-read, rotation, revocation) got there.
        self._cached = (stat_key, ks)
        self.stale, self._failed_stat = None, None

    def _write(self, ks: KeySet) -> None:
        """PEMs first, then keyset.json (the commit point), then delete unlisted PEMs."""
        pkcs8 = (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8)
        created: list[Path] = []
        meta = {"format": 1, "version": ks.version, "keys": [k.record() for k in ks.keys]}
        try:
            for k in ks.keys:
                pem_path = self.directory / f"{k.kid}.pem"
                if not pem_path.exists():  # same kid = same key (RFC 7638), so never rewritten
                    pem = k.private_key.private_bytes(*pkcs8, serialization.NoEncryption())
                    self._atomic_write(pem_path, pem)
                    created.append(pem_path)
            self._atomic_write(self._meta, json.dumps(meta, indent=2).encode())
        except errors.KeyStoreFailure:
            for path in created:  # not committed: no unlisted private key stays behind
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        self._install(self._stat_key(), ks)
        listed = {f"{k.kid}.pem" for k in ks.keys}
        for path in self.directory.iterdir():  # revoked/expired keys and crash leftovers
            stale_pem = KID.fullmatch(path.stem) and path.suffix == ".pem"
            if (stale_pem and path.name not in listed) or path.name.startswith(".tmp-"):
                try:  # the key set is already committed; a failed delete must not undo it
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("%s: cannot delete: %s", path, exc.strerror)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        # temp file in the same directory (mode 0600) + fsync + rename, then fsync the directory
        # so the rename itself is durable; a crash leaves the old file or the new one.
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            hand_over(fd, self.directory)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()  # Python's buffer first, then the OS's
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            if tmp is not None:  # never leave a copy of key material behind
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise errors.KeyStoreFailure(f"{path}: cannot write: {exc.strerror}") from None


@contextlib.contextmanager
def _starting() -> Iterator[None]:
    """At start-up (and in the CLI) a failure is invalid configuration, not a 503."""
    try:
        yield
    except errors.KeyStoreFailure as exc:
        raise errors.KeyStoreError(exc.reason) from None
