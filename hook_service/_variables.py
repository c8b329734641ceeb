"""Each ``HOOK_*`` variable's text into a typed value, for :class:`~hook_service.settings.Settings`.

The variables' names (:func:`variable_name`, the few that are not ours in :data:`FOREIGN`), the
check that every ``HOOK_*`` name in the environment is one of them, one parser per setting
(:data:`PARSERS`; a bad value raises :class:`~hook_service.errors.SettingsError` naming the
variable, never echoing a secret), and the choices the CLI's flags share. Cross-field checks
are in :mod:`hook_service._settings_checks`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hook_service._redis_target import Address
from hook_service.errors import ConfigError, SettingsError
from hook_service.facts.hashing import FactsKey
from hook_service.keys.backends.keyring import KEK_BYTES

PREFIX = "HOOK_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
TRACES_EXPORTERS = ("otlp", "console", "none")
KEYSTORES = ("file", "redis")
# Settings read from variables that are not ours: prometheus-client's multiprocess directory
# (`serve --workers` sets it) and OpenTelemetry's two switches (docs/operations.md).
FOREIGN = {
    "metrics_dir": "PROMETHEUS_MULTIPROC_DIR",
    "otel_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "otel_traces_exporter": "OTEL_TRACES_EXPORTER",
}
# ASCII digits, few of them: \d also matches other scripts' digits, and int() refuses over
# 4300 of them with a ValueError that would not name the variable.
_DURATION = re.compile(r"([0-9]{1,10})\s*([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# Kubernetes "service links": a Service named hook-… injects HOOK_…_SERVICE_HOST,
# HOOK_…_SERVICE_PORT…, HOOK_…_PORT=tcp://… and HOOK_…_PORT_<n>_TCP…; they are not typos.
_SERVICE_LINK = re.compile(r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT\w*|PORT_\d+_(TCP|UDP|SCTP)\w*)")
_LINK_VALUE = ("tcp://", "udp://", "sctp://")


def check_names(env: Mapping[str, str], settings: Iterable[str]) -> None:
    """Raise :class:`SettingsError` for a ``HOOK_*`` name in ``env`` that is not the variable of
    one of the ``settings`` (field names), with the closest one as a hint."""
    # A misspelt variable (HOOK_API_KEY) would silently leave a default in place.
    known = [PREFIX + name.upper() for name in settings]
    for name in sorted(env):
        if _SERVICE_LINK.fullmatch(name) or env[name].startswith(_LINK_VALUE):
            continue
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(f"{name} is not a setting of this service{hint}")


def variable_name(field_name: str) -> str:
    """The environment variable of the :class:`~hook_service.settings.Settings` field
    ``field_name``."""
    return FOREIGN.get(field_name) or PREFIX + field_name.upper()


def parse_variable(name: str, raw: str) -> Any:
    """The typed value of the variable ``name`` (``HOOK_…``) from its text ``raw``, parsed and
    checked as :meth:`Settings.from_env <hook_service.settings.Settings.from_env>` reads it;
    :class:`SettingsError` names ``name``. For CLI flags that take a variable's text form
    (``--key-publish-lead 11m``)."""
    field_name = next((f for f, v in FOREIGN.items() if v == name), None)
    return PARSERS[field_name or name.removeprefix(PREFIX).lower()](name, raw)


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


def kek_error(position: int) -> str:
    """The error for the ``position``-th (1-based) KEK; never the value."""
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
            raise SettingsError(kek_error(position)) from None
        decoded.append(value)  # its length is checked with the others' (_settings_checks)
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


# One per Settings field (tests/test_settings.py checks both lists agree).
PARSERS: dict[str, Callable[[str, str], Any]] = {
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
