"""Configuration: ``HOOK_*`` environment variables read once into a frozen :class:`Settings`.

This is the only module that reads ``os.environ``. Every value is validated here, at start-up,
and a bad one raises :class:`~hook_service.errors.SettingsError` naming the variable (never its
value when the value is a secret).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hook_service._redis_target import Address, RedisTarget
from hook_service.errors import ConfigError, SettingsError
from hook_service.facts.hashing import FactsKey
from hook_service.keys.backends.keyring import KEK_BYTES, wrong_length
from hook_service.keys.lifecycle import PUBLISH_LEAD

PREFIX = "HOOK_"
TOKEN_TTL_RANGE = (30, 3600)
# Secrets shorter than this are guessable; 16 characters of a random token is already 96 bits.
MIN_SECRET_LENGTH = 16
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
TRACES_EXPORTERS = ("otlp", "console", "none")
# Settings read from variables that are not ours: prometheus-client's multiprocess directory
# (`serve --workers` sets it) and OpenTelemetry's two switches (docs/operations.md).
FOREIGN = {
    "metrics_dir": "PROMETHEUS_MULTIPROC_DIR",
    "otel_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "otel_traces_exporter": "OTEL_TRACES_EXPORTER",
}
KEYSTORES = ("file", "redis")
READ_TIMEOUT_RANGE = (1, 300)
MAX_CONNECTIONS_RANGE = (1, 1_000_000)
WORKERS_RANGE = (1, 64)
MIN_REPLICAS_RANGE = (0, 16)
# A Sentinel master name: what sentinel.conf's `sentinel monitor <name>` accepts in practice.
_MASTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_DURATION = 366 * 86400
# ASCII digits, few of them: \d also matches other scripts' digits, and int() refuses over
# 4300 of them with a ValueError that would not name the variable.
_DURATION = re.compile(r"([0-9]{1,10})\s*([smhd]?)")
# Goes into log lines and audit entries: no spaces or control characters (no forged lines).
REPLICA_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


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
        _check_names(env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = variable_name(f.name)
            raw = env.get(name)
            # An empty variable counts as unset (compose's `${VAR:-}` idiom).
            if raw is not None and raw.strip():
                values[f.name] = _PARSERS[f.name](name, raw)
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
        _check_secrets("HOOK_API_KEYS", self.api_keys)
        _check_secrets("HOOK_ADMIN_TOKENS", self.admin_tokens)
        if set(self.api_keys) & set(self.admin_tokens):
            raise SettingsError("HOOK_API_KEYS and HOOK_ADMIN_TOKENS must not share a value")
        labels = self.admin_token_labels
        if labels and len(labels) != len(self.admin_tokens):
            raise SettingsError(
                f"HOOK_ADMIN_TOKEN_LABELS names {len(labels)} tokens but HOOK_ADMIN_TOKENS "
                f"holds {len(self.admin_tokens)}; give one label per token, in the same order"
            )
        self._validate_redis()
        self._validate_cluster()
        self._validate_keys()
        self._validate_facts()
        self._validate_server()
        return self

    def _validate_redis(self) -> None:
        if self.redis_url and self.redis_sentinels:
            raise SettingsError(
                "HOOK_REDIS_URL and HOOK_REDIS_SENTINELS are both set; set only one (one "
                "Redis server, or the master a set of Sentinels names)"
            )
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise SettingsError(
                "HOOK_REDIS_SENTINELS needs HOOK_REDIS_SENTINEL_MASTER: the name of the master "
                "the Sentinels monitor (sentinel.conf's `sentinel monitor <name> ...`)"
            )
        for name, value in (
            ("HOOK_REDIS_SENTINEL_MASTER", self.redis_sentinel_master),
            ("HOOK_REDIS_SENTINEL_PASSWORD", self.redis_sentinel_password),
        ):
            if value is not None and not self.redis_sentinels:
                raise SettingsError(f"{name} is set without HOOK_REDIS_SENTINELS")
        master = self.redis_sentinel_master
        if master is not None and not _MASTER_NAME.fullmatch(master):
            raise SettingsError(
                "HOOK_REDIS_SENTINEL_MASTER must be 1 to 64 letters, digits or . _ -"
            )
        low, high = MIN_REPLICAS_RANGE
        if not low <= self.redis_min_replicas <= high:
            raise SettingsError(
                f"HOOK_REDIS_MIN_REPLICAS must be from {low} to {high}, got "
                f"{self.redis_min_replicas}"
            )
        if self.redis_min_replicas and not self.redis_configured:
            raise SettingsError(
                "HOOK_REDIS_MIN_REPLICAS needs HOOK_REDIS_URL or HOOK_REDIS_SENTINELS (the "
                "in-memory store has no replicas)"
            )

    def _validate_cluster(self) -> None:
        """``HOOK_REDIS_CLUSTER``: ``HOOK_REDIS_URL`` names one node of a Redis Cluster
        (docs/deploying.md, "Redis Cluster"); a cluster has TCP nodes and database 0 only."""
        if not self.redis_cluster:
            return
        if not self.redis_url:
            raise SettingsError(
                "HOOK_REDIS_CLUSTER=true needs HOOK_REDIS_URL (any node), not "
                "HOOK_REDIS_SENTINELS: a Redis Cluster fails over by itself"
            )
        if self.redis_min_replicas:
            # WAIT counts the replicas of the connection's own last write, and redis-py's
            # cluster client does not promise to send it on the connection that ran the
            # script: refused rather than answered wrongly (docs/deploying.md).
            raise SettingsError(
                "HOOK_REDIS_MIN_REPLICAS is not supported with HOOK_REDIS_CLUSTER=true: set "
                "HOOK_REDIS_MIN_REPLICAS=0, or use one Redis or Sentinel (docs/deploying.md)"
            )
        parts = urlsplit(self.redis_url)
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

    def _validate_facts(self) -> None:
        for name, value, low in (
            ("HOOK_FACTS_RETENTION", self.facts_retention, 86400),
            ("HOOK_FACTS_FLAG_TTL", self.facts_flag_ttl, 60),
            ("HOOK_REPLAY_WINDOW", self.replay_window, 0),
        ):
            if not low <= value <= MAX_DURATION:
                raise SettingsError(f"{name} must be from {low} s to 366 days, got {value} s")

    def _validate_server(self) -> None:
        for name, value, (low, high) in (
            ("HOOK_READ_TIMEOUT", self.read_timeout, READ_TIMEOUT_RANGE),
            ("HOOK_MAX_CONNECTIONS", self.max_connections, MAX_CONNECTIONS_RANGE),
            ("HOOK_WORKERS", self.workers, WORKERS_RANGE),
        ):
            if not low <= value <= high:
                raise SettingsError(f"{name} must be from {low} to {high}, got {value}")
        if self.workers > 1 and not self.redis_configured:
            raise SettingsError(
                "HOOK_WORKERS above 1 needs HOOK_REDIS_URL or HOOK_REDIS_SENTINELS: the "
                "in-memory store is per process, "
                "so a step recorded by one worker would be unknown to the others"
            )
        port = self.internal_port
        if self.internal_host is not None and port is None:
            raise SettingsError("HOOK_INTERNAL_HOST is set without HOOK_INTERNAL_PORT")
        if port is not None and not 1 <= port <= 65535:
            raise SettingsError(f"HOOK_INTERNAL_PORT must be from 1 to 65535, got {port}")
        if port == self.port:
            raise SettingsError(
                f"HOOK_INTERNAL_PORT must differ from HOOK_PORT ({port}): the listener a "
                "request came in on is told by its port"
            )

    def _validate_keys(self) -> None:
        if self.keystore is not None and self.keystore not in KEYSTORES:
            raise SettingsError(f"HOOK_KEYSTORE must be one of {', '.join(KEYSTORES)}")
        if self.key_store == "redis":
            if not self.redis_configured:
                raise SettingsError(
                    "HOOK_KEYSTORE=redis needs HOOK_REDIS_URL or HOOK_REDIS_SENTINELS"
                )
            if not self.key_encryption_keys:
                raise SettingsError(
                    "HOOK_KEY_ENCRYPTION_KEYS is required with the Redis key store: private "
                    "keys are only ever stored there encrypted (see docs/keys.md, 'Key "
                    "management in production')"
                )
        elif self.redis_target is not None and not self.key_encryption_keys:
            # Issued verification tokens are kept in Redis sealed under the KEKs (issue 10,
            # point 8), whichever key store holds the signing keys.
            raise SettingsError(
                f"HOOK_KEY_ENCRYPTION_KEYS is required with {self.redis_target.variable}: the "
                "verification tokens kept in Redis are only ever stored there encrypted (see "
                "docs/deploying.md, 'Upgrading')"
            )
        position = wrong_length(self.key_encryption_keys)
        if position is not None:  # never echo the value
            raise SettingsError(_kek_error(position))
        if self.replica_id is not None and not REPLICA_ID.fullmatch(self.replica_id):
            raise SettingsError(
                "HOOK_REPLICA_ID must be 1 to 64 letters, digits or . _ : @ - (it names this "
                "replica in logs and the key audit)"
            )
        if not 0 <= self.key_publish_lead <= MAX_DURATION:
            raise SettingsError("HOOK_KEY_PUBLISH_LEAD must be from 0 s to 366 days")
        interval = self.key_rotation_interval
        if interval is not None and not 2 * self.key_publish_lead <= interval <= MAX_DURATION:
            # A next key needs the publish lead before it may sign; an interval close to it
            # would have every scheduled rotation wait on (or race) the lead.
            raise SettingsError(
                "HOOK_KEY_ROTATION_INTERVAL must be at least twice HOOK_KEY_PUBLISH_LEAD "
                f"({2 * self.key_publish_lead} s) and at most 366 days, got {interval} s"
            )

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


# Kubernetes "service links": a Service named hook-… injects HOOK_…_SERVICE_HOST,
# HOOK_…_SERVICE_PORT…, HOOK_…_PORT=tcp://… and HOOK_…_PORT_<n>_TCP…; they are not typos.
_SERVICE_LINK = re.compile(r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT\w*|PORT_\d+_(TCP|UDP|SCTP)\w*)")
_LINK_VALUE = ("tcp://", "udp://", "sctp://")


def _check_names(env: Mapping[str, str]) -> None:
    # A misspelt variable (HOOK_API_KEY) would silently leave a default in place.
    known = [PREFIX + f.name.upper() for f in fields(Settings)]
    for name in sorted(env):
        if _SERVICE_LINK.fullmatch(name) or env[name].startswith(_LINK_VALUE):
            continue
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(f"{name} is not a setting of this service{hint}")


def variable_name(field_name: str) -> str:
    """The environment variable of the :class:`Settings` field ``field_name``."""
    return FOREIGN.get(field_name) or PREFIX + field_name.upper()


def parse_variable(name: str, raw: str) -> Any:
    """The typed value of the variable ``name`` (``HOOK_…``) from its text ``raw``, parsed and
    checked as :meth:`Settings.from_env` reads it; :class:`SettingsError` names ``name``. For
    CLI flags that take a variable's text form (``--key-publish-lead 11m``)."""
    field_name = next((f for f, v in FOREIGN.items() if v == name), None)
    return _PARSERS[field_name or name.removeprefix(PREFIX).lower()](name, raw)


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment (any of them may carry a secret), for
    logs and error messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparsable URL>"
    host = f"[{host}]" if ":" in host else host  # IPv6 literal
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_secrets(name: str, values: tuple[str, ...]) -> None:
    for position, value in enumerate(values, start=1):
        if len(value) < MIN_SECRET_LENGTH or value != value.strip():
            # The value itself is a secret: name its position, never echo it.
            raise SettingsError(
                f"{name}: entry {position} must be at least {MIN_SECRET_LENGTH} characters "
                "without surrounding spaces"
            )


