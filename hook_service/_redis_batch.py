"""Script calls made together go out together: the ``EVALSHA`` calls that the service's
coroutines issue in one turn of the event loop are sent as one pipeline on one connection.

With 8 connections to the hook, several requests reach their Redis call in the same turn of
the loop; each call through redis-py costs about 70 to 100 µs of CPU (a pool checkout, a write,
a read, a task switch each), while the calls of one pipeline share them: about 35 µs each at 8
callers (``bench/redis_clients.py``, "The Redis round trip" in docs/benchmarks.md; issue 15
point 4). A lone call is sent by its caller as before, one turn of the loop later.

Nothing a caller relies on changes:

- **Atomic scripts, each its own reply.** A pipeline without ``MULTI`` (``transaction=False``)
  only sends the commands back to back; Redis runs each script whole, and the replies come back
  in order, so the n-th reply is the n-th caller's. An error reply (``NOSCRIPT``, a script's own
  error) is that caller's alone: redis-py's ``Script`` then loads the script and calls again.
- **Timeouts and reconnects.** The pipeline uses the client's own pool (its bounded wait for a
  connection), socket timeout and retry (with ``retry_closed``: once more on a fresh connection
  after a closed one, which re-runs every script of the batch, as a lone call would be re-run;
  only callers whose scripts are safe to run twice ask for it). A failure of the connection
  fails every call of the batch with the same error, as it would have failed each.
- **Sentinel.** A Sentinel client's pipeline takes its connection from the same master pool
  (``READONLY`` drops the connection there too). Writes that wait for replicas
  (:meth:`~hook_service._redis.RedisSite.write` with ``HOOK_REDIS_MIN_REPLICAS``) send their own
  ``EVAL`` + ``WAIT`` pipeline and are never batched with others: ``WAIT`` must follow its
  write on its connection. A Redis Cluster client is not batched (its commands go to the nodes
  of their slots).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from redis.asyncio import Redis

# Only the scripts, the service's every hot call; anything else goes through as it is.
BATCHED = frozenset({"EVALSHA"})

_Call = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


# The answer of a lone call's future: "send it yourself" (no pipeline, no task of ours).
_ALONE: Final = object()


class BatchingRedis(Redis):
    """redis-py's asyncio ``Redis`` whose script calls of one loop turn share a pipeline."""

    _batch: list[_Call] | None = None
    _flushes: set[asyncio.Task[None]] | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] not in BATCHED or self.single_connection_client:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._batch is None:
            # The first call of this turn: the batch is sent once the coroutines already woken
            # in it (the other requests) have had their turn and added their calls.
            self._batch = []
            loop.call_soon(self._send)
        self._batch.append((args, options, future))
        reply = await future
        if reply is _ALONE:  # nobody joined: sent by its caller, as without batching
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return reply

    def _send(self) -> None:
        batch, self._batch = self._batch or [], None
        if len(batch) == 1:
            if not batch[0][2].done():
                batch[0][2].set_result(_ALONE)
            return
        # Its own task, so that a caller giving up (its budget, a cancel) never cancels the
        # pipeline the other callers wait for.
        flushes = self._flushes = self._flushes or set()
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        flushes.add(task)
        task.add_done_callback(flushes.discard)

    async def _flush(self, batch: list[_Call]) -> None:
        try:
            async with self.pipeline(transaction=False) as pipe:
                for args, options, _ in batch:
                    pipe.execute_command(*args, **options)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the flush cancelled (shutdown): so are its calls
            for _, _, future in batch:
                future.cancel()
            raise
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (a timeout, a cancel)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
