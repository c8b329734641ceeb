"""Helpers shared by the hook tests: Prelude's documented example body (contract 2.1)."""

from __future__ import annotations

import json
from typing import Any

BODY = json.dumps(
    {
        "scope_requested": "transfer:write",
        "user_id": "usr_39CfbdV8AsXQwdphtbJe4yH07aF",
        "identifiers": [
            {"type": "email_address", "value": "user@example.com"},
            {"type": "phone_number", "value": "+33612345678"},
        ],
        "signals": {"user_agent": "Mozilla/5.0", "platform": "WEB", "ip": "203.0.113.42"},
        "metadata": {"amount": "500", "currency": "USD"},
    }
).encode()


def body_with(**changes: Any) -> bytes:
    """:data:`BODY` with fields replaced; ``...`` as a value removes the field."""
    data = json.loads(BODY)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()
