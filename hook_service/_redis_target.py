"""How to reach Redis, as the settings chose it: one server by URL (``HOOK_REDIS_URL``), or the
master that a set of Sentinels names (``HOOK_REDIS_SENTINELS`` with
``HOOK_REDIS_SENTINEL_MASTER``), and how many replicas a write that must not be lost waits for
(``HOOK_REDIS_MIN_REPLICAS``).

A plain value (no redis-py here): :class:`~hook_service.settings.Settings` builds it, and
:class:`~hook_service._redis.RedisSite` turns it into clients. The password (in the URL, or
``HOOK_REDIS_SENTINEL_PASSWORD``) is never in its ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Address = tuple[str, int]
"""A Sentinel's host and port."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """One Redis deployment: ``url``, or ``sentinels`` + ``master`` (exactly one of them)."""

    url: str | None = field(default=None, repr=False)
    sentinels: tuple[Address, ...] = ()
    master: str | None = None
    password: str | None = field(default=None, repr=False)
    """With Sentinel: the password of the Sentinels and of the servers they name."""
    min_replicas: int = 0
    """Replicas that must acknowledge a write that must not be lost (``WAIT``); 0: none."""

    def __post_init__(self) -> None:
        if (self.url is None) == (not self.sentinels) or bool(self.sentinels) != bool(self.master):
            raise ValueError("a RedisTarget is a url, or sentinels with a master name")

    @classmethod
    def of(cls, target: RedisTarget | str) -> RedisTarget:
        """``target`` itself, or a URL as a target (no replicas waited for)."""
        return cls(url=target) if isinstance(target, str) else target

    @property
    def variable(self) -> str:
        """The variable that named this deployment, for start-up errors."""
        return "HOOK_REDIS_SENTINELS" if self.sentinels else "HOOK_REDIS_URL"

    @property
    def sentinel_list(self) -> str:
        """``host:port,host:port``, as the variable takes it (IPv6 literals bracketed)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
