"""``hook-service keys``: list, rotate, revoke, rewrap, import and export the signing keys of
the store ``HOOK_KEYSTORE`` selects, offline (docs/keys.md). Errors exit 2 with the reason,
nothing written; key audit events name the actor ``cli``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hook_service.collaborators import key_admin, open_key_store
from hook_service.errors import ConfigError, HookError, KeyStoreFailure
from hook_service.keys.admin import PRELUDE_CACHE_WARNING as PRELUDE_WARNING
from hook_service.keys.admin import KeyAdmin
from hook_service.keys.backends.base import KeyStore, SeedableKeyStore, key_problem
from hook_service.keys.backends.file import FileKeyStore
from hook_service.keys.lifecycle import KeySet
from hook_service.settings import Settings

KeyCommand = Callable[[KeyAdmin], Awaitable[Any]]


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
def keys() -> None:
    """Manage the signing keys in the store HOOK_KEYSTORE selects (the service follows)."""


CLI_ACTOR = "cli"  # the actor named in key audit events


def _open_keys(keys_dir: Path | None) -> tuple[Settings, KeyStore]:
    # Only the key settings matter here; the signature check is irrelevant offline.
    settings = Settings.from_env(insecure_skip_signature=True, keys_dir=keys_dir)
    return settings, open_key_store(settings)


def _run_keys(keys_dir: Path | None, command: KeyCommand) -> Any:
    """Load the existing key set (never create one: a typo must not make a new set), run
    ``command`` and return its result; errors exit 2 with the reason, nothing written."""
    try:
        settings, store = _open_keys(keys_dir)
        store.load()
        admin = key_admin(settings, store, time.time)

        async def run() -> Any:
            try:
                return await command(admin)
            finally:
                await store.aclose()

        return asyncio.run(run())
    except ConfigError as exc:
        _fail(str(exc))
    except KeyStoreFailure as exc:  # the operator sees the path and the reason
        _fail(exc.reason)
    except HookError as exc:
        _fail(exc.detail)


def _print_set(key_set: KeySet, warning: str | None = None) -> None:
    """The key set as the admin API shows it (never private material); warnings to stderr."""
    click.echo(json.dumps(key_set.to_json(time.time()), indent=2))
    if warning:
        click.echo(f"warning: {warning}", err=True)


_keys_dir_option = click.option(
    "--keys-dir", type=click.Path(path_type=Path), help="[HOOK_KEYS_DIR, default keys]."
)


async def _current(admin: KeyAdmin) -> KeySet:
    return admin.store.current()


@keys.command("list")
@_keys_dir_option
def keys_list(keys_dir: Path | None) -> None:
    """Print the key set."""
    _print_set(_run_keys(keys_dir, _current))


@keys.command("rotate")
@_keys_dir_option
@click.option(
    "--force",
    is_flag=True,
    help="Rotate even if the next key was published less than HOOK_KEY_PUBLISH_LEAD ago.",
)
def keys_rotate(keys_dir: Path | None, force: bool) -> None:
    """next -> active, active -> retired, new next."""
    _print_set(*_run_keys(keys_dir, lambda admin: admin.rotate(CLI_ACTOR, force=force)))


@keys.command("revoke")
@click.argument("kid")
@_keys_dir_option
def keys_revoke(kid: str, keys_dir: Path | None) -> None:
    """Drop KID from the JWKS now; if it was active, next is promoted."""
    _print_set(_run_keys(keys_dir, lambda admin: admin.revoke(kid, CLI_ACTOR)), PRELUDE_WARNING)


@keys.command("rewrap")
def keys_rewrap() -> None:
    """Re-encrypt every private key under the first HOOK_KEY_ENCRYPTION_KEYS entry (Redis)."""
    events = _run_keys(None, lambda admin: admin.rewrap(CLI_ACTOR))
    click.echo(f"rewrapped {len(events)} key(s); version {events[0].version if events else '-'}")


@keys.command("import")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option(
    "--from-dir",
    type=click.Path(path_type=Path),
    help="Copy the whole key set of this key directory (HOOK_KEYS_DIR layout) into Redis.",
)
@click.option("--replace", is_flag=True, help="With --from-dir: overwrite the set in Redis.")
def keys_import(file: Path | None, from_dir: Path | None, replace: bool) -> None:
    """Install the RSA private key in FILE (PEM) as the next key, or copy a key directory's
    whole set into the Redis key store (--from-dir)."""
    if (file is None) == (from_dir is None):
        _fail("give either FILE or --from-dir DIR")
    if file is not None:
        private_key = _read_private_key(file)
        _print_set(_run_keys(None, lambda admin: admin.import_next(private_key, CLI_ACTOR)))
        return
    assert from_dir is not None
    try:
        source = FileKeyStore(from_dir).load()
        _, store = _open_keys(None)
        if not isinstance(store, SeedableKeyStore):
            _fail(
                "--from-dir copies into the Redis key store: set HOOK_REDIS_URL or "
                "HOOK_REDIS_SENTINELS"
            )
        if not replace:
            _print_set(store.create_from(source, CLI_ACTOR))
            return
    except ConfigError as exc:
        _fail(str(exc))
    _print_set(_run_keys(None, lambda admin: admin.replace_all(source, CLI_ACTOR)))


def _read_private_key(file: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(file.read_bytes(), password=None)
    except OSError as exc:
        _fail(f"{file}: {exc.strerror}")
    except (ValueError, TypeError, UnsupportedAlgorithm):
        _fail(f"{file}: not an unencrypted PEM private key")
    problem = key_problem(key)
    if problem is not None or not isinstance(key, rsa.RSAPrivateKey):
        _fail(f"{file}: {problem}")
    return key


@keys.command("export-public")
@_keys_dir_option
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write here, not stdout.")
def keys_export_public(keys_dir: Path | None, output: Path | None) -> None:
    """Print the JWKS of the published public keys (never private material)."""
    key_set = _run_keys(keys_dir, _current)
    document = json.dumps(key_set.jwks(time.time()), indent=2)
    if output is None:
        click.echo(document)
        return
    try:
        output.write_text(document + "\n")
    except OSError as exc:
        _fail(f"{output}: {exc.strerror}")
