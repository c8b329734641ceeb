"""Reading the shared key set at start-up and from the CLI (synchronous, before any loop runs).

:func:`fetch` returns the sealed document Redis holds, or, asked to and when Redis holds none,
writes the first one (compare-and-set on "no version yet": of two replicas starting at the same
moment one writes, the other reads what it wrote). Decoding and keeping it is the store's part.

Before creating, it makes sure no running replica still holds the deployment's set: running
replicas are subscribed to the key set's channel (``PUBSUB NUMSUB``, which no data loss
erases), and put their copy back within one poll of seeing Redis empty, so a starting replica
that sees followers waits for that (at most :data:`PEER_WAIT`) and never makes a set of its own
while they run. One that sees none creates the set, marked ``created`` (see
:mod:`~hook_service.keys.backends.redis_scripts`): a replica whose watcher had not reconnected
yet still puts its copy back over it. The service's start also refuses a Redis whose
``maxmemory-policy`` could evict the key set (:func:`check_eviction`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from hook_service import _redis, errors, logs
from hook_service.keys.backends.redis_scripts import KeySetKeys, Written
from hook_service.keys.events import KeyEvent
from hook_service.keys.lifecycle import KeySet

log = logging.getLogger(logs.KEYSTORE)

PEER_WAIT = 3.0
"""How long a replica starting on an empty Redis waits for a running one to put its set back
(they do within one 0.5 s poll of seeing it empty, plus a reconnect)."""
_PEER_POLL = 0.05
_SAFE_POLICIES = ("noeviction",)
_SAFE_PREFIXES = ("volatile-",)  # evict only keys with a TTL; the key set has none


@dataclass(frozen=True, slots=True)
class Draft:
    """A first key set ready to write: its events, its sealed document, the script's ARGV."""

    key_set: KeySet
    events: list[KeyEvent]
    body: str
    args: list[str]


First = Callable[[], Draft]
"""Makes the first key set, should Redis hold none."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """The document Redis holds; ``created`` when this call wrote it."""

    raw: str
    created: tuple[KeySet, list[KeyEvent], Written] | None = None


def fetch(
    site: _redis.RedisSite,
    keys: KeySetKeys,
    *,
    timeout: float,
    first: First | None,
    peer_wait: float = PEER_WAIT,
) -> Fetched:
    """The key set document in Redis; with ``first`` (the service's start, an import), the
    one it makes when Redis holds none and no running replica puts one back. Start-up errors
    are :class:`errors.KeyStoreError` naming ``HOOK_REDIS_URL`` (or ``HOOK_REDIS_SENTINELS``)."""

    def failed(name: str) -> errors.KeyStoreError:
        return errors.KeyStoreError(
            f"{site.variable}: cannot load the key set from {site.location}: {name}"
        )

    with site.guard("load", failed):  # a cluster client reads the slot map as it is made
        client = site.sync_client(timeout=timeout)
    try:
        with site.guard("load", failed):
            if first is not None:
                check_eviction(client, site)
            raw = client.get(keys.set)
            if raw is None and first is not None:
                raw = _wait_for_peers(client, site.location, keys, peer_wait)
            if raw is None and first is not None:
                draft = first()
                written = keys.write_sync(client, draft.args)
                if written is not None:
                    return Fetched(draft.body, (draft.key_set, draft.events, written))
                raw = client.get(keys.set)
    finally:
        client.close()
    if raw is None:
        raise errors.KeyStoreError(
            f"no key set in Redis at {site.location} under {keys.prefix!r} (the service "
            "creates one on first start)"
        )
    return Fetched(_text(raw))


def check_eviction(client: _redis.SyncClient, site: _redis.RedisSite) -> None:
    """Refuse (:class:`errors.KeyStoreError`) a Redis whose ``maxmemory-policy`` may evict
    keys without a TTL (``allkeys-*``): under memory pressure the key set would vanish, and
    every replica stop signing. Where ``CONFIG`` is forbidden (managed Redis), warn. On a
    cluster every primary is asked (a failover or a slot move can bring the set to any)."""
    try:
        if isinstance(client, redis.RedisCluster):
            nodes: Any = client.config_get("maxmemory-policy", target_nodes=client.PRIMARIES)
            replies = list(dict(nodes).values())
        else:
            replies = [client.config_get("maxmemory-policy")]
    except redis.ResponseError as exc:
        log.warning(
            "cannot read the maxmemory-policy of Redis at %s (%s): make sure it is "
            "noeviction (or volatile-*), and that Redis persists its data (AOF or RDB), or "
            "the key set can be lost (docs/keys.md)",
            site.location,
            type(exc).__name__,
        )
        return
    for reply in replies:
        _check_policy(_text(next(iter(dict(reply).values()), b"")), site)


def _check_policy(policy: str, site: _redis.RedisSite) -> None:
    if policy in _SAFE_POLICIES or policy.startswith(_SAFE_PREFIXES):
        return
    raise errors.KeyStoreError(
        f"{site.variable}: Redis at {site.location} has maxmemory-policy {policy}, which can "
        "evict the key set; set it to noeviction (or a volatile-* policy: the key set has no TTL)"
    )


def _wait_for_peers(
    client: _redis.SyncClient, location: str, keys: KeySetKeys, wait: float
) -> bytes | str | None:
    """The set a running replica puts back while this one waits; None at once if no replica
    follows the key set; :class:`errors.KeyStoreError` if they do but none put it back."""
    # On a cluster the followers hold shard subscriptions, counted on the channel's node.
    count = client.pubsub_shardnumsub if keys.cluster else client.pubsub_numsub
    followers = int(dict(count(keys.channel)).get(_bytes(keys.channel), 0))
    if not followers:
        return None
    log.warning(
        "Redis at %s holds no key set but %d replica(s) follow it: waiting up to %.1f s for "
        "one to put its copy back",
        location,
        followers,
        wait,
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        raw: Any = client.get(keys.set)
        if raw is not None:
            return raw  # type: ignore[no-any-return]
        time.sleep(_PEER_POLL)
    raise errors.KeyStoreError(
        f"Redis at {location} holds no key set, and {followers} running replica(s) follow "
        f"one but none put it back within {wait:.1f} s; not creating a new set, which would "
        "replace theirs (see their logs; docs/keys.md, data loss)"
    )


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _bytes(name: str) -> bytes:
    return name.encode()
