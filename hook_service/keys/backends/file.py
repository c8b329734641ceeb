"""Where the key set lives: :class:`FileKeyStore`, a directory shared by the workers of one host.

The life cycle itself is pure and lives in :mod:`hook_service.keys`; this module only reads and
writes it, atomically and under a file lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from anyio import to_thread
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service import errors, logs
from hook_service.clock import Clock, system_clock
from hook_service.keys.backends.permissions import check_directory, check_key_file, hand_over
from hook_service.keys.events import KeyEvent
from hook_service.keys.lifecycle import (
    KID,
    KeySet,
    NewKey,
    SigningKey,
    generate_rsa_key,
    initial_key_set,
    thumbprint,
)

Change = Callable[[KeySet, int], KeySet]
"""``(current key set, now) -> new key set``; raising leaves the store unchanged."""
Describe = Callable[[KeySet, KeySet, int], list[KeyEvent]]
"""``(before, after, now) -> audit events`` of a change."""

log = logging.getLogger(logs.KEYSTORE)


class FileKeyStore:
    """The key set in a directory: ``keyset.json`` (metadata, version) and ``<kid>.pem``
    (PKCS#8, mode 0600). Writes are atomic (temp file + fsync + rename) and every
    read-modify-write holds an exclusive ``flock`` on ``<dir>/.lock``, so several workers on one
    host never create two key sets or lose a rotation. Errors name paths, never key bytes."""

    encrypted = False
    version_key: str | None = None
    redis_url: str | None = None
    """Private keys are plain PKCS#8 files guarded by file permissions (no KEK)."""

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
        try:  # mode applies to a directory we create (design: 0700); an existing one is kept
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.KeyStoreError(f"{self.directory}: cannot create: {exc.strerror}") from None
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
        except errors.KeyStoreError as exc:
            if self.stale is None:
                log.error("%s; still publishing key set version %d", exc, cached[1].version)
            self.stale, self._failed_stat = str(exc), stat_key
            return cached[1]
        return ks

    def signing_set(self) -> KeySet:
        """:meth:`current`, unless it is stale: then :class:`errors.KeyStoreUnavailable`."""
        ks = self.current()
        if self.stale is not None:
            raise errors.KeyStoreUnavailable(
                "the key set changed on disk but cannot be read; not signing until it can"
            )
        return ks

    def load(self) -> KeySet:
        """Load an existing key set; :class:`errors.KeyStoreError` when there is none (a
        mistyped directory must not silently get a new key set)."""
        if not os.path.isdir(self.directory):
            raise errors.KeyStoreError(f"{self.directory}: no key set here (no such directory)")
        check_directory(self.directory)
        if not self._meta.exists():
            raise errors.KeyStoreError(f"{self._meta}: no key set here (the service creates one)")
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

    # --- the KeyStore protocol (hook_service.keyadmin) -------------------------------------

    async def refresh(self) -> KeySet:
        """:meth:`signing_set`: its ``stat`` already sees every change committed on this host."""
        return self.signing_set()

    async def change(
        self, change: Change, describe: Describe, *, fence: int | None = None
    ) -> tuple[KeySet, list[KeyEvent]]:
        """:meth:`update` off the event loop. ``fence`` is unused: the ``flock`` already makes
        each change exclusive on this host, and the change re-checks the set it read."""
        return await to_thread.run_sync(self._change, change, describe)

    async def events(self, after: str | None, limit: int) -> tuple[list[KeyEvent], str | None]:
        """The file store writes key events to the service log only."""
        raise errors.EventsUnavailable(
            "the file key store writes key events to the service log only; the event stream "
            "needs HOOK_KEYSTORE=redis"
        )

    async def acquire_lock(self, ttl: float) -> int | None:
        """Always granted: every change holds the directory's ``flock`` (see :meth:`change`)."""
        return 0

    async def release_lock(self, token: int) -> None:
        return None

    async def start(self) -> None:
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
            raise errors.KeyStoreError(f"{path}: cannot open lock file: {exc.strerror}") from None
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
            raise errors.KeyStoreError(f"{self._meta}: cannot stat: {exc.strerror}") from None
        return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)

    def _read(self) -> KeySet:
        path = self._meta
        stat_key = self._stat_key()  # under the lock, so it matches the bytes read below
        try:
            data = json.loads(path.read_bytes())
            entries, version = data["keys"], data["version"]
            if not isinstance(entries, list) or type(version) is not int:
                raise TypeError
        except OSError as exc:
            raise errors.KeyStoreError(f"{path}: cannot read: {exc.strerror}") from None
        except (ValueError, TypeError, KeyError, RecursionError):
            raise errors.KeyStoreError(f"{path}: not a valid key set file") from None
        try:
            ks = KeySet(tuple(self._entry(e) for e in entries), version)
        except ValueError as exc:
            raise errors.KeyStoreError(f"{path}: {exc}") from None
        self._install(stat_key, ks)
        return ks

    def _entry(self, entry: Any) -> SigningKey:
        if not isinstance(entry, dict) or not KID.fullmatch(str(entry.get("kid"))):
            raise ValueError("key entry without a valid kid")
        return SigningKey.from_record(entry, self._load_pem)

    def _load_pem(self, kid: str) -> rsa.RSAPrivateKey:
        path = self.directory / f"{kid}.pem"
        try:  # a missing file is FileNotFoundError: keyset.json lists a key whose PEM is gone
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)  # never follow a planted symlink
            with os.fdopen(fd, "rb") as file:
                check_key_file(path, file.fileno())
                data = file.read()
        except OSError as exc:
            msg = f"{path}: listed in {self._meta.name} but cannot be read: {exc.strerror}"
            raise errors.KeyStoreError(msg) from None
        try:  # the parser's message could quote input; say only what is wrong
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise errors.KeyStoreError(f"{path}: not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise errors.KeyStoreError(f"{path}: not an RSA key of at least 2048 bits")
        if thumbprint(key.public_key()) != kid:
            raise errors.KeyStoreError(f"{path}: key thumbprint does not match kid {kid}")
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
        except errors.KeyStoreError:
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
            raise errors.KeyStoreError(f"{path}: cannot write: {exc.strerror}") from None
