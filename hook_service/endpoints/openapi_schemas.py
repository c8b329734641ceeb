"""The component schemas of the OpenAPI document (:mod:`hook_service.endpoints.openapi`):
what each request body and answer looks like. They must match behaviour exactly: the suite
runs schemathesis on the whole document."""

from __future__ import annotations

from typing import Any

from hook_service.endpoints.openapi_facts import FACTS_SCHEMAS
from hook_service.keys.events import EVENT_KINDS

_DURATION = {"type": "integer", "minimum": 1, "maximum": 86400}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_NON_EMPTY = {"type": "string", "minLength": 1}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "HookRequest": {
        "type": "object",
        "required": ["scope_requested", "user_id"],
        "properties": {
            "scope_requested": {"type": "string", "pattern": "^[a-zA-Z0-9.\\-_:]+$"},
            "user_id": {"type": "string", "minLength": 1},
            "identifiers": {
                "type": ["array", "null"],
                "items": {
                    "type": "object",
                    "required": ["type", "value"],
                    "properties": {"type": {"type": "string"}, "value": {"type": "string"}},
                },
            },
            "signals": {"type": ["object", "null"]},
            "metadata": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "Decision": {
        "type": "object",
        "required": ["status", "grant_mode", "granted_for", "steps"],
        "additionalProperties": False,
        "properties": {
            "status": {"enum": ["continue", "review", "block"]},
            "grant_mode": {"enum": ["single-use", "session-bound", "profile-bound"]},
            "granted_for": _DURATION,
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["order", "key", "expiration_duration"],
                    "properties": {
                        "order": {"type": "integer", "minimum": 1},
                        "key": {"type": "string", "pattern": "^[a-zA-Z0-9._:-]+$"},
                        "expiration_duration": _DURATION,
                    },
                },
            },
        },
    },
    "VerificationTokenRequest": {
        "type": "object",
        "description": "Either user_id, challenge_id and key, or challenge_token; "
        "when both are given they must agree.",
        "properties": {
            "user_id": _NON_EMPTY,
            "challenge_id": _NON_EMPTY,
            "key": _NON_EMPTY,
            "challenge_token": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
                "description": "Prelude's EdDSA JWT (compact form); refused with 400 or 401 "
                "unless Prelude signed it and it has not expired, 400 unless it carries "
                "scope_requested and steps with current_step one of its steps not yet done",
            },
        },
        "anyOf": [
            {"required": ["user_id", "challenge_id", "key"]},
            {"required": ["challenge_token"]},
        ],
    },
    "VerificationToken": {
        "type": "object",
        "required": ["verification_token", "jti", "kid", "expires_at"],
        "properties": {
            "verification_token": {"type": "string", "description": "RS256 JWT"},
            "jti": {"type": "string"},
            "kid": {"type": "string"},
            "expires_at": {"type": "integer", "description": "Unix time"},
        },
    },
    "JWKS": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "kid", "use", "alg", "n", "e"],
                    "additionalProperties": False,
                    "properties": {
                        "kty": {"const": "RSA"},
                        "kid": {"type": "string"},
                        "use": {"const": "sig"},
                        "alg": {"const": "RS256"},
                        "n": {"type": "string"},
                        "e": {"type": "string"},
                    },
                },
            }
        },
    },
    "KeySet": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kid", "state", "created_at", "activated_at", "retire_at"],
                    "properties": {
                        "kid": {"type": "string"},
                        "state": {"enum": ["next", "active", "retired"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "activated_at": _TIME,
                        "retire_at": _TIME,
                    },
                },
            },
            "warning": {
                "type": "string",
                "description": "after a revocation (Prelude's 10-minute JWKS cache) or an "
                "early forced rotation (verifiers with a cached JWKS refetch)",
            },
        },
    },
    "KeyEvents": {
        "type": "object",
        "required": ["events", "next"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "event", "kid", "time", "actor", "replica", "version"],
                    "properties": {
                        "id": {"type": "string", "description": "stream id; the page cursor"},
                        "event": {"enum": list(EVENT_KINDS)},
                        "kid": {"type": "string"},
                        "time": {"type": "integer", "description": "Unix seconds"},
                        "actor": {"type": "string"},
                        "replica": {"type": "string"},
                        "version": {"type": "integer"},
                    },
                },
            },
            "next": {"type": ["string", "null"], "description": "pass as ?after= for more"},
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "NotReady": {
        "type": "object",
        "required": ["error", "detail", "checks"],
        "properties": {
            "error": {"const": "not_ready"},
            "detail": {"type": "string"},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    **FACTS_SCHEMAS,
}
