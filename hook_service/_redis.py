"""What the Redis backends share: one client factory and one guard for Redis errors.

:mod:`hook_service.store.redis` (pending steps) and :mod:`hook_service.keys.backends.redis`
(the shared key set) are the only modules that use it. A Redis URL may carry a password (in
the user info or a ``password=`` query parameter); :class:`RedisSite` names the server without
it, and scrubs it from redis-py's messages before they reach a log or an error.

With ``cluster`` (``HOOK_REDIS_CLUSTER``) the URL names any node of a Redis Cluster and the
clients are redis-py's ``RedisCluster`` (:func:`cluster_client`, :func:`sync_cluster_client`):
each command goes to the node of its keys' slot, so every script's keys share one hash tag
(docs/deploying.md, "Redis Cluster").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from hook_service import errors
from hook_service.settings import redact_url

ERRORS = (RedisError, OSError, RedisClusterException)
"""What a Redis call raises when the server is unreachable, slow or refuses (timeouts are
OSErrors too; a cluster client's own refusals, e.g. no reachable node, are
RedisClusterExceptions)."""

AsyncClient = Redis | RedisCluster
"""The asyncio client :meth:`RedisSite.client` gives: one server, or a cluster."""
SyncClient = redis.Redis | redis.RedisCluster


_T = TypeVar("_T")


def _url_secrets(url: str) -> tuple[str, ...]:
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        return ()
    return tuple({s for v in found if v for s in (v, unquote(v))})


class RedisSite:
    """One Redis server as the service talks about it and to it."""

    def __init__(self, url: str, *, cluster: bool = False) -> None:
        self.url = url
        self.cluster = cluster
        """The URL names one node of a Redis Cluster (``HOOK_REDIS_CLUSTER``)."""
        self.location = redact_url(url)
        """The URL without user info, query or fragment: safe to log."""
        self._secrets = _url_secrets(url)

    def __repr__(self) -> str:
        return f"RedisSite({self.location!r})"

    def scrub(self, message: str) -> str:
        """``message`` with every secret of the URL replaced by ``***``."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def client(
        self, *, timeout: float, max_connections: int | None = None, retry_closed: bool = False
    ) -> AsyncClient:
        """An asyncio client: ``timeout`` bounds connecting, each reply and (with
        ``max_connections``, a blocking pool) waiting for a pooled connection, so an
        unreachable server fails fast instead of hanging requests. A bad URL is a
        :class:`errors.ConfigError` naming the server, never its password.

        ``retry_closed``: a command that fails with a connection error (typically "Connection
        closed by server" on a pooled connection after Redis restarted, which redis-py's
        check on checkout does not always see) is sent once more, at once, on a fresh
        connection. Only for callers whose every command is safe to run twice; never after
        a timeout, which would double the budget."""
        options = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # Otherwise no retries: each call fails within ~timeout, and a retried script
            # could run twice.
            "retry": (
                Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
                if retry_closed
                else Retry(NoBackoff(), 0)
            ),
            "decode_responses": True,
            # Lone surrogates (legal in JSON strings) must round-trip, not crash the encoder.
            "encoding_errors": "surrogatepass",
        }
        if self.cluster:
            return self._configured(cluster_client, self.url, options, max_connections)
        try:
            if max_connections is None:
                pool = ConnectionPool.from_url(self.url, **options)
            else:
                pool = BlockingConnectionPool.from_url(
                    self.url, max_connections=max_connections, timeout=timeout, **options
                )
        except ValueError as exc:
            # `from None`: the original may quote parts of the URL; the message is scrubbed.
            raise errors.ConfigError(
                f"invalid redis URL {self.location}: {self.scrub(str(exc))}"
            ) from None
        return Redis.from_pool(pool)

    def sync_client(self, *, timeout: float) -> SyncClient:
        """A synchronous client, for start-up and the CLI."""
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.cluster:
            return self._configured(sync_cluster_client, self.url, options)
        return redis.Redis.from_url(self.url, **options)

    def _configured(self, make: Callable[..., _T], *args: Any) -> _T:
        """``make(*args)``; a URL redis-py refuses is a :class:`errors.ConfigError` naming the
        server, never its password."""
        try:
            return make(*args)
        except ValueError as exc:
            raise errors.ConfigError(
                f"invalid redis URL {self.location}: {self.scrub(str(exc))}"
            ) from None

    @contextlib.contextmanager
    def guard(
        self,
        operation: str,
        failed: Callable[[str], Exception],
        *,
        log: logging.Logger | None = None,
    ) -> Iterator[None]:
        """Turn a Redis failure inside into ``failed(<error class name>)``, the one thing a
        client may learn of it; with ``log``, first a warning naming the operation, the
        server and redis-py's message, scrubbed."""
        try:
            yield
        except ERRORS as exc:
            name = type(exc).__name__
            if log is not None:
                message = self.scrub(str(exc))
                log.warning(
                    "redis %s failed at %s: %s: %s", operation, self.location, name, message
                )
            raise failed(name) from None


# --- Redis Cluster (HOOK_REDIS_CLUSTER) ------------------------------------------------------


class _Cluster(RedisCluster):
    """redis-py's asyncio ``RedisCluster``, whose first commands wait for one to read the slot
    map: commands that race the first initialisation lose their connections (redis-py 8.1:
    a burst of hook calls on a fresh replica would all fail as ConnectionError)."""

    _first: asyncio.Lock | None = None
    _mapped = False

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self._mapped:
            self._first = self._first or asyncio.Lock()
            async with self._first:
                if not self._mapped:
                    await self.initialize()
                    self._mapped = True
        return await super().execute_command(*args, **kwargs)


def cluster_client(url: str, options: dict[str, Any], max_connections: int | None) -> RedisCluster:
    """An asyncio ``RedisCluster`` from any node's URL, with the single server's ``options``.

    Its ``retry`` is the cluster-level one (a command that met a connection error is sent
    again after the slot map is refreshed): the same number of attempts as on one server, so
    a script runs twice only where that is safe. MOVED and ASK redirections are followed
    apart from it (the command had not run). ``max_connections`` is per node; when a node's
    connections are all busy a command fails at once (redis-py has no blocking pool for a
    cluster), which the callers' guards turn into "unavailable"."""
    extra = {} if max_connections is None else {"max_connections": max_connections}
    # No client-side replica reads: every read must see the last acknowledged write.
    return _Cluster.from_url(url, **options, **extra)


def sync_cluster_client(url: str, options: dict[str, Any]) -> redis.RedisCluster:
    """A synchronous ``RedisCluster`` (start-up, the CLI); it reads the slot map now, so an
    unreachable cluster fails here (a :data:`ERRORS` one, for the caller's guard)."""
    return redis.RedisCluster.from_url(url, **options)
