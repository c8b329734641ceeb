"""The cross-field checks of :meth:`Settings.validated <hook_service.settings.Settings.validated>`.

One function per group of settings (the secrets, Redis and its Sentinels, Redis Cluster, the key
store and its KEKs, the facts' durations, the server), each raising
:class:`~hook_service.errors.SettingsError` naming the variables, never a secret's value, and
the ranges they hold the values to.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hook_service._variables import KEYSTORES, kek_error
from hook_service.errors import SettingsError
from hook_service.keys.backends.keyring import wrong_length

if TYPE_CHECKING:
    from hook_service.settings import Settings

# Secrets shorter than this are guessable; 16 characters of a random token is already 96 bits.
MIN_SECRET_LENGTH = 16
READ_TIMEOUT_RANGE = (1, 300)
MAX_CONNECTIONS_RANGE = (1, 1_000_000)
WORKERS_RANGE = (1, 64)
MIN_REPLICAS_RANGE = (0, 16)
# A Sentinel master name: what sentinel.conf's `sentinel monitor <name>` accepts in practice.
_MASTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_DURATION = 366 * 86400
# Goes into log lines and audit entries: no spaces or control characters (no forged lines).
REPLICA_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")


def check_secrets(name: str, values: tuple[str, ...]) -> None:
    """Each secret of ``name`` is long enough and has no surrounding spaces."""
    for position, value in enumerate(values, start=1):
        if len(value) < MIN_SECRET_LENGTH or value != value.strip():
            # The value itself is a secret: name its position, never echo it.
            raise SettingsError(
                f"{name}: entry {position} must be at least {MIN_SECRET_LENGTH} characters "
                "without surrounding spaces"
            )


def check_redis(settings: Settings) -> None:
    """Redis: a URL or Sentinels (not both), the Sentinel master and password, and
    ``HOOK_REDIS_MIN_REPLICAS``."""
    if settings.redis_url and settings.redis_sentinels:
        raise SettingsError(
            "HOOK_REDIS_URL and HOOK_REDIS_SENTINELS are both set; set only one (one "
            "Redis server, or the master a set of Sentinels names)"
        )
    if settings.redis_sentinels and not settings.redis_sentinel_master:
        raise SettingsError(
            "HOOK_REDIS_SENTINELS needs HOOK_REDIS_SENTINEL_MASTER: the name of the master "
            "the Sentinels monitor (sentinel.conf's `sentinel monitor <name> ...`)"
        )
    for name, value in (
        ("HOOK_REDIS_SENTINEL_MASTER", settings.redis_sentinel_master),
        ("HOOK_REDIS_SENTINEL_PASSWORD", settings.redis_sentinel_password),
    ):
        if value is not None and not settings.redis_sentinels:
            raise SettingsError(f"{name} is set without HOOK_REDIS_SENTINELS")
    master = settings.redis_sentinel_master
    if master is not None and not _MASTER_NAME.fullmatch(master):
        raise SettingsError("HOOK_REDIS_SENTINEL_MASTER must be 1 to 64 letters, digits or . _ -")
    low, high = MIN_REPLICAS_RANGE
    if not low <= settings.redis_min_replicas <= high:
        raise SettingsError(
            f"HOOK_REDIS_MIN_REPLICAS must be from {low} to {high}, got "
            f"{settings.redis_min_replicas}"
        )
    if settings.redis_min_replicas and not settings.redis_configured:
        raise SettingsError(
            "HOOK_REDIS_MIN_REPLICAS needs HOOK_REDIS_URL or HOOK_REDIS_SENTINELS (the "
            "in-memory store has no replicas)"
        )


def check_cluster(settings: Settings) -> None:
    """``HOOK_REDIS_CLUSTER``: ``HOOK_REDIS_URL`` names one node of a Redis Cluster
    (docs/deploying.md, "Redis Cluster"); a cluster has TCP nodes and database 0 only."""
    if not settings.redis_cluster:
        return
    if not settings.redis_url:
        raise SettingsError(
            "HOOK_REDIS_CLUSTER=true needs HOOK_REDIS_URL (any node), not "
            "HOOK_REDIS_SENTINELS: a Redis Cluster fails over by itself"
        )
    if settings.redis_min_replicas:
        # WAIT counts the replicas of the connection's own last write, and redis-py's
        # cluster client does not promise to send it on the connection that ran the
        # script: refused rather than answered wrongly (docs/deploying.md).
        raise SettingsError(
            "HOOK_REDIS_MIN_REPLICAS is not supported with HOOK_REDIS_CLUSTER=true: set "
            "HOOK_REDIS_MIN_REPLICAS=0, or use one Redis or Sentinel (docs/deploying.md)"
        )
    parts = urlsplit(settings.redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise SettingsError(
            "HOOK_REDIS_URL must start with redis:// or rediss:// with "
            "HOOK_REDIS_CLUSTER=true: cluster nodes are reached over TCP, not unix://"
        )
    if parts.path.strip("/") not in ("", "0"):
        raise SettingsError(
            "HOOK_REDIS_URL must name database 0 (or none) with HOOK_REDIS_CLUSTER=true: "
            "a Redis Cluster has no other database"
        )


def check_facts(settings: Settings) -> None:
    """The facts' durations and the replay window, each within its range."""
    for name, value, low in (
        ("HOOK_FACTS_RETENTION", settings.facts_retention, 86400),
        ("HOOK_FACTS_FLAG_TTL", settings.facts_flag_ttl, 60),
        ("HOOK_REPLAY_WINDOW", settings.replay_window, 0),
    ):
        if not low <= value <= MAX_DURATION:
            raise SettingsError(f"{name} must be from {low} s to 366 days, got {value} s")


