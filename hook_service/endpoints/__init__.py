"""Thin HTTP handlers: read the request, call the core, render the answer."""

from __future__ import annotations

from .health import healthz, openapi, readyz
from .keys import jwks, key_events, list_keys, revoke_key, rotate_keys
from .stepup import stepup_hook
from .verification import verification_token

__all__ = [
    "healthz",
    "jwks",
    "key_events",
    "list_keys",
    "openapi",
    "readyz",
    "revoke_key",
    "rotate_keys",
    "stepup_hook",
    "verification_token",
]
