"""hook/base.py: the hook request model and the CEL variables it gives the policy."""

from __future__ import annotations

from types import MappingProxyType

from hook_service.facts.base import NO_FACTS, Facts
from hook_service.hook.base import HookRequest, Identifier
from hook_service.hook.parse import parse_hook_request
from hook_service.policy.schema import CEL_VARIABLES, new_env
from tests.hook.support import BODY, body_with

# --- CEL context -----------------------------------------------------------------------------


def test_cel_context_shape() -> None:
    assert parse_hook_request(BODY).cel_context() == {
        "scope": "transfer:write",
        "user_id": "usr_39CfbdV8AsXQwdphtbJe4yH07aF",
        "identifiers": [
            {"type": "email_address", "value": "user@example.com"},
            {"type": "phone_number", "value": "+33612345678"},
        ],
        "signals": {"user_agent": "Mozilla/5.0", "platform": "WEB", "ip": "203.0.113.42"},
        "metadata": {"amount": "500", "currency": "USD"},
        "has_phone": True,
        "has_email": True,
        "facts": NO_FACTS.to_cel(),  # nothing known without facts
    }
    facts = Facts(device_known=True, step_age={"kyc_review": 5}, travel_kmh=12.5)
    assert parse_hook_request(BODY).cel_context(facts)["facts"] == facts.to_cel()


def test_cel_context_is_a_fresh_dict_each_call() -> None:
    request = parse_hook_request(BODY)
    first = request.cel_context()
    first["scope"] = "changed"
    first["has_phone"] = False
    assert request.cel_context()["scope"] == "transfer:write"
    assert request.cel_context()["has_phone"] is True


# The policy's own CEL environment: if its declared variables drift from cel_context(), these
# tests fail instead of agreeing with a private copy of the declarations. Uses every variable.
_CEL_EXPR = new_env().compile(
    'scope == "transfer:write" && signals.platform == "WEB" && has_phone && has_email'
    ' && number(metadata.amount) >= 500.0 && identifiers.exists(i, i.type == "phone_number")'
    ' && user_id != ""'
)


def test_cel_context_evaluates_in_cel() -> None:
    context = parse_hook_request(BODY).cel_context()
    # No variable the policy cannot see, none missing; `facts` holds the "nothing known"
    # values until the facts store's are given.
    assert set(context) == set(CEL_VARIABLES)
    # cel-expr-python rejects anything but plain dicts/lists (e.g. mappingproxy, tuples).
    assert _CEL_EXPR.eval(data=context).value() is True


def test_cel_context_accepts_a_hand_built_request_with_read_only_mappings() -> None:
    request = HookRequest(
        scope_requested="transfer:write",
        user_id="usr_1",
        identifiers=(Identifier("phone_number", "+1"), Identifier("email_address", "a@b.c")),
        signals=MappingProxyType({"platform": "WEB"}),
        metadata=MappingProxyType({"amount": "900"}),
    )
    assert request.has_phone and request.has_email
    assert _CEL_EXPR.eval(data=request.cel_context()).value() is True


def test_cel_context_copies_nothing() -> None:
    # The hook is on Prelude's 5 s path; building the context must not copy or re-validate
    # the request's values: CEL sees the very objects parsing produced (no timing here, per
    # the house rules; `make bench` measures the cost).
    request = parse_hook_request(BODY)
    first, second = request.cel_context(), request.cel_context()
    assert first is not second
    assert first["signals"] is request.signals and first["metadata"] is request.metadata
    assert first["identifiers"] is second["identifiers"]


def test_request_equality_ignores_derived_fields() -> None:
    assert parse_hook_request(BODY) == parse_hook_request(BODY)
    assert parse_hook_request(BODY) != parse_hook_request(body_with(user_id="usr_other"))