def check_server(settings: Settings) -> None:
    """The server: its timeouts and limits, the workers, the internal listener."""
    for name, value, (low, high) in (
        ("HOOK_READ_TIMEOUT", settings.read_timeout, READ_TIMEOUT_RANGE),
        ("HOOK_MAX_CONNECTIONS", settings.max_connections, MAX_CONNECTIONS_RANGE),
        ("HOOK_WORKERS", settings.workers, WORKERS_RANGE),
    ):
        if not low <= value <= high:
            raise SettingsError(f"{name} must be from {low} to {high}, got {value}")
    if settings.workers > 1 and not settings.redis_configured:
        raise SettingsError(
            "HOOK_WORKERS above 1 needs HOOK_REDIS_URL or HOOK_REDIS_SENTINELS: the "
            "in-memory store is per process, "
            "so a step recorded by one worker would be unknown to the others"
        )
    port = settings.internal_port
    if settings.internal_host is not None and port is None:
        raise SettingsError("HOOK_INTERNAL_HOST is set without HOOK_INTERNAL_PORT")
    if port is not None and not 1 <= port <= 65535:
        raise SettingsError(f"HOOK_INTERNAL_PORT must be from 1 to 65535, got {port}")
    if port == settings.port:
        raise SettingsError(
            f"HOOK_INTERNAL_PORT must differ from HOOK_PORT ({port}): the listener a "
            "request came in on is told by its port"
        )


def check_keys(settings: Settings) -> None:
    """The key store, the KEKs it (or Redis) needs, the replica id, the publish lead and
    the rotation interval."""
    if settings.keystore is not None and settings.keystore not in KEYSTORES:
        raise SettingsError(f"HOOK_KEYSTORE must be one of {', '.join(KEYSTORES)}")
    if settings.key_store == "redis":
        if not settings.redis_configured:
            raise SettingsError("HOOK_KEYSTORE=redis needs HOOK_REDIS_URL or HOOK_REDIS_SENTINELS")
        if not settings.key_encryption_keys:
            raise SettingsError(
                "HOOK_KEY_ENCRYPTION_KEYS is required with the Redis key store: private "
                "keys are only ever stored there encrypted (see docs/keys.md, 'Key "
                "management in production')"
            )
    elif settings.redis_target is not None and not settings.key_encryption_keys:
        # Issued verification tokens are kept in Redis sealed under the KEKs (issue 10,
        # point 8), whichever key store holds the signing keys.
        raise SettingsError(
            f"HOOK_KEY_ENCRYPTION_KEYS is required with {settings.redis_target.variable}: the "
            "verification tokens kept in Redis are only ever stored there encrypted (see "
            "docs/deploying.md, 'Upgrading')"
        )
    position = wrong_length(settings.key_encryption_keys)
    if position is not None:  # never echo the value
        raise SettingsError(kek_error(position))
    if settings.replica_id is not None and not REPLICA_ID.fullmatch(settings.replica_id):
        raise SettingsError(
            "HOOK_REPLICA_ID must be 1 to 64 letters, digits or . _ : @ - (it names this "
            "replica in logs and the key audit)"
        )
    if not 0 <= settings.key_publish_lead <= MAX_DURATION:
        raise SettingsError("HOOK_KEY_PUBLISH_LEAD must be from 0 s to 366 days")
    interval = settings.key_rotation_interval
    if interval is not None and not 2 * settings.key_publish_lead <= interval <= MAX_DURATION:
        # A next key needs the publish lead before it may sign; an interval close to it
        # would have every scheduled rotation wait on (or race) the lead.
        raise SettingsError(
            "HOOK_KEY_ROTATION_INTERVAL must be at least twice HOOK_KEY_PUBLISH_LEAD "
            f"({2 * settings.key_publish_lead} s) and at most 366 days, got {interval} s"
        )
