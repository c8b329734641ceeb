"""Who may own and write our key material on disk.

Whoever can write the key directory can plant a key set naming their own private key, which
the service would then sign with and publish. These checks decide which ownership and modes
are trustworthy; :mod:`hook_service.keys.backends.file` applies them. Errors name paths, never
contents.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from hook_service import errors, logs

log = logging.getLogger(logs.KEYSTORE)


def _trusted_owner(uid: int) -> bool:
    # Files of root or of ourselves. Root itself (the keys CLI run by an operator) may read
    # anything it is asked to manage; what it writes is handed to the directory's owner.
    euid = os.geteuid()
    return euid == 0 or uid in (euid, 0)


def _our_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_directory(directory: Path) -> None:
    """Refuse a directory that someone else could write; tighten one we own.

    Group-writable is accepted when the group is one of ours (Kubernetes ``fsGroup`` volumes,
    umask 002 checkouts); a read-only file system cannot be planted into at all."""
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise errors.KeyStoreFailure(f"{directory}: cannot stat: {exc.strerror}") from None
    if not os.access(directory, os.R_OK | os.X_OK):
        raise errors.KeyStoreFailure(f"{directory}: this user cannot read it")
    if not _trusted_owner(st.st_uid):
        raise errors.KeyStoreFailure(
            f"{directory}: owned by uid {st.st_uid}, neither this user nor root"
        )
    if _read_only(directory):
        return
    unsafe = st.st_mode & 0o002
    if st.st_mode & 0o020 and st.st_gid not in _our_groups():
        unsafe |= 0o020
    if not unsafe:
        return
    shown = stat.filemode(st.st_mode)
    if st.st_uid != os.geteuid():
        raise errors.KeyStoreFailure(
            f"{directory}: {shown} lets other users write it; remove their write access"
        )
    try:
        os.chmod(directory, stat.S_IMODE(st.st_mode) & ~unsafe)
    except OSError as exc:
        raise errors.KeyStoreFailure(f"{directory}: {shown} is too open: {exc.strerror}") from None
    log.warning("%s: %s let other users write it; removed their write access", directory, shown)


def check_key_file(path: Path, fd: int) -> None:
    """A private key file must belong to a trusted owner and be readable by its owner only."""
    st = os.fstat(fd)
    if not _trusted_owner(st.st_uid):
        raise errors.KeyStoreFailure(
            f"{path}: owned by uid {st.st_uid}, neither this user nor root"
        )
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    try:
        os.fchmod(fd, 0o600)
    except OSError as exc:
        msg = f"{path}: mode {mode:o} is too open and cannot be set to 600: {exc.strerror}"
        raise errors.KeyStoreFailure(msg) from None
    log.warning("%s: mode %o was too open, changed to 600", path, mode)


def hand_over(fd: int, directory: Path) -> None:
    """When root writes into a directory that belongs to the service's user (the keys CLI run
    by an operator), give the new file to that user, so the service can still read it."""
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if st.st_uid != 0:
        os.fchown(fd, st.st_uid, st.st_gid)
