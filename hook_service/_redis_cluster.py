"""The Redis Cluster clients of :class:`~hook_service._redis.RedisSite` (``HOOK_REDIS_CLUSTER``;
docs/deploying.md, "Redis Cluster"): redis-py's ``RedisCluster``, asyncio and synchronous."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
from redis.asyncio import RedisCluster


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
