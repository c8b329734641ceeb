"""``hook-service simulate``: Prelude's side of the wire, pointed at any base URL.

Exit status: 0 when every check passed, 1 when one failed, 2 for a usage or configuration
error (a bad scenario file, an unreadable key file). Credentials come from the environment
(``SIMULATE_API_KEY``, ``SIMULATE_ADMIN_TOKEN``) so that they stay off the command line; the
flags exist for one-off use.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import anyio
import click
import httpx

from .client import ServiceClient
from .prelude import PreludeKeyError, PreludeKeys
from .report import Report
from .rotation import custom_step_request, simulate_rotation
from .runner import simulate_run
from .scenarios import ScenarioError, ScenarioFile, load_scenarios, shipped_scenarios

JWKS_SERVE_PATH = "/.well-known/jwks.json"


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group("simulate")
def simulate() -> None:
    """Play Prelude against a running service and check it honours the contract."""


_key_option = click.option(
    "--prelude-key",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="PEM file with the simulator's Prelude keys (RSA for hook signatures, Ed25519 for "
    "challenge tokens); the service must trust its JWKS (`simulate jwks`).",
)


def _base_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        raise click.BadParameter(f"not a usable URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter("expected an http:// or https:// base URL")
    if parts.username is not None or parts.password is not None:
        # The base URL is echoed in every report; credentials have their own options.
        raise click.BadParameter("must not carry credentials (user:password@)")
    if parts.query or parts.fragment:
        raise click.BadParameter("must not carry a query or fragment; paths are appended to it")
    return value


_url_option = click.option(
    "--url",
    required=True,
    callback=_base_url,
    help="Base URL of the service, e.g. http://127.0.0.1:8000.",
)
_internal_url_option = click.option(
    "--internal-url",
    callback=lambda ctx, param, value: None if value is None else _base_url(ctx, param, value),
    help="Base URL of the service's internal listener, for /verification-token and /admin/* "
    "[default: --url].",
)
_api_key_option = click.option(
    "--api-key",
    envvar="SIMULATE_API_KEY",
    required=True,
    help="API key for POST /verification-token [SIMULATE_API_KEY; prefer the variable].",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")


def _load_keys(path: Path) -> PreludeKeys:
    try:
        return PreludeKeys.load(path)
    except PreludeKeyError as exc:
        _fail(str(exc))


@simulate.command("jwks")
@click.option(
    "--prelude-key",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="PEM file with the simulator's Prelude keys.",
)
@click.option("--create", is_flag=True, help="Create the key file (mode 0600) if it is missing.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the JWKS here.")
@click.option("--serve", metavar="HOST:PORT", help="Serve the JWKS on a loopback address.")
def jwks_command(prelude_key: Path, create: bool, out: Path | None, serve: str | None) -> None:
    """Print, write or serve the JWKS of the simulator's Prelude keys (public keys only)."""
    if create and not prelude_key.exists():
        try:
            PreludeKeys.generate().save(prelude_key)
        except PreludeKeyError as exc:
            _fail(str(exc))
        click.echo(f"created {prelude_key} (mode 0600)", err=True)
    keys = _load_keys(prelude_key)
    document = json.dumps(keys.jwks(), indent=2)
    address = _loopback_address(serve) if serve else None
    if out is not None:
        try:
            out.write_text(document + "\n", encoding="utf-8")
        except OSError as exc:
            _fail(f"{out}: {exc.strerror}")
        click.echo(f"wrote {out}; start the service with HOOK_PRELUDE_JWKS_FILE={out}", err=True)
    if address is None:
        if out is None:
            click.echo(document)
        return
    _serve_jwks(document, *address)


def _loopback_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        number = int(port)
    except ValueError:
        _fail(f"--serve {value!r}: expected HOST:PORT, e.g. 127.0.0.1:9000")
    if not loopback:
        _fail(f"--serve {value!r}: only a loopback address is allowed (127.0.0.1, ::1, localhost)")
    if not 1 <= number <= 65535:
        _fail(f"--serve {value!r}: port must be from 1 to 65535")
    return host, number


def _serve_jwks(document: str, host: str, port: int) -> None:
    import uvicorn  # only this subcommand needs a server
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def jwks(request: Any) -> Response:
        return Response(document, media_type="application/json")

    app = Starlette(routes=[Route(JWKS_SERVE_PATH, jwks, methods=["GET"])])
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"serving Prelude's JWKS; start the service with "
        f"HOOK_PRELUDE_JWKS_URL=http://{shown}:{port}{JWKS_SERVE_PATH}",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


@simulate.command("run")
@click.argument("scenarios", type=click.Path(path_type=Path, dir_okay=False), required=False)
@_url_option
@_internal_url_option
@_key_option
@_api_key_option
@_json_option
def run_command(
    scenarios: Path | None,
    url: str,
    internal_url: str | None,
    prelude_key: Path,
    api_key: str,
    as_json: bool,
) -> None:
    """Send SCENARIOS (default: the scenarios for the bundled example policy) signed as
    Prelude would, check every answer, and take each custom step end to end."""
    loaded = _load_scenarios(scenarios)
    keys = _load_keys(prelude_key)

    async def play(http: httpx.AsyncClient) -> Report:
        service = ServiceClient(http, url, keys, api_key=api_key, internal_url=internal_url)
        return await simulate_run(service, loaded)

    _finish(_run(play), as_json)


@simulate.command("rotation")
@_url_option
@_internal_url_option
@_key_option
@_api_key_option
@click.option(
    "--admin-token",
    envvar="SIMULATE_ADMIN_TOKEN",
    required=True,
    help="Admin bearer token [SIMULATE_ADMIN_TOKEN; prefer the variable].",
)
@click.option(
    "--force", is_flag=True, help="Rotate even if the next key was published under 11 min ago."
)
@click.option(
    "--scenarios",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Scenario file whose first custom-step scenario issues the tokens [shipped example].",
)
@_json_option
def rotation_command(
    url: str,
    internal_url: str | None,
    prelude_key: Path,
    api_key: str,
    admin_token: str,
    force: bool,
    scenarios: Path | None,
    as_json: bool,
) -> None:
    """Issue tokens, rotate the keys through the admin API, issue more, and verify every token
    at every moment as Prelude would (JWKS cached 10 min, refetched on an unknown kid)."""
    try:
        spec = custom_step_request(_load_scenarios(scenarios))
    except ScenarioError as exc:
        _fail(str(exc))
    keys = _load_keys(prelude_key)

    async def play(http: httpx.AsyncClient) -> Report:
        service = ServiceClient(
            http, url, keys, api_key=api_key, admin_token=admin_token, internal_url=internal_url
        )
        return await simulate_rotation(service, spec, force=force)

    _finish(_run(play), as_json)


def _load_scenarios(path: Path | None) -> ScenarioFile:
    try:
        return load_scenarios(path or shipped_scenarios())
    except ScenarioError as exc:
        _fail(str(exc))


def _run(play: Callable[[httpx.AsyncClient], Awaitable[Report]]) -> Report:
    async def main() -> Report:
        async with httpx.AsyncClient() as http:
            return await play(http)

    return anyio.run(main)


def _finish(report: Report, as_json: bool) -> NoReturn:
    click.echo(report.render_json() if as_json else report.render_table())
    sys.exit(0 if report.passed else 1)
