"""Script calls made together go out together, on a connection of their own: the ``EVALSHA``
calls that the service's coroutines issue in one turn of the event loop are written at once
on the client's lane (:mod:`hook_service._redis_lane`), one multiplexed connection whose
replies are matched to their callers in order.

With 8 connections to the hook, several requests reach their Redis call in the same turn of
the loop; each call through redis-py costs about 60 to 120 µs of CPU (a pool checkout, a write,
a read, a task switch each), about 30 µs when the calls of one turn share a redis-py pipeline,
and 12 to 16 µs on the lane (``bench/redis_clients.py``, "The Redis round trip" in
docs/benchmarks.md; issue 15 point 4).

Nothing a caller relies on changes:

- **Atomic scripts, each its own reply.** The commands of one connection are only sent back
  to back; Redis runs each script whole, and the replies come back in order, so the n-th reply
  is the n-th caller's. An error reply (``NOSCRIPT``, a script's own error) is that caller's
  alone: redis-py's ``Script`` then loads the script and calls again.
- **Timeouts and reconnects.** Each call is answered within the client's socket timeout or
  fails with redis-py's ``TimeoutError``; the lane connects as the client's pool would (URL,
  TLS, password, database, Sentinel's master) and, with ``retry_closed``, sends a call that
  met a closed connection once more on a fresh one (only callers whose scripts are safe to run
  twice ask for it).
- **Sentinel.** A Sentinel client's lane asks the master pool for the master's address at each
  connect, and drops its connection on ``READONLY`` (a demoted master), as the pool's connections
  do. Every other command goes through redis-py as before; writes that wait for replicas
  (:meth:`~hook_service._redis.RedisSite.write` with ``HOOK_REDIS_MIN_REPLICAS``) send their own
  ``EVAL`` + ``WAIT`` pipeline on a pooled connection: ``WAIT`` must follow its write on its
  connection. A Redis Cluster client has no lane (its commands go to the nodes of their slots).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from hook_service._redis_lane import Lane

# Only the scripts, the service's every hot call; anything else goes through as it is.
LANED = "EVALSHA"


class BatchingRedis(Redis):
    """redis-py's asyncio ``Redis`` whose script calls go over its :attr:`lane`, if it has
    one (:meth:`~hook_service._redis.RedisSite.client` gives it)."""

    lane: Lane | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        lane = self.lane
        if lane is None or args[0] != LANED or options or self.single_connection_client:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await lane.call(args)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.lane is not None:
            await self.lane.aclose()
        await super().aclose(close_connection_pool)
