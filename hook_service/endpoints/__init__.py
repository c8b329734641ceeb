"""Thin HTTP handlers: read the request, call the core, render the answer."""

from __future__ import annotations

from hook_service.endpoints.health import healthz, openapi, readyz
from hook_service.endpoints.keys import jwks, key_events, list_keys, revoke_key, rotate_keys
from hook_service.endpoints.metrics import prometheus_metrics
from hook_service.endpoints.policy import policy_info, reload_policy
from hook_service.endpoints.stepup import stepup_hook
from hook_service.endpoints.verification import verification_token

__all__ = [
    "healthz",
    "jwks",
    "key_events",
    "list_keys",
    "openapi",
    "policy_info",
    "prometheus_metrics",
    "readyz",
    "reload_policy",
    "revoke_key",
    "rotate_keys",
    "stepup_hook",
    "verification_token",
]
