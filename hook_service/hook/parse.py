"""Parsing and validating a hook request body (contract 2.1) into a :class:`HookRequest`.

Pure: bytes in, a :class:`HookRequest` out. Call it only after the signature over the raw body
verified (contract 2.3, :mod:`hook_service.hook.signature`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from hook_service import errors
from hook_service._json import parse_json_object
from hook_service.hook.base import SCOPE_PATTERN, HookRequest, Identifier

# Metadata keys in this charset are named as "metadata.<key>" in errors, others quoted.
_PLAIN_KEY: Final = re.compile(r"[a-zA-Z0-9.\-_:]{1,40}")


def _string(data: Mapping[str, Any], key: str, name: str | None = None) -> str:
    name = name or key
    value = data.get(key)
    if value is None:
        raise errors.InvalidRequest(f"{name} is required")
    if not isinstance(value, str):
        raise errors.InvalidRequest(f"{name} must be a string")
    return value


def _collection(data: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    # Absent or null means empty: Go's encoding/json writes nil slices/maps as null, and
    # contract 2.1 allows missing metadata and empty identifiers.
    value = data.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise errors.InvalidRequest(f"{key} must be an {'array' if kind is list else 'object'}")
    return value


def _metadata_name(key: str) -> str:
    return f"metadata.{key}" if _PLAIN_KEY.fullmatch(key) else f"metadata[{json.dumps(key[:40])}]"


def parse_hook_request(body: bytes) -> HookRequest:
    """Parse and validate a hook request body (contract 2.1).

    Lenient where Prelude may evolve (unknown fields ignored everywhere, unknown identifier
    types kept, metadata beyond Prelude's documented limits accepted), strict on types.
    Raises :class:`errors.InvalidRequest` whose detail names the offending field.
    """
    data = parse_json_object(body)
    scope = _string(data, "scope_requested")
    if not SCOPE_PATTERN.fullmatch(scope):
        raise errors.InvalidRequest(r"scope_requested must match ^[a-zA-Z0-9.\-_:]+$")
    user_id = _string(data, "user_id")
    if not user_id:
        raise errors.InvalidRequest("user_id must not be empty")

    identifiers: list[Identifier] = []
    for index, item in enumerate(_collection(data, "identifiers", list)):
        if not isinstance(item, dict):
            raise errors.InvalidRequest(f"identifiers[{index}] must be an object")
        identifiers.append(
            Identifier(
                type=_string(item, "type", f"identifiers[{index}].type"),
                value=_string(item, "value", f"identifiers[{index}].value"),
            )
        )

    signals = _collection(data, "signals", dict)
    metadata = _collection(data, "metadata", dict)
    for key, value in metadata.items():
        # Prelude's documented limits (5 entries, 12/32 chars) are Prelude's to enforce; a
        # 400 here would break step-up the day Prelude relaxes them. Only the type is ours.
        if not isinstance(value, str):
            raise errors.InvalidRequest(f"{_metadata_name(key)} must be a string")

    return HookRequest(
        scope_requested=scope,
        user_id=user_id,
        identifiers=tuple(identifiers),
        signals=signals,
        metadata=metadata,
    )
