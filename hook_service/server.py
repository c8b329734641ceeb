"""``hook-service serve``: uvicorn with the service's listeners, limits and workers.

One process (or each of ``HOOK_WORKERS`` worker processes) runs one event loop with one app
and one set of collaborators, serving one or two sockets bound here, in the parent, before any
worker starts (docs/deploying.md, "Listeners, limits and workers"):

* the **public** listener (``HOOK_HOST``/``HOOK_PORT``): what Prelude and the world need;
* the **internal** listener (``HOOK_INTERNAL_HOST``/``HOOK_INTERNAL_PORT``, when set): every
  path, including those only the company's backend and operators may call.

:class:`ListenerGate` tells them apart by the port a connection came in on. The HTTP
protocols are uvicorn's own with the bounds of :mod:`hook_service.protocols`; uvicorn's
access log is off (it would log raw client addresses).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import resource
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from uvicorn import Server
from uvicorn.supervisors import Multiprocess

from hook_service import logs, metrics_export
from hook_service.endpoints.http import json_response
from hook_service.errors import NotFound, SettingsError
from hook_service.logs import configure_logging, logging_config
from hook_service.protocols import PROTOCOLS, HookConfig
from hook_service.settings import Settings

logger = logging.getLogger(logs.SERVICE)

# With an internal listener, the public one serves only these (design.md, "Operations"):
# an allow-list, so that a route added later (/outcomes, /metrics, ...) is internal unless it
# is added here on purpose.
PUBLIC_PATHS = frozenset({"/hooks/stepup", "/.well-known/jwks.json", "/healthz", "/readyz"})
# File descriptors kept for everything but client connections: Redis pools, the key
# directory, the log, the listening sockets.
RESERVED_FILES = 256

ASGIApp = Any  # a Starlette app, or one in a ListenerGate


class ListenerGate:
    """ASGI wrapper: on any port but ``internal_port``, a path outside :data:`PUBLIC_PATHS`
    is answered 404 ``not_found``, exactly as a path that does not exist, before the app
    sees it. ``scope["path"]`` is the decoded path the router matches, so the gate and the
    routes read the same path."""

    def __init__(self, app: ASGIApp, internal_port: int) -> None:
        self.app = app
        self.internal_port = internal_port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            server = scope.get("server")
            if not server or server[1] != self.internal_port:
                error = NotFound("Not Found")
                response = json_response(error.to_json(), status_code=error.status_code)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @property
    def state(self) -> Any:  # the app's state, as tests and tools reach it
        return self.app.state


class FrozenAfterStartup:
    """ASGI wrapper: once the app's start-up is complete, a full garbage collection and
    ``gc.freeze()``, so that what start-up made and never frees (the policy and its CEL
    programs, ua-parser's tables, the keys, the imported modules: about 100,000 objects) is
    never scanned again. A full collection scans every tracked object: without the freeze, one
    took up to 59 ms of a loaded worker's loop, every request in flight waiting (the hook's
    p99 tail; bench/run.py). Only ``serve`` wraps its app: a test process builds many apps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_frozen(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await self.app(scope, receive, send_frozen)

    @property
    def state(self) -> Any:  # the app's state, as tests and tools reach it
        return self.app.state


def build_app(settings: Settings) -> ASGIApp:
    """The app one worker serves on every listener; raises ``ConfigError`` at start-up.

    Called in each worker process (they are spawned, not forked, so logging is set up here)."""
    from hook_service.app import create_app

    configure_logging(settings)
    app = create_app(settings)
    address = settings.internal_address
    return FrozenAfterStartup(app if address is None else ListenerGate(app, address[1]))


def check_in_parent(settings: Settings) -> None:
    """Build the app once and close it again, before any worker starts: a bad policy file or
    key set stops ``serve`` with its message (not N workers crashing in turn), and a new key
    set is created once, not raced by the workers."""
    app = build_app(settings)
    asyncio.run(app.state.services.aclose())


def uvicorn_config(settings: Settings, app: Any, *, http: str = "auto", **kw: Any) -> HookConfig:
    """uvicorn's configuration for ``serve``: bounded protocols, no access log, no
    WebSockets, lifespan on (a start-up failure stops the process)."""
    if http == "auto":
        http = "httptools"
    return HookConfig(
        app,
        read_timeout=settings.read_timeout,
        max_connections=settings.max_connections,
        http=PROTOCOLS[http],
        ws="none",
        lifespan="on",
        access_log=False,  # the service writes its own line per request (docs/operations.md)
        log_config=logging_config(settings),
        log_level=settings.log_level.lower(),
        workers=settings.workers,
        **kw,
    )


def bind(host: str, port: int, variable: str) -> socket.socket:
    """A listening socket on ``host:port``; :class:`SettingsError` naming ``variable``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise SettingsError(f"{variable}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def listeners(settings: Settings) -> list[socket.socket]:
    """The public socket, then the internal one when configured."""
    sockets = [bind(settings.host, settings.port, "HOOK_PORT")]
    address = settings.internal_address
    if address is not None:
        try:
            sockets.append(bind(*address, "HOOK_INTERNAL_PORT"))
        except SettingsError:
            sockets[0].close()
            raise
    return sockets


def ensure_open_files(settings: Settings) -> None:
    """Raise the soft open-file limit up to the hard one if the connection cap needs it
    (workers inherit it); refuse to start, naming ``HOOK_MAX_CONNECTIONS``, if even the hard
    limit is too low: the cap must fail cleanly before ``accept`` does."""
    count = 1 if settings.internal_address is None else 2
    needed = settings.max_connections * count + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SettingsError(
                f"HOOK_MAX_CONNECTIONS={settings.max_connections} on {count} listener(s) needs "
                f"{needed} open files, but the limit is {hard}: lower it or raise the limit "
                "(ulimit -n, LimitNOFILE=, docker --ulimit nofile=)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextmanager
def run_scope(settings: Settings) -> Iterator[None]:
    """Per-run state around all the workers: entered in the parent before the first worker
    starts, left after the last one has stopped (with one worker, around the server).

    What the workers share on this host: with several workers, the directory of their
    metric files (prometheus-client's multiprocess mode), exported to the spawned workers
    through the environment, and removed after the last one stopped."""
    if settings.workers == 1:
        yield
        return
    directory = metrics_export.prepare_multiprocess(settings, os.environ)
    try:
        yield
    finally:
        metrics_export.cleanup_multiprocess(directory, os.environ)


def dev_settings(flags: dict[str, Any], say: Callable[[str], Any]) -> Settings:
    """``serve --dev``: no configuration, the in-memory store, keys under ``keys/``, and a
    generated API key and admin token handed to ``say`` (the terminal, never the log)."""
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
        redis_url=None,
        redis_sentinels=(),
        redis_sentinel_master=None,
        redis_sentinel_password=None,
        redis_min_replicas=0,
        keystore="file",
        insecure_skip_signature=not settings.signature_source,
    )
    say(f"dev API key (POST /verification-token): {api_key}")
    say(f"dev admin token (/admin/*):             {admin_token}")
    say(f"keys directory: {settings.keys_dir.resolve()}")
    return settings


def serve(settings: Settings, *, http: str = "auto") -> None:
    """Run the service until SIGINT or SIGTERM; ``ConfigError`` before anything is served."""
    ensure_open_files(settings)
    if settings.workers == 1:
        config = uvicorn_config(settings, build_app(settings), http=http)
    else:
        check_in_parent(settings)
        factory = functools.partial(build_app, settings)  # pickled into each spawned worker
        config = uvicorn_config(settings, factory, http=http, factory=True)
    sockets = listeners(settings)
    try:
        _log_listening(settings)
        with run_scope(settings):
            if settings.workers == 1:
                Server(config).run(sockets=sockets)
            else:
                Multiprocess(config, sockets=sockets).run()
    finally:
        for sock in sockets:
            sock.close()


def _log_listening(settings: Settings) -> None:
    address = settings.internal_address
    internal = "none (one listener)" if address is None else f"http://{address[0]}:{address[1]}"
    logger.info(
        "listening: public http://%s:%d, internal %s; %d worker(s), read timeout %d s, "
        "at most %d connections per listener and worker",
        settings.host,
        settings.port,
        internal,
        settings.workers,
        settings.read_timeout,
        settings.max_connections,
    )
