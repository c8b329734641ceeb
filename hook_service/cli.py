"""``hook-service``: serve, manage keys, check and try policies (design.md, "CLI").

This module holds the group and ``serve``; the other commands are their parts' own:
``keys`` in :mod:`hook_service.keys.cli`, ``policy`` in :mod:`hook_service.policy.cli`,
``simulate`` in :mod:`hook_service.simulator.cli`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from hook_service._variables import KEYSTORES, LOG_FORMATS, LOG_LEVELS, parse_variable
from hook_service.errors import ConfigError
from hook_service.keys.cli import keys
from hook_service.policy.cli import policy
from hook_service.settings import Settings
from hook_service.simulator.cli import simulate


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="prelude-stepup-hook")
def cli() -> None:
    """Backend for Prelude step-up authentication."""


def _variable_option(flag: str, help: str) -> Callable[[Callable[..., Any]], Any]:
    """A ``serve`` flag taking the text of its variable (``--key-publish-lead`` for
    ``HOOK_KEY_PUBLISH_LEAD``), parsed as the variable is, so that ``--key-publish-lead 11m``
    means what ``HOOK_KEY_PUBLISH_LEAD=11m`` does; a bad value is a usage error naming the flag
    and the variable."""
    name = "HOOK_" + flag.removeprefix("--").replace("-", "_").upper()

    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse_variable(name, value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(flag, callback=parse, help=f"{help} [{name}]")


# Secrets (HOOK_API_KEYS, HOOK_ADMIN_TOKENS, HOOK_KEY_ENCRYPTION_KEYS, HOOK_FACTS_KEY, a
# password in HOOK_REDIS_URL, HOOK_REDIS_SENTINEL_PASSWORD) have no flags on purpose: a command
# line is visible to every user of the host through ps and /proc. Every other variable has one.
@cli.command()
@click.option("--host", help="Listen address [HOOK_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Listen port [HOOK_PORT, default 8000].")
@click.option("--internal-host", help="Internal listener address [HOOK_INTERNAL_HOST, 127.0.0.1].")
@click.option("--internal-port", type=int, help="Internal listener port [HOOK_INTERNAL_PORT].")
@click.option("--workers", type=int, help="Worker processes [HOOK_WORKERS, default 1].")
@_variable_option("--read-timeout", "Time for a request's head and body (10s).")
@_variable_option("--redis-sentinels", "Sentinels host:port,host:port (instead of HOOK_REDIS_URL).")
@_variable_option("--redis-sentinel-master", "The master's name the Sentinels monitor.")
@_variable_option("--redis-min-replicas", "Replicas a claim, step or key change waits for (0).")
@click.option(
    "--max-connections", type=int, help="Per listener and worker [HOOK_MAX_CONNECTIONS, 4096]."
)
@click.option("--keys-dir", type=click.Path(path_type=Path), help="[HOOK_KEYS_DIR, keys].")
@click.option(
    "--redis-cluster",
    is_flag=True,
    default=None,
    help="HOOK_REDIS_URL names a node of a Redis Cluster [HOOK_REDIS_CLUSTER, off].",
)
@click.option("--policy-file", type=click.Path(path_type=Path), help="[HOOK_POLICY_FILE].")
@click.option(
    "--shadow-policy-file",
    type=click.Path(path_type=Path),
    help="A policy decided beside the live one, never answered [HOOK_SHADOW_POLICY_FILE].",
)
@_variable_option("--prelude-jwks-url", "Prelude app JWKS URL.")
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
    "--log-format", type=click.Choice(LOG_FORMATS), help="Log lines [HOOK_LOG_FORMAT, text]."
)
@click.option(
    "--log-client",
    is_flag=True,
    default=None,
    help="Log the client IP address of each request [HOOK_LOG_CLIENT, off].",
)
@_variable_option("--admin-token-labels", "Names of the admin tokens, same order, e.g. ops,ci.")
@click.option(
    "--keystore",
    type=click.Choice(KEYSTORES),
    help="Where the signing keys live [HOOK_KEYSTORE, redis with Redis, else file].",
)
@_variable_option(
    "--key-publish-lead", "How long a next key is published before it may sign (11m)."
)
@_variable_option("--key-rotation-interval", "Automatic rotation, e.g. 30d (default off).")
@click.option(
    "--replica-id",
    help="This instance in the key audit events [HOOK_REPLICA_ID, <hostname>:<pid>].",
)
@_variable_option("--facts-retention", "How long a user's history is kept (30d).")
@_variable_option("--facts-flag-ttl", "How long a user reported as fraud stays flagged (7d).")
@_variable_option("--geoip-db", "A MaxMind-format city database (optional).")
@_variable_option("--replay-window", "A repeated hook body within this is a replay (10m).")
@click.option(
    "--http",
    type=click.Choice(("auto", "httptools", "h11")),
    default="auto",
    help="HTTP/1.1 parser, both with the same limits [auto: httptools].",
)
@click.option(
    "--dev",
    is_flag=True,
    help="Run with no configuration: in-memory store, keys under keys/, a generated API key "
    "and admin token printed once, signature check off unless a Prelude JWKS is given.",
)
def serve(dev: bool, http: str, **flags: Any) -> None:
    """Run the HTTP service: its public listener, the internal one when configured, in one
    process or --workers N (docs/deploying.md)."""
    from hook_service import server  # imported here: the other commands must not pay for uvicorn

    try:
        settings = server.dev_settings(flags, click.echo) if dev else Settings.from_env(**flags)
        server.serve(settings, http=http)
    except ConfigError as exc:
        _fail(str(exc))


cli.add_command(keys)
cli.add_command(policy)
cli.add_command(simulate)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="hook-service")
