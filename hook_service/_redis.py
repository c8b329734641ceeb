"""What the Redis backends share: one client factory, one guard for Redis errors, and the
write that waits for replicas.

:mod:`hook_service.store.redis` (pending steps), :mod:`hook_service.keys.backends.redis` (the
shared key set) and :mod:`hook_service.facts.redis` are the only modules that use it. Each
reaches Redis as a :class:`~hook_service._redis_target.RedisTarget` says: one server by URL,
or the master a set of Sentinels names (redis-py's ``SentinelConnectionPool``: each new
connection asks the Sentinels where the master is, and a connection that meets ``READONLY`` (a
demoted master) is dropped, so a failover is followed without a restart), or a Redis Cluster
(``HOOK_REDIS_CLUSTER``: the URL names any node, and the clients are redis-py's
``RedisCluster``, :mod:`hook_service._redis_cluster`: each command goes to
the node of its keys' slot, so every script's keys share one hash tag; docs/deploying.md,
"Redis Cluster"). A URL may carry a password (in the user info or a ``password=`` query
parameter), and Sentinel has one of its own; :class:`RedisSite` names the deployment without
them, and scrubs them from redis-py's messages before they reach a log or an error.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.sentinel
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from hook_service import _redis_lane, errors
from hook_service._redis_batch import BatchingRedis
from hook_service._redis_cluster import cluster_client, sync_cluster_client
from hook_service._redis_target import RedisTarget
from hook_service._resp import pack_with_hiredis
from hook_service._variables import redact_url

ERRORS = (RedisError, OSError, RedisClusterException)
"""What a Redis call raises when the server is unreachable, slow or refuses (timeouts are
OSErrors too; a cluster client's own refusals, e.g. no reachable node, are
RedisClusterExceptions)."""

AsyncClient = Redis | RedisCluster
"""The asyncio client :meth:`RedisSite.client` gives: one server, or a cluster."""
SyncClient = redis.Redis | redis.RedisCluster


_T = TypeVar("_T")


# Redis ends a WAIT on its clock tick, up to 1/hz (100 ms at the default hz 10) after its
# timeout: the timeout sent is this much earlier than the caller's deadline.
WAIT_LATE = 0.11


def _url_secrets(url: str) -> tuple[str, ...]:
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        return ()
    return tuple({s for v in found if v for s in (v, unquote(v))})


class NotReplicated(RedisError):
    """A write reached the master but fewer than ``HOOK_REDIS_MIN_REPLICAS`` replicas
    acknowledged it within its budget: it may be lost in a failover, so it is not answered as
    done (the guards turn it into the store's "unavailable" error)."""


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master pool with the blocking pool's bounded wait for a free connection."""


class _SentinelClient(BatchingRedis):
    """A master's client that also closes the connections to the Sentinels it asks."""

    # Not `sentinel`: that is the client's SENTINEL command.
    manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.manager is not None:
            await self.manager.aclose()


class _SyncSentinelClient(redis.Redis):
    manager: redis.sentinel.Sentinel | None = None

    def close(self) -> None:
        super().close()
        for client in self.manager.sentinels if self.manager is not None else ():
            client.close()


class RedisSite:
    """One Redis deployment as the service talks about it and to it."""

    def __init__(self, target: RedisTarget | str, *, cluster: bool = False) -> None:
        self.target = RedisTarget.of(target, cluster=cluster)
        url, master = self.target.url, self.target.master
        self.location = (
            redact_url(url) if url is not None else f"{master} via {self.target.sentinel_list}"
        )
        """The URL without user info, query or fragment, or the master's name and the
        Sentinels: safe to log."""
        password = self.target.password
        self._secrets = _url_secrets(url) if url is not None else (password,) if password else ()

    def __repr__(self) -> str:
        return f"RedisSite({self.location!r})"

    @property
    def cluster(self) -> bool:
        """The URL names one node of a Redis Cluster (``HOOK_REDIS_CLUSTER``)."""
        return self.target.cluster

    @property
    def variable(self) -> str:
        """The variable that names this deployment (``HOOK_REDIS_URL`` or
        ``HOOK_REDIS_SENTINELS``), for start-up errors."""
        return self.target.variable

    @property
    def min_replicas(self) -> int:
        """``HOOK_REDIS_MIN_REPLICAS``: replicas a write that must not be lost waits for."""
        return self.target.min_replicas

    def scrub(self, message: str) -> str:
        """``message`` with every secret of the target replaced by ``***``."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def client(
        self, *, timeout: float, max_connections: int | None = None, retry_closed: bool = False
    ) -> AsyncClient:
        """An asyncio client: ``timeout`` bounds connecting, each reply and (with
        ``max_connections``, a blocking pool) waiting for a pooled connection, so an
        unreachable server fails fast instead of hanging requests. A bad URL is a
        :class:`errors.ConfigError` naming the server, never its password. With Sentinel,
        one pool per call (redis-py's ``master_for``): call it once per store and keep it.

        ``retry_closed``: a command that fails with a connection error (typically "Connection
        closed by server" on a pooled connection after Redis restarted or Sentinel demoted
        it, which redis-py's check on checkout does not always see; or ``READONLY``) is sent
        once more, at once, on a fresh connection (to the master Sentinel names now). Only for
        callers whose every command is safe to run twice; never after a timeout, which would
        double the budget. Script calls of a one-server or Sentinel client go over its lane
        (:mod:`hook_service._redis_lane`, one connection beside the pool, the same guarantees)."""
        options: dict[str, Any] = {
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
        client = self._client(options, timeout, max_connections)
        pack_with_hiredis(client)
        if isinstance(client, BatchingRedis) and _redis_lane.suits(client.connection_pool):
            # After the packing: the lane's connections are of the pool's class.
            client.lane = _redis_lane.Lane(client.connection_pool, retry_closed=retry_closed)
        return client

    def _client(
        self, options: dict[str, Any], timeout: float, max_connections: int | None
    ) -> AsyncClient:
        if self.target.cluster:
            # Per node, and never blocking: redis-py has no blocking pool for a cluster.
            return self._configured(cluster_client, self.target.url, options, max_connections)
        if max_connections is not None:
            options |= {"max_connections": max_connections, "timeout": timeout}
        if self.target.url is None:
            return self._sentinel_client(options)
        try:
            if max_connections is None:
                pool = ConnectionPool.from_url(self.target.url, **options)
            else:
                pool = BlockingConnectionPool.from_url(self.target.url, **options)
        except ValueError as exc:
            # `from None`: the original may quote parts of the URL; the message is scrubbed.
            raise errors.ConfigError(
                f"invalid redis URL {self.location}: {self.scrub(str(exc))}"
            ) from None
        return BatchingRedis.from_pool(pool)

    def _sentinel_client(self, options: dict[str, Any]) -> Redis:
        target = self.target
        assert target.master is not None
        password = {"password": target.password} if target.password else {}
        asking = {"socket_timeout": options["socket_timeout"], "retry": Retry(NoBackoff(), 0)}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            target.sentinels, sentinel_kwargs={**asking, **password}
        )
        blocking = "max_connections" in options
        client = sentinel.master_for(
            target.master,
            redis_class=_SentinelClient,
            connection_pool_class=_BlockingSentinelPool if blocking else SentinelConnectionPool,
            **options,
            **password,
        )
        assert isinstance(client, _SentinelClient)
        client.manager = sentinel
        return client

    def sync_client(self, *, timeout: float) -> SyncClient:
        """A synchronous client, for start-up and the CLI."""
        target = self.target
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if target.cluster:
            return self._configured(sync_cluster_client, target.url, options)
        if target.url is not None:
            return redis.Redis.from_url(target.url, **options)
        assert target.master is not None
        password = {"password": target.password} if target.password else {}
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            target.sentinels, sentinel_kwargs={"socket_timeout": timeout, **password}
        )
        client = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.master,
            redis_class=_SyncSentinelClient,
            **options,
            **password,
        )
        assert isinstance(client, _SyncSentinelClient)
        client.manager = sentinel
        return client

    def _configured(self, make: Callable[..., _T], *args: Any) -> _T:
        """``make(*args)``; a URL redis-py refuses is a :class:`errors.ConfigError` naming the
        server, never its password."""
        try:
            return make(*args)
        except ValueError as exc:
            raise errors.ConfigError(
                f"invalid redis URL {self.location}: {self.scrub(str(exc))}"
            ) from None

    async def write(
        self,
        client: AsyncClient,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[int | str],
        *,
        until: float,
    ) -> Any:
        """Run ``script``, a write that must not be lost (a claim, a pending step, a key-set
        change). With ``HOOK_REDIS_MIN_REPLICAS=N`` (> 0) it is followed by ``WAIT N`` on the
        same connection, in the same round trip, waiting at most until the monotonic time
        ``until`` (the caller's budget); fewer acknowledgements raise :class:`NotReplicated`
        (the write is on the master, unconfirmed). Without, one ``EVALSHA``."""
        replicas = self.min_replicas
        if not replicas:
            return await script(keys=keys, args=args)
        # Never a cluster (RedisTarget refuses min_replicas there): a cluster client does not
        # promise to send WAIT on the connection that ran the script.
        assert isinstance(client, Redis)
        # Never WAIT 0 (it would block for ever); 1 ms is "no time left".
        wait_ms = max(1, math.floor((until - WAIT_LATE - time.monotonic()) * 1000))
        async with client.pipeline(transaction=False) as pipe:
            # EVAL, not EVALSHA: a master just promoted may not hold the script yet.
            pipe.eval(script.script, len(keys), *keys, *args)  # type: ignore[arg-type]
            pipe.execute_command("WAIT", replicas, wait_ms)
            reply, acked = await pipe.execute()
        if int(acked) < replicas:
            raise NotReplicated(
                f"{int(acked)} of {replicas} replicas acknowledged the write within {wait_ms} ms"
            )
        return reply

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
