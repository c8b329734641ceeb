"""How a replica follows the shared key set: pub/sub plus a version poll.

:class:`Watcher` runs one task that wakes up on every change message on the key set's channel
and at least every ``interval`` (0.5 s), and then calls ``check``: so a missed message is
caught within 1 s. A Redis that cannot be reached is re-subscribed after one interval, and
checked as soon as the subscription is back (within 0.5 s of Redis answering again); a bug
in ``check`` is logged and reported through ``on_bug`` (the store stops signing), and the loop
goes on, since a replica that stops following would sign past a revocation.

On a Redis Cluster the channel is a shard channel (SSUBSCRIBE, Redis 7): the subscription is
on the node that holds the key set's slot, where the change scripts SPUBLISH; after a failover
or a slot move the subscription fails or goes quiet, the poll still catches every change, and
the next reconnect subscribes on the slot's new node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub

from hook_service import _redis, logs

log = logging.getLogger(logs.KEYSTORE)


class Watcher:
    """Calls ``check`` on each change message on ``channel`` and every ``interval``."""

    def __init__(
        self,
        client: Callable[[], _redis.AsyncClient],
        channel: str,
        check: Callable[[], Awaitable[None]],
        *,
        interval: float,
        on_bug: Callable[[], None],
    ) -> None:
        self._client = client
        self._channel = channel
        self._check = check
        self._interval = interval
        self._on_bug = on_bug
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._watch(), name="key set watcher")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # The flag, not only cancel(): redis-py's read timeout can swallow a cancellation
            # that lands as it expires, and the loop must still end (within one poll).
            self._closing = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        pubsub: PubSub | None = None
        while not self._closing:
            try:
                if pubsub is None:
                    # (Re)subscribed: what changed meanwhile sent no message here; look now
                    # (after an outage, Redis may have come back empty: restore at once).
                    pubsub = await _subscribe(self._client(), self._channel)
                elif isinstance(pubsub, ClusterPubSub):
                    # Returns on a change message or after the poll interval, whichever first.
                    await pubsub.get_sharded_message(
                        ignore_subscribe_messages=True, timeout=self._interval
                    )
                else:
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._interval)
            except _redis.ERRORS:
                await _close(pubsub)
                pubsub = None
                await asyncio.sleep(self._interval)
            try:
                await self._check()
            except Exception:  # a bug must not end the watcher: stop signing, keep polling
                log.exception("key set poll failed unexpectedly")
                self._on_bug()
                await asyncio.sleep(self._interval)
        await _close(pubsub)


async def _subscribe(client: _redis.AsyncClient, channel: str) -> PubSub:
    """A subscription to ``channel``: a shard channel on a cluster (on its slot's node)."""
    pubsub: PubSub | None = None
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()  # the slot map, to find the channel's node
            pubsub = client.pubsub()
            await pubsub.ssubscribe(channel)
        else:
            pubsub = client.pubsub()
            await pubsub.subscribe(channel)
    except _redis.ERRORS:
        await _close(pubsub)
        raise
    return pubsub


async def _close(pubsub: PubSub | None) -> None:
    if pubsub is not None:
        with contextlib.suppress(*_redis.ERRORS):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
