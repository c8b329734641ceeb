"""The OpenAPI schemas of ``POST /outcomes`` and ``GET``/``DELETE
/admin/users/{user_id}/facts`` (issue 11 points 2 and 4), exactly as the handlers answer:
:mod:`hook_service.endpoints.outcomes`, :mod:`hook_service.endpoints.users` and
:func:`hook_service.facts.inventory.describe`."""

from __future__ import annotations

from typing import Any

_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_SCOPE = {"type": "string", "pattern": "^[a-zA-Z0-9.\\-_:]+$", "maxLength": 128}
_AGE = {"type": "integer", "description": "seconds"}
_HASH = {"type": "string", "description": "keyed hash (HMAC-SHA-256 under HOOK_FACTS_KEY)"}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An object with exactly ``properties``, all required."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }
    return schema | ({"description": description} if description else {})


def _ages(what: str) -> dict[str, Any]:
    """Rows of :func:`hook_service.facts.inventory.describe` for devices or IPs."""
    age = {"type": ["integer", "null"], "description": "seconds; null: never"}
    row = _object({"hash": _HASH, "seen_age": age, "known_age": age})
    return {"type": "array", "items": row, "description": f"{what}, most recent first"}


_ERASED_FACTS = (
    "devices",
    "ips",
    "countries",
    "attempts",
    "open_attempts",
    "steps",
    "verified",
    "flag",
)
_FACTS_HELD = _object(
    {
        "devices": _ages("devices (hash of the parsed user agent and platform)"),
        "ips": _ages("IPs (hash of the address, or of its /64 for IPv6)"),
        "countries": {
            "type": "object",
            "additionalProperties": _AGE,
            "description": "verified countries (ISO 3166-1 alpha-2) -> seconds since",
        },
        "attempts": _object({"last_1h": _COUNT, "last_24h": _COUNT}),
        "open_attempts": {
            "type": "array",
            "description": "per scope, the latest attempt still in its proof window",
            "items": _object(
                {
                    "scope": {"type": "string"},
                    "age": _AGE,
                    "status": {"enum": ["continue", "review", "block", "undecided"]},
                    "expires_in": _COUNT,
                    "proven": {"type": "boolean"},
                    "device": {**_HASH, "type": ["string", "null"]},
                    "ip": {**_HASH, "type": ["string", "null"]},
                    "country": {"type": "string"},
                    "steps": {"type": "array", "items": {"type": "string"}},
                }
            ),
        },
        "verified_age": {**_AGE, "description": "seconds since the last proof; -1: none"},
        "location_age": {**_AGE, "description": "seconds since the location held; -1: none"},
        "step_age": {
            "type": "object",
            "additionalProperties": _AGE,
            "description": "custom step key -> seconds since its last token",
        },
        "flagged": {"type": "boolean"},
        "flag_expires_in": _COUNT,
    },
    "what the facts store holds: counts, ages and hashes, never a raw IP or user agent",
)


FACTS_SCHEMAS: dict[str, Any] = {
    # POST /outcomes and the privacy endpoints (issue 11 points 2 and 4)
    "OutcomeRequest": {
        "type": "object",
        "required": ["user_id", "scope", "outcome"],
        "additionalProperties": False,
        "properties": {
            "user_id": {"type": "string", "minLength": 1},
            "scope": _SCOPE,
            "outcome": {
                "enum": ["verified", "fraud"],
                "description": "verified: mark the user's latest unexpired review attempt "
                "for scope (404 no_attempt if none); fraud: flag the user and forget "
                "what proofs taught",
            },
        },
    },
    "Outcome": {
        "type": "object",
        "required": ["user_id", "scope", "outcome", "recorded"],
        "additionalProperties": False,
        "properties": {
            "user_id": {"type": "string"},
            "scope": {"type": "string"},
            "outcome": {"enum": ["verified", "fraud"]},
            "recorded": {"const": True},
        },
    },
    "UserFacts": {
        "type": "object",
        "required": ["user_id", "facts", "records"],
        "additionalProperties": False,
        "properties": {
            "user_id": {"type": "string"},
            "facts": _FACTS_HELD,
            "records": _object(
                {"pending_steps": _COUNT, "issued_tokens": _COUNT},
                "the pending-step store's records of the user",
            ),
        },
    },
    "UserErased": {
        "type": "object",
        "required": ["user_id", "erased"],
        "additionalProperties": False,
        "properties": {
            "user_id": {"type": "string"},
            "erased": _object(
                {
                    "facts": _object(
                        {name: _COUNT for name in _ERASED_FACTS},
                        "what was in force in the user's history",
                    ),
                    "records": {
                        **_COUNT,
                        "description": "pending-step records (claimed or not) and issued-token "
                        "records deleted",
                    },
                },
                "counts of what was erased (all 0 on a second call)",
            ),
        },
    },
}
