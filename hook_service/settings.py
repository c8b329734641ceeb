"""Configuration: ``HOOK_*`` environment variables read once into a frozen :class:`Settings`.

This is the only module that reads ``os.environ``. Every value is validated here, at start-up,
and a bad one raises :class:`~hook_service.errors.SettingsError` naming the variable (never its
value when the value is a secret). This module holds :class:`Settings`, how it is read and what
it derives; each variable's parser is in :mod:`hook_service._variables`, the cross-field checks
in :mod:`hook_service._settings_checks`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hook_service import _settings_checks as checks
from hook_service._redis_target import Address, RedisTarget
from hook_service._variables import (
    LOG_FORMATS,
    LOG_LEVELS,
    PARSERS,
    TRACES_EXPORTERS,
    check_names,
    variable_name,
)
from hook_service.errors import SettingsError
from hook_service.facts.hashing import FactsKey
from hook_service.keys.lifecycle import PUBLISH_LEAD

TOKEN_TTL_RANGE = (30, 3600)


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated service configuration (design.md, "Configuration")."""

    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str | None = field(default=None, repr=False)
    redis_cluster: bool = False
    redis_sentinels: tuple[Address, ...] = ()
    redis_sentinel_master: str | None = None
    redis_sentinel_password: str | None = field(default=None, repr=False)
    redis_min_replicas: int = 0
    keys_dir: Path = Path("keys")
    policy_file: Path | None = None
    shadow_policy_file: Path | None = None  # decided beside the live policy, never answered
    prelude_jwks_url: str | None = None
    prelude_jwks_file: Path | None = None
    insecure_skip_signature: bool = False
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    admin_tokens: tuple[str, ...] = field(default=(), repr=False)
    admin_token_labels: tuple[str, ...] = ()
    token_ttl: int = 300
    log_level: str = "INFO"
    keystore: str | None = None
    key_encryption_keys: tuple[bytes, ...] = field(default=(), repr=False)
    key_publish_lead: int = PUBLISH_LEAD  # Prelude's JWKS cache plus skew (contract sec. 5)
    key_rotation_interval: int | None = None
    replica_id: str | None = None
    facts_key: FactsKey | None = field(default=None, repr=False)
    facts_retention: int = 30 * 86400
    facts_flag_ttl: int = 7 * 86400
    geoip_db: Path | None = None
    replay_window: int = 600
    # The server (docs/deploying.md, "Listeners, limits and workers"); read by server.py.
    read_timeout: int = 10
    max_connections: int = 4096
    internal_host: str | None = None
    internal_port: int | None = None
    workers: int = 1
    log_format: str = "text"
    log_client: bool = False
    metrics_dir: Path | None = None
    otel_endpoint: str | None = field(default=None, repr=False)
    otel_traces_exporter: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``HOOK_*`` variables (``os.environ`` by default); ``overrides`` (CLI flags,
        already typed) win over the environment. The result is validated."""
        env = os.environ if environ is None else environ
        check_names(env, (f.name for f in fields(cls)))
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = variable_name(f.name)
            raw = env.get(name)
            # An empty variable counts as unset (compose's `${VAR:-}` idiom).
            if raw is not None and raw.strip():
                values[f.name] = PARSERS[f.name](name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` applied."""
        return replace(self, **changes).validated()

    def validated(self) -> Settings:
        """Cross-field checks; returns ``self`` or raises :class:`SettingsError`."""
        if not 1 <= self.port <= 65535:
            raise SettingsError(f"HOOK_PORT must be from 1 to 65535, got {self.port}")
        low, high = TOKEN_TTL_RANGE
        if not low <= self.token_ttl <= high:
            raise SettingsError(
                f"HOOK_TOKEN_TTL must be from {low} to {high} seconds, got {self.token_ttl}"
            )
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"HOOK_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"HOOK_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        exporter = self.otel_traces_exporter
        if exporter is not None and exporter not in TRACES_EXPORTERS:
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER must be one of {', '.join(TRACES_EXPORTERS)} "
                f"(this service's tracing), got {exporter!r}"
            )
        if self.prelude_jwks_url and self.prelude_jwks_file:
            raise SettingsError(
                "HOOK_PRELUDE_JWKS_URL and HOOK_PRELUDE_JWKS_FILE are both set; set only one"
            )
        if not self.signature_source and not self.insecure_skip_signature:
            # Fail closed (contract 2.3): without Prelude's JWKS no hook call can be verified.
            raise SettingsError(
                "HOOK_PRELUDE_JWKS_URL or HOOK_PRELUDE_JWKS_FILE is required to verify hook "
                "signatures (HOOK_INSECURE_SKIP_SIGNATURE=true is for development only)"
            )
        checks.check_secrets("HOOK_API_KEYS", self.api_keys)
        checks.check_secrets("HOOK_ADMIN_TOKENS", self.admin_tokens)
        if set(self.api_keys) & set(self.admin_tokens):
            raise SettingsError("HOOK_API_KEYS and HOOK_ADMIN_TOKENS must not share a value")
        labels = self.admin_token_labels
        if labels and len(labels) != len(self.admin_tokens):
            raise SettingsError(
                f"HOOK_ADMIN_TOKEN_LABELS names {len(labels)} tokens but HOOK_ADMIN_TOKENS "
                f"holds {len(self.admin_tokens)}; give one label per token, in the same order"
            )
        checks.check_redis(self)
        checks.check_cluster(self)
        checks.check_keys(self)
        checks.check_facts(self)
        checks.check_server(self)
        return self

    def admin_actor(self, index: int) -> str:
        """Who acted with admin token ``index`` (0-based), for the audit trail: its label from
        ``HOOK_ADMIN_TOKEN_LABELS`` as ``admin:<label>``, else its position; never the token."""
        if self.admin_token_labels:
            return f"admin:{self.admin_token_labels[index]}"
        return f"admin token #{index + 1}"

    @property
    def tracing(self) -> str | None:
        """The span exporter to use (``otlp`` or ``console``), or None: no tracing. On when
        ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_TRACES_EXPORTER`` is set (``none``: off)."""
        exporter = self.otel_traces_exporter
        if exporter is None:
            return "otlp" if self.otel_endpoint else None
        return None if exporter == "none" else exporter

    @property
    def redis_target(self) -> RedisTarget | None:
        """How to reach Redis (``HOOK_REDIS_URL``, with ``HOOK_REDIS_CLUSTER`` a cluster
        node's, or ``HOOK_REDIS_SENTINELS`` and its master), with ``HOOK_REDIS_MIN_REPLICAS``;
        None: no Redis (the in-memory store)."""
        if self.redis_url:
            return RedisTarget(
                url=self.redis_url,
                min_replicas=self.redis_min_replicas,
                cluster=self.redis_cluster,
            )
        if self.redis_sentinels:
            return RedisTarget(
                sentinels=self.redis_sentinels,
                master=self.redis_sentinel_master,
                password=self.redis_sentinel_password,
                min_replicas=self.redis_min_replicas,
            )
        return None

    @property
    def redis_configured(self) -> bool:
        """Whether Redis is configured (a URL or Sentinels): what chooses the Redis store,
        the Redis key store by default and the Redis facts store."""
        return bool(self.redis_url or self.redis_sentinels)

    @property
    def key_store(self) -> str:
        """``HOOK_KEYSTORE``, defaulting to ``redis`` whenever Redis is configured."""
        if self.keystore is not None:
            return self.keystore
        return "redis" if self.redis_configured else "file"

    @property
    def replica(self) -> str:
        """``HOOK_REPLICA_ID``, or ``<hostname>:<pid>``: who did what, in the key audit."""
        return self.replica_id or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def internal_address(self) -> tuple[str, int] | None:
        """Where the internal listener is (``HOOK_INTERNAL_HOST`` defaults to loopback), or
        ``None`` when everything is served on the public one."""
        if self.internal_port is None:
            return None
        return self.internal_host or "127.0.0.1", self.internal_port

    @property
    def signature_source(self) -> str | None:
        """Where Prelude's app JWKS comes from, for logs (a URL or a file path)."""
        if self.prelude_jwks_url:
            return self.prelude_jwks_url
        return str(self.prelude_jwks_file) if self.prelude_jwks_file else None
