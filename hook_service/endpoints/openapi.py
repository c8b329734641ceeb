"""The OpenAPI 3.1 description of the public interface (design.md, "Endpoints").

Written by hand rather than derived from the handlers: it is a promise to users, and a test
checks that it is valid and covers every route the app serves.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hook_service import __version__
from hook_service.endpoints.policy import openapi_paths as policy_paths
from hook_service.keys.events import EVENT_KINDS

_DURATION = {"type": "integer", "minimum": 1, "maximum": 86400}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_NON_EMPTY = {"type": "string", "minLength": 1}


def _decimal_up_to(limit: int) -> str:
    """A regular expression for the decimal strings (leading zeros allowed) whose value is at
    most ``limit``: any shorter string, or one as long that is not greater digit by digit."""
    digits = str(limit)
    branches = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for i, digit in enumerate(digits):
        if digit != "0":
            rest = len(digits) - i - 1
            branches.append(
                f"{digits[:i]}[0-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else "")
            )
    return "(?:" + "|".join([*branches, digits]) + ")"


# A part of a Redis stream id, as the key store accepts it for ?after= (64 bits unsigned).
_U64 = _decimal_up_to(2**64 - 1)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "invalid_request: malformed body, field or query parameter (the detail names "
        "it), or more than one Authorization header",
        401: "invalid_signature or unauthorized",
        404: "no_pending_step, unknown_key, events_unavailable or not_found",
        409: "step_already_used, rotation_too_early or lock_lost",
        413: "payload_too_large (over 64 KiB)",
        415: "unsupported_media_type (not application/json)",
        503: "store_unavailable, key_store_unavailable or not_ready",
    }
    return {str(status): _json(_ref("Error"), text[status]) for status in statuses}


_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]

_SCHEMAS: dict[str, Any] = {
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
}


@cache
def openapi_document() -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    paths: dict[str, Any] = {
        "/hooks/stepup": {
            "post": {
                "summary": "Prelude's delegation hook",
                "description": "Signed by Prelude with RSASSA-PSS SHA-256 over the raw body.",
                "security": [{"preludeSignature": [], "preludeKeyId": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("HookRequest")}},
                },
                "responses": {
                    "200": _json(_ref("Decision"), "the decision; X-Hook-Rule names the rule"),
                    **_errors(400, 401, 413, 415),
                },
            }
        },
        "/.well-known/jwks.json": {
            "get": {
                "summary": "Public keys that verify our verification tokens",
                "responses": {
                    "200": _json(_ref("JWKS"), "RFC 7517 JWK Set with an ETag"),
                    "304": {"description": "not modified (If-None-Match)"},
                },
            }
        },
        "/verification-token": {
            "post": {
                "summary": "Mint the RS256 token for a pending custom step",
                "description": "One pending step yields one token; a retry by the same "
                "challenge gets the same token while it is valid, whatever later hook calls "
                "recorded. 404 no_pending_step: nothing pending for the user and key (never "
                "asked for, expired), or, in the challenge_token form, the step was recorded "
                "for a scope other than the challenge's scope_requested (checked atomically "
                "with the claim; nothing is consumed). 409 step_already_used: the step gave "
                "its token to another challenge.",
                "security": [{"apiKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("VerificationTokenRequest")}},
                },
                "responses": {
                    "200": _json(_ref("VerificationToken"), "the token (same one on retry)"),
                    **_errors(400, 401, 404, 409, 413, 415, 503),
                },
            }
        },
        "/admin/keys": {
            "get": {
                "summary": "The key set, without private material",
                "security": _ADMIN,
                "responses": {"200": _json(_ref("KeySet"), "keys"), **_errors(400, 401)},
            }
        },
        "/admin/keys/rotate": {
            "post": {
                "summary": "next -> active, active -> retired, new next",
                "security": _ADMIN,
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"force": {"type": "boolean", "default": False}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("KeySet"), "new key set"),
                    **_errors(400, 401, 409, 413, 415, 503),
                },
            }
        },
        "/admin/keys/events": {
            "get": {
                "summary": "Key audit events (Redis key store), oldest first, paged",
                "security": _ADMIN,
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "description": "the id of the last event of the previous page",
                        "schema": {"type": "string", "pattern": f"^{_U64}-{_U64}$"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": _json(_ref("KeyEvents"), "a page of events"),
                    **_errors(400, 401, 404, 503),
                },
            }
        },
        "/admin/keys/{kid}/revoke": {
            "post": {
                "summary": "Drop a key from the JWKS now; if it was active, promote next",
                "security": _ADMIN,
                "parameters": [
                    {"name": "kid", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(_ref("KeySet"), "new key set"),
                    **_errors(400, 401, 404, 503),
                },
            }
        },
        **policy_paths(_json, _errors, _ADMIN),
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                "responses": {"200": _json(_ref("Health"), "alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Store reachable, active key and policy loaded",
                "responses": {
                    "200": _json(_ref("Health"), "ready"),
                    "503": _json(_ref("NotReady"), "not_ready, with the failing checks"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (docs/operations.md)",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "prelude-stepup-hook",
            "version": __version__,
            "description": "Backend for Prelude step-up authentication.",
        },
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "adminToken": {"type": "http", "scheme": "bearer"},
                "preludeSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Webhook-Signature",
                },
                "preludeKeyId": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Webhook-Signature-Key-Id",
                },
            },
        },
    }
