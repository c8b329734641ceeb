"""``hook-service``: serve, manage keys, check and try policies (design.md, "CLI")."""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from .errors import ConfigError, HookError
from .hook import parse_hook_request
from .keys import KeySet
from .keystore import FileKeyStore
from .policy import Policy
from .services import configure_logging
from .settings import LOG_LEVELS, Settings
from .simulator.cli import simulate


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="prelude-stepup-hook")
def cli() -> None:
    """Backend for Prelude step-up authentication."""


# Secrets (HOOK_API_KEYS, HOOK_ADMIN_TOKENS, a password in HOOK_REDIS_URL) have no flags on
# purpose: a command line is visible to every user of the host through ps and /proc.
@cli.command()
@click.option("--host", help="Listen address [HOOK_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Listen port [HOOK_PORT, default 8000].")
@click.option("--keys-dir", type=click.Path(path_type=Path), help="[HOOK_KEYS_DIR, keys].")
@click.option("--policy-file", type=click.Path(path_type=Path), help="[HOOK_POLICY_FILE].")
@click.option("--prelude-jwks-url", help="Prelude app JWKS URL [HOOK_PRELUDE_JWKS_URL].")
@click.option(
    "--prelude-jwks-file", type=click.Path(path_type=Path), help="[HOOK_PRELUDE_JWKS_FILE]."
)
@click.option(
    "--insecure-skip-signature",
    is_flag=True,
    default=None,
    help="Development only [HOOK_INSECURE_SKIP_SIGNATURE].",
)
@click.option("--token-ttl", type=int, help="Verification-token lifetime [HOOK_TOKEN_TTL].")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="[HOOK_LOG_LEVEL, INFO].")
@click.option(
    "--dev",
    is_flag=True,
    help="Run with no configuration: in-memory store, keys under keys/, a generated API key "
    "and admin token printed once, signature check off unless a Prelude JWKS is given.",
)
def serve(dev: bool, **flags: Any) -> None:
    """Run the HTTP service (one process; see the README for several workers)."""
    import uvicorn  # imported here: the other commands must not pay for it

    from .app import create_app

    try:
        settings = _dev_settings(flags) if dev else Settings.from_env(**flags)
        configure_logging(settings)
        app = create_app(settings)
    except ConfigError as exc:
        _fail(str(exc))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def _dev_settings(flags: dict[str, Any]) -> Settings:
    api_key = "dev-api-" + secrets.token_urlsafe(24)
    admin_token = "dev-admin-" + secrets.token_urlsafe(24)
    settings = Settings.from_env(
        **{**flags, "insecure_skip_signature": True},
        api_keys=(api_key,),
        admin_tokens=(admin_token,),
    )
    # --dev is "no configuration": always the in-memory store, and the signature check comes
    # back on as soon as a Prelude JWKS is given.
    settings = settings.replace(
        redis_url=None, insecure_skip_signature=not settings.signature_source
    )
    # Printed once, to the terminal, never to the log.
    click.echo(f"dev API key (POST /verification-token): {api_key}")
    click.echo(f"dev admin token (/admin/*):             {admin_token}")
    click.echo(f"keys directory: {settings.keys_dir.resolve()}")
    return settings


@cli.group()
def keys() -> None:
    """Manage the signing keys in HOOK_KEYS_DIR (the running service picks changes up)."""


KeyAction = Callable[[FileKeyStore, Settings], KeySet]


def _run_keys(keys_dir: Path | None, action: KeyAction) -> None:
    """Apply ``action`` to the existing key set and print the result (never private material)."""
    try:
        # Only keys_dir and token_ttl matter here; the signature check is irrelevant offline.
        settings = Settings.from_env(insecure_skip_signature=True, keys_dir=keys_dir)
        store = FileKeyStore(settings.keys_dir)
        store.load()  # a mistyped directory is an error, not a new key set
        key_set = action(store, settings)
    except ConfigError as exc:
        _fail(str(exc))
    except HookError as exc:
        _fail(exc.detail)
    click.echo(json.dumps(key_set.to_json(time.time()), indent=2))


_keys_dir_option = click.option(
    "--keys-dir", type=click.Path(path_type=Path), help="[HOOK_KEYS_DIR, default keys]."
)


@keys.command("list")
@_keys_dir_option
def keys_list(keys_dir: Path | None) -> None:
    """Print the key set."""
    _run_keys(keys_dir, lambda store, settings: store.current())


@keys.command("rotate")
@_keys_dir_option
@click.option(
    "--force",
    is_flag=True,
    help="Rotate even if the next key was published less than 11 minutes ago.",
)
def keys_rotate(keys_dir: Path | None, force: bool) -> None:
    """next -> active, active -> retired, new next."""
    _run_keys(keys_dir, lambda store, settings: store.rotate(settings.token_ttl, force=force))


@keys.command("revoke")
@click.argument("kid")
@_keys_dir_option
def keys_revoke(kid: str, keys_dir: Path | None) -> None:
    """Drop KID from the JWKS now; if it was active, next is promoted."""
    _run_keys(keys_dir, lambda store, settings: store.revoke(kid))


@cli.group()
def policy() -> None:
    """Check a policy file, or try it on a hook request."""


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def policy_check(file: Path) -> None:
    """Validate FILE against Prelude's limits; exit 2 with the reason if it is invalid."""
    loaded = _load_policy(file)
    click.echo(f"{file}: ok ({len(loaded.custom_steps)} custom step(s) declared)")


@policy.command("eval")
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("request", type=click.Path(path_type=Path))
def policy_eval(file: Path, request: Path) -> None:
    """Decide REQUEST.json (a hook request body) with FILE; print the decision and the rule."""
    loaded = _load_policy(file)
    try:
        hook_request = parse_hook_request(request.read_bytes())
    except OSError as exc:
        _fail(f"{request}: {exc.strerror}")
    except HookError as exc:
        _fail(f"{request}: {exc.detail}")
    decision = loaded.decide(hook_request)
    click.echo(json.dumps({"rule": decision.rule, "decision": decision.to_json()}, indent=2))
    if decision.error:
        click.echo(f"evaluation error: {decision.error}", err=True)


def _load_policy(file: Path) -> Policy:
    try:
        return Policy.load(file)
    except ConfigError as exc:
        _fail(str(exc))


cli.add_command(simulate)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="hook-service")