def _text(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise SettingsError(f"{name} is set but empty")
    return value


def _int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _path(name: str, raw: str) -> Path:
    return Path(_text(name, raw))


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def _labels(name: str, raw: str) -> tuple[str, ...]:
    # Labels are not secret: they name a token in the audit trail (e.g. "ops,ci,oncall").
    labels = tuple(part.strip() for part in raw.split(","))
    for position, label in enumerate(labels, start=1):
        if not _LABEL.fullmatch(label):
            raise SettingsError(
                f"{name}: label {position} must be 1-64 letters, digits or . _ @ - "
                "(starting with a letter or digit)"
            )
    if len(set(labels)) != len(labels):
        raise SettingsError(f"{name}: labels must be distinct")
    return labels


def _secrets(name: str, raw: str) -> tuple[str, ...]:
    values = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not values:
        raise SettingsError(f"{name} is set but holds no value")
    return values


def _kek_error(position: int) -> str:
    return (
        f"HOOK_KEY_ENCRYPTION_KEYS: entry {position} must be the base64 encoding of exactly "
        f"{KEK_BYTES} random bytes"
    )


def _keks(name: str, raw: str) -> tuple[bytes, ...]:
    decoded = []
    for position, item in enumerate(_secrets(name, raw), start=1):
        try:  # standard or URL-safe alphabet, padding required (a truncated key must not pass)
            value = base64.b64decode(item.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise SettingsError(_kek_error(position)) from None
        decoded.append(value)  # its length is checked with the others' in Settings.validated
    if len(set(decoded)) != len(decoded):
        raise SettingsError(f"{name}: the same key is listed twice")
    return tuple(decoded)


def parse_duration(name: str, raw: str) -> int:
    """Seconds from ``90``, ``90s``, ``11m``, ``12h`` or ``30d``; the error names ``name``."""
    match = _DURATION.fullmatch(raw.strip().lower())
    if match is None:
        raise SettingsError(f"{name} must be a duration such as 660, 11m, 12h or 30d, got {raw!r}")
    return int(match.group(1)) * _UNIT[match.group(2)]


def _choice(name: str, raw: str) -> str:
    return _text(name, raw).lower()


def _redis_url(name: str, raw: str) -> str:
    value = _text(name, raw)
    scheme = urlsplit(value).scheme
    if scheme not in ("redis", "rediss", "unix"):
        # Do not echo the URL: it may carry a password.
        raise SettingsError(f"{name} must start with redis://, rediss:// or unix://")
    return value


def _sentinels(name: str, raw: str) -> tuple[Address, ...]:
    addresses: list[Address] = []
    for position, item in enumerate(raw.split(","), start=1):
        host, _, port = item.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # an IPv6 literal: [::1]:26379
        if not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise SettingsError(
                f"{name}: entry {position} must be host:port (port 1-65535), got {item.strip()!r}"
            )
        addresses.append((host, int(port)))
    if len(set(addresses)) != len(addresses):
        raise SettingsError(f"{name}: the same Sentinel is listed twice")
    return tuple(addresses)


def _password(name: str, raw: str) -> str:
    # A secret: never echoed. Spaces around it would be a copy-paste accident.
    if raw != raw.strip():
        raise SettingsError(f"{name} must not start or end with spaces")
    return raw


def _jwks_url(name: str, raw: str) -> str:
    value = _text(name, raw)
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return value  # a local simulator or test double; never over a network in clear
    raise SettingsError(
        f"{name} must be an https:// URL (http:// only for loopback), got {redact_url(value)!r}"
    )


def _facts_key(name: str, raw: str) -> FactsKey:
    try:
        return FactsKey.from_base64(raw, name)
    except ConfigError as exc:  # the message names the variable, never the value
        raise SettingsError(str(exc)) from None


def _log_level(name: str, raw: str) -> str:
    return _text(name, raw).upper()


def _directory(name: str, raw: str) -> Path:
    path = Path(_text(name, raw))
    if not path.is_dir():
        raise SettingsError(f"{name} must name an existing directory, got {str(path)!r}")
    return path


def _otlp_endpoint(name: str, raw: str) -> str:
    value = _text(name, raw)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {redact_url(value)!r}")
    return value


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "host": _text,
    "port": _int,
    "redis_url": _redis_url,
    "redis_cluster": _bool,
    "redis_sentinels": _sentinels,
    "redis_sentinel_master": _text,
    "redis_sentinel_password": _password,
    "redis_min_replicas": _int,
    "keys_dir": _path,
    "policy_file": _path,
    "shadow_policy_file": _path,
    "prelude_jwks_url": _jwks_url,
    "prelude_jwks_file": _path,
    "insecure_skip_signature": _bool,
    "api_keys": _secrets,
    "admin_tokens": _secrets,
    "admin_token_labels": _labels,
    "token_ttl": _int,
    "log_level": _log_level,
    "keystore": _choice,
    "key_encryption_keys": _keks,
    "key_publish_lead": parse_duration,
    "key_rotation_interval": parse_duration,
    "replica_id": _text,
    "facts_key": _facts_key,
    "facts_retention": parse_duration,
    "facts_flag_ttl": parse_duration,
    "geoip_db": _path,
    "replay_window": parse_duration,
    "read_timeout": parse_duration,
    "max_connections": _int,
    "internal_host": _text,
    "internal_port": _int,
    "workers": _int,
    "log_format": _choice,
    "log_client": _bool,
    "metrics_dir": _directory,
    "otel_endpoint": _otlp_endpoint,
    "otel_traces_exporter": _choice,
}
