"""number(): the CEL function that reads amounts and fails closed on anything else."""

from __future__ import annotations

import pytest
from cel_expr_python import cel

from hook_service.policy.engine import Policy
from hook_service.policy.functions import number
from hook_service.policy.schema import new_env
from tests.policy.test_policy import request, rules_policy

REFUSED = [
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1e9",
    "0x10",
    " 12",
    "12 ",
    "",
    "+5",
    "1.",
    ".5",
    "1,000",
    "١٢",
    "12abc",
    "9" * 400,
]


@pytest.mark.parametrize(
    ("text", "value"), [("1500", 1500.0), ("1500.50", 1500.5), ("-3", -3.0), ("0", 0.0)]
)
def test_number_reads_plain_decimals(text: str, value: float) -> None:
    assert number(text) == value


@pytest.mark.parametrize("text", REFUSED)
def test_number_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="plain decimal"):
        number(text)


def test_number_is_a_cel_function_returning_double() -> None:
    program = new_env().compile("number(metadata.amount) * 2.0")
    assert program.eval(data={"metadata": {"amount": "12.25"}}).value() == 24.5
    failed = program.eval(data={"metadata": {"amount": "NaN"}})
    assert failed.type() == cel.Type.ERROR
    assert "number() takes a plain decimal string" in str(failed.value())


def test_number_does_not_compile_on_a_non_string() -> None:
    with pytest.raises(RuntimeError):
        new_env().compile("number(1) > 0.0")


def _large_then_small(function: str) -> Policy:
    return rules_policy(
        {"name": "large", "when": f"{function}(metadata.amount) >= 1000.0", "status": "block"},
        {"name": "small", "status": "continue"},
    )


@pytest.mark.parametrize("amount", ["NaN", "inf", "1e9", "abc"])
def test_a_number_rule_fails_closed_where_double_would_fall_through(amount: str) -> None:
    dodged = _large_then_small("double").decide(request("s", metadata={"amount": amount}))
    decision = _large_then_small("number").decide(request("s", metadata={"amount": amount}))
    assert (decision.rule, decision.status) == ("on_error", "block")
    assert decision.error is not None and decision.error.startswith("rule large: ")
    if amount == "NaN":  # the very hole number() closes: with double(), NaN >= 1000 is false
        assert (dodged.rule, dodged.status) == ("small", "continue")


def test_a_number_rule_still_decides_plain_amounts() -> None:
    policy = _large_then_small("number")
    assert policy.decide(request("s", metadata={"amount": "1000"})).rule == "large"
    assert policy.decide(request("s", metadata={"amount": "999.99"})).rule == "small"
