"""The ``facts`` variable of a ``when`` (design.md "Facts", issue 11 points 1 and 6); private to
:mod:`hook_service.policy`.

``facts`` is declared as ``map(string, dyn)`` (cel-expr-python builds object types only from
protobuf descriptors), so CEL itself cannot tell ``facts.atempts_1h`` from a real field: that
typo would fail to evaluate on every request and answer ``on_error``. :func:`unknown_fields`
finds it at load instead.

Which rules read facts is found by a token scan of each ``when``, not from the CEL AST:
cel-expr-python 0.1 exposes no AST (only ``Expression.serialize()``, a checked-expression
protobuf it gives no reader for). The scan is conservative by construction: a top-level CEL
variable can only be reached through its identifier (CEL has no aliasing, and identifiers have
no escapes), so an expression that reads ``facts`` always contains the token ``facts``. The
token inside a string literal or a comment, or as a field name (``metadata.facts``), counts
too: it only makes the scope pay for facts it does not read, never the other way round.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any, Final

from cel_expr_python import cel

from hook_service.facts.base import Facts

VARIABLE: Final = "facts"
CEL_TYPE: Final[Any] = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
FIELDS: Final = frozenset(f.name for f in fields(Facts))

# CEL identifiers are [_a-zA-Z][_a-zA-Z0-9]* (cel-spec, "Syntax"); a token is bounded by
# anything else.
_TOKEN: Final = re.compile(r"(?<![A-Za-z0-9_])facts(?![A-Za-z0-9_])")
# `facts.name` where `facts` is the variable itself (not `x.facts`, a field of something else).
_SELECT: Final = re.compile(r"(?<![A-Za-z0-9_.])facts\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


def reads_facts(when: str | None) -> bool:
    """Whether ``when`` may read ``facts`` (conservative: see the module docstring)."""
    return when is not None and _TOKEN.search(when) is not None


def unknown_fields(when: str) -> list[str]:
    """The ``facts.<name>`` selections of ``when`` whose name is not a field of
    :class:`~hook_service.facts.base.Facts`, in order of appearance."""
    return [name for name in _SELECT.findall(when) if name not in FIELDS]
