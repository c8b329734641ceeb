"""The CEL functions a policy may call beyond CEL's standard library (docs/policy.md).

``number(string) -> double`` exists because ``double()`` accepts more than numbers:
``double("NaN")`` is NaN, and every comparison with NaN is false, so ``double(metadata.amount)
>= 1000.0`` lets ``"NaN"`` fall through to a weaker rule. ``number()`` accepts only a plain
decimal string and is a CEL error for anything else, which stops the evaluation and answers
``on_error`` (fails closed).
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from cel_expr_python import cel

# Digits, an optional fraction, an optional leading "-"; ASCII only ([0-9], not \d, which
# would take "١٢"), no sign "+", no exponent, no surrounding space.
_PLAIN_DECIMAL: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def number(text: str) -> float:
    """``text`` as a double if it is a plain decimal (``"1500"``, ``"1500.50"``, ``"-3"``).

    Raises ValueError otherwise, which cel-expr-python turns into a CEL error: ``"NaN"``,
    ``"inf"``, ``"1e9"``, ``"0x10"``, ``" 12"``, ``"+5"``, ``""``, and digit strings too long
    for a finite double."""
    if _PLAIN_DECIMAL.fullmatch(text):
        value = float(text)
        if math.isfinite(value):  # 400 nines are plain digits, but float() makes them inf
            return value
    # The value is not quoted: WARNING logs never carry the request's values (it is in the
    # DEBUG trace, and in `policy eval --trace`).
    raise ValueError("number() takes a plain decimal string such as 1500 or -12.50")


def declarations() -> list[Any]:
    """The function declarations (with their implementations) for ``cel.NewEnv``."""
    return [
        cel.FunctionDecl(
            "number",
            [cel.Overload("number_string", cel.Type.DOUBLE, [cel.Type.STRING], impl=number)],
        )
    ]
