"""The delegation-hook request model (contract 2.1): what the policy decides on.

Pure values: :mod:`hook_service.hook.parse` builds them from a body, the policy
(:mod:`hook_service.policy`) reads them; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hook_service.facts.base import NO_FACTS, Facts

PHONE_NUMBER: Final = "phone_number"
EMAIL_ADDRESS: Final = "email_address"
# Contract 2.1 / 7: Prelude's scope pattern ^[a-zA-Z0-9.\-_:]+$ (fullmatch, so no trailing "\n").
# The policy file's scope names are checked against it too (policy/schema.py).
SCOPE_PATTERN: Final = re.compile(r"[a-zA-Z0-9.\-_:]+")
# What a scope whose rules do not read facts gets (built once: CEL never mutates it).
_NO_FACTS_CEL: Final = NO_FACTS.to_cel()


@dataclass(frozen=True, slots=True)
class Identifier:
    """One of the user's identifiers; ``type`` is usually ``email_address`` or ``phone_number``."""

    type: str
    value: str


@dataclass(frozen=True, slots=True)
class HookRequest:
    """A parsed hook request (contract 2.1). Mappings hold plain ``dict`` values: treat as
    read-only; they are handed to CEL as they are."""

    scope_requested: str
    user_id: str
    identifiers: tuple[Identifier, ...]
    signals: Mapping[str, Any]
    metadata: Mapping[str, str]
    # Derived once here because cel_context() runs on every hook call (the hot path).
    _has_phone: bool = field(init=False, repr=False, compare=False)
    _has_email: bool = field(init=False, repr=False, compare=False)
    _cel_identifiers: list[dict[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        types = {i.type for i in self.identifiers}
        object.__setattr__(self, "_has_phone", PHONE_NUMBER in types)
        object.__setattr__(self, "_has_email", EMAIL_ADDRESS in types)
        cel_ids = [{"type": i.type, "value": i.value} for i in self.identifiers]
        object.__setattr__(self, "_cel_identifiers", cel_ids)

    @property
    def has_phone(self) -> bool:
        """Whether any identifier has type ``phone_number``."""
        return self._has_phone

    @property
    def has_email(self) -> bool:
        """Whether any identifier has type ``email_address``."""
        return self._has_email

    def cel_context(self, facts: Facts | None = None) -> dict[str, Any]:
        """The CEL variables of a policy ``when`` expression (design.md "Policy file"), with
        ``facts`` about the user's history (none known when None: design.md "Facts").

        A fresh top-level dict each call; nested values are shared, never copied, and must not
        be mutated. cel-expr-python only accepts plain dicts and lists.
        """
        signals = self.signals if isinstance(self.signals, dict) else dict(self.signals)
        metadata = self.metadata if isinstance(self.metadata, dict) else dict(self.metadata)
        return {
            "scope": self.scope_requested,
            "user_id": self.user_id,
            "identifiers": self._cel_identifiers,
            "signals": signals,
            "metadata": metadata,
            "has_phone": self._has_phone,
            "has_email": self._has_email,
            "facts": _NO_FACTS_CEL if facts is None else facts.to_cel(),
        }
