"""Commands packed by hiredis: the same RESP bytes as redis-py's, for less CPU.

redis-py's asyncio connections build each command in Python, about 1 µs per argument, and the
service's scripts take many (the facts' OBSERVE has 23): about 24 µs per hook call, against
about 2 µs with ``hiredis.pack_command`` (measured in ``bench/redis_clients.py``'s run; issue
15 point 3). Everything else about a connection (timeouts, reconnects, Sentinel, TLS, the
reply parser) is redis-py's: :func:`pack_with_hiredis` only swaps the connection class of a
client's pool for a subclass of the class redis-py chose. (The script calls of a one-server or
Sentinel client go over its lane, :mod:`hook_service._redis_lane`, which packs with the same
class and parses their replies itself.)

hiredis refuses what it cannot encode exactly as redis-py does (a ``bool``, a lone surrogate
that the service's ``encoding_errors="surrogatepass"`` must let through): those commands are
packed by redis-py, as before.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection


class _HiredisPacking(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        # redis-py splits a multi-word command name ("CONFIG GET"); hiredis would not.
        if isinstance(args[0], str) and " " in args[0]:
            return super().pack_command(*args)
        try:
            return [hiredis.pack_command(args)]
        except (TypeError, UnicodeEncodeError):
            return super().pack_command(*args)


_PACKED: dict[type[Any], type[Any]] = {}


def packed(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` (a redis-py asyncio connection class) with its commands packed
    by hiredis; one subclass per class."""
    if issubclass(connection_class, _HiredisPacking):
        return connection_class
    made = _PACKED.get(connection_class)
    if made is None:
        name = f"Packed{connection_class.__name__}"
        made = _PACKED[connection_class] = type(name, (_HiredisPacking, connection_class), {})
    return made


def pack_with_hiredis(client: Redis | RedisCluster) -> None:
    """Make the connections ``client`` opens from now on pack with hiredis."""
    if isinstance(client, RedisCluster):
        manager = client.nodes_manager
        manager.connection_kwargs["connection_class"] = packed(
            manager.connection_kwargs["connection_class"]
        )
        for node in manager.startup_nodes.values():
            node.connection_class = packed(node.connection_class)
        return
    pool = client.connection_pool
    pool.connection_class = packed(pool.connection_class)
