"""How to reach Redis, as the settings chose it: one server by URL (``HOOK_REDIS_URL``), the
master that a set of Sentinels names (``HOOK_REDIS_SENTINELS`` with
``HOOK_REDIS_SENTINEL_MASTER``), or a Redis Cluster by any node's URL (``HOOK_REDIS_URL`` with
``HOOK_REDIS_CLUSTER``), and how many replicas a write that must not be lost waits for
(``HOOK_REDIS_MIN_REPLICAS``).

A plain value (no redis-py here): :class:`~hook_service.settings.Settings` builds it, and
:class:`~hook_service._redis.RedisSite` turns it into clients. The password (in the URL, or
``HOOK_REDIS_SENTINEL_PASSWORD``) is never in its ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

Address = tuple[str, int]
"""A Sentinel's host and port."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """One Redis deployment: ``url`` (with ``cluster``: any node of a Redis Cluster), or
    ``sentinels`` + ``master`` (exactly one of them)."""

    url: str | None = field(default=None, repr=False)
    sentinels: tuple[Address, ...] = ()
    master: str | None = None
    password: str | None = field(default=None, repr=False)
    """With Sentinel: the password of the Sentinels and of the servers they name."""
    min_replicas: int = 0
    """Replicas that must acknowledge a write that must not be lost (``WAIT``); 0: none."""
    cluster: bool = False
    """``url`` names one node of a Redis Cluster (``HOOK_REDIS_CLUSTER``)."""

    def __post_init__(self) -> None:
        if (self.url is None) == (not self.sentinels) or bool(self.sentinels) != bool(self.master):
            raise ValueError("a RedisTarget is a url, or sentinels with a master name")
        if self.cluster and self.url is None:
            raise ValueError("a Redis Cluster is named by a node's url")
        if self.cluster and self.min_replicas:
            # WAIT counts the replicas of the connection's own last write; a cluster client
            # does not promise to send it on the connection that ran the script.
            raise ValueError("WAIT for replicas is not supported on a Redis Cluster")

    @classmethod
    def of(cls, target: RedisTarget | str, *, cluster: bool = False) -> RedisTarget:
        """``target`` itself, or a URL as a target (no replicas waited for; with ``cluster``,
        a Redis Cluster node's)."""
        if isinstance(target, str):
            return cls(url=target, cluster=cluster)
        return replace(target, cluster=True) if cluster and not target.cluster else target

    @property
    def variable(self) -> str:
        """The variable that named this deployment, for start-up errors."""
        return "HOOK_REDIS_SENTINELS" if self.sentinels else "HOOK_REDIS_URL"

    @property
    def sentinel_list(self) -> str:
        """``host:port,host:port``, as the variable takes it (IPv6 literals bracketed)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
