"""hook/stepup.py: one hook call as the core sees it: the signature over the raw body first,
then parsing, then the decision step (contract 2.3, 2.1 and 3)."""

from __future__ import annotations

import pytest

from hook_service import errors
from hook_service.hook.decider import HookDecider
from hook_service.hook.signature import SignatureCheck
from hook_service.hook.stepup import StepUpHook
from hook_service.policy.engine import Policy, example_policy_path
from hook_service.prelude.jwks import PreludeJwks
from hook_service.store.memory import MemoryStore
from tests.support import PRELUDE_JWKS_FILE, USER_ID, FakeClock, hook_body, sign_hook

pytestmark = pytest.mark.anyio


def make_hook(store: MemoryStore, clock: FakeClock, *, signed: bool = True) -> StepUpHook:
    checks = SignatureCheck(PreludeJwks(file=PRELUDE_JWKS_FILE)) if signed else None
    return StepUpHook(HookDecider(Policy.load(example_policy_path()), store, clock), checks)


def signature_of(body: bytes, key: str = "prelude_rsa.pem") -> dict[str, str | None]:
    headers = sign_hook(body, key=key)
    return {
        "signature": headers["X-Webhook-Signature"],
        "key_id": headers["X-Webhook-Signature-Key-Id"],
    }


async def test_signed_request_is_parsed_decided_and_recorded(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    body = hook_body(amount="1500")
    answer = await make_hook(store, clock).answer(body, **signature_of(body))
    assert (answer.request.user_id, answer.request.scope_requested) == (USER_ID, "transfer:write")
    assert (answer.decision.rule, answer.decision.status) == ("large-transfer", "review")
    assert len(store) == 1  # the kyc_review step, for the token endpoint


async def test_signature_is_checked_before_the_body_is_parsed(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    body = b'{"not": "a hook request"'
    wrong = signature_of(hook_body(), key="prelude_rsa_other.pem")
    with pytest.raises(errors.InvalidSignature):
        await make_hook(store, clock).answer(body, **wrong)
    # Correctly signed, the same body is refused as a bad request, not decided.
    with pytest.raises(errors.InvalidRequest, match="not valid JSON"):
        await make_hook(store, clock).answer(body, **signature_of(body))
    assert len(store) == 0


async def test_unsigned_request_is_refused_unless_checks_are_off(clock: FakeClock) -> None:
    store = MemoryStore(clock)
    body = hook_body(amount="20")
    with pytest.raises(errors.InvalidSignature, match="missing X-Webhook-Signature header"):
        await make_hook(store, clock).answer(body, signature=None, key_id=None)
    # HOOK_INSECURE_SKIP_SIGNATURE: no SignatureCheck at all.
    answer = await make_hook(store, clock, signed=False).answer(body, signature=None, key_id=None)
    assert answer.decision.rule == "otp-only"
