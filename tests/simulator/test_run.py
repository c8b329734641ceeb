"""``simulate run`` in-process: it passes against the real service and names Prelude's reason
for every way a deliberately broken service can be wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hook_service.simulator.flows import PROBES, REFUSALS
from hook_service.simulator.report import Check, Report
from hook_service.simulator.runner import simulate_run
from hook_service.simulator.scenarios import ScenarioFile, load_scenarios, shipped_scenarios
from tests.simulator.support import (
    REVIEW_WITH_KYC,
    FakeService,
    one_scenario,
    service_client,
    sim_keys,
)
from tests.support import API_KEY, FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def real_app(make_app: Any, tmp_path: Path) -> Any:
    """The real service, trusting the simulator's Prelude JWKS."""
    jwks = tmp_path / "sim-jwks.json"
    jwks.write_text(json.dumps(sim_keys().jwks()))
    return make_app(prelude_jwks_file=jwks)


async def run(app: Any, clock: FakeClock, scenarios: ScenarioFile, **options: Any) -> Report:
    async with service_client(app, clock, **options) as service:
        return await simulate_run(service, scenarios, clock)


def check(report: Report, title: str) -> Check:
    assert title in [c.title for c in report.checks]
    return report.check(title)


async def test_shipped_scenarios_pass_against_the_real_service(
    real_app: Any, clock: FakeClock
) -> None:
    scenarios = load_scenarios(shipped_scenarios())
    report = await run(real_app, clock, scenarios)
    assert report.failures() == []
    assert report.passed
    names = [c.title for c in report.checks]
    for scenario in scenarios.scenarios:
        assert f"{scenario.name}: expected decision" in names
    # Every kyc_review scenario went end to end: both forms, a replay, a second challenge.
    kyc = "large transfer with a phone asks for SMS then KYC: kyc_review"
    assert check(report, f"{kyc} token verifies").detail.startswith(
        "challenge_token form; RS256, kid "
    )
    retry = check(report, f"{kyc} token, fields form for the same challenge")
    assert retry.detail == "returned the identical token (safe retry)"
    second = check(report, f"{kyc} token for a second challenge")
    assert "409 step_already_used" in second.detail
    # Issued tokens and credentials are secrets: never in a report (a JWT starts with eyJ).
    rendered = report.render_json() + report.render_table()
    assert "eyJ" not in rendered
    assert API_KEY not in rendered
    for what in ("a tampered body", "an unknown signing key id", "no signature"):
        assert check(report, f"{PROBES}: refuses a request with {what}").detail == "HTTP 401"
    for what in ("no API key", "a wrong API key"):
        probe = check(report, f"{REFUSALS}: refuses a token request with {what}")
        assert (probe.passed, probe.detail) == (True, "HTTP 401")
    forged = check(report, f"{REFUSALS}: refuses a challenge token Prelude did not sign")
    assert forged.passed
    assert forged.detail.startswith("HTTP 401 ")


async def test_a_service_that_skips_the_signature_check_fails(
    make_app: Any, clock: FakeClock, tmp_path: Path
) -> None:
    app = make_app(insecure_skip_signature=True, prelude_jwks_file=None)
    report = await run(app, clock, one_scenario(tmp_path))
    assert not report.passed
    tampered = check(report, f"{PROBES}: refuses a request with a tampered body")
    assert tampered.reason == "forged_request_accepted"
    assert tampered.detail == "HTTP 200; expected 401"
    # Without Prelude's JWKS the service cannot read challenge tokens: that form fails and
    # the simulator carries on with the other one.
    form = check(report, "scenario 1: kyc_review token, challenge_token form")
    assert form.reason == "token_request_failed"
    assert "400 invalid_request" in form.detail
    assert check(report, "scenario 1: kyc_review token verifies").passed


async def test_unexpected_decision_is_reported_with_both_sides(
    real_app: Any, clock: FakeClock, tmp_path: Path
) -> None:
    scenarios = one_scenario(tmp_path, "{status: review, steps: [verify_email], rule: otp-only}")
    report = await run(real_app, clock, scenarios)
    result = check(report, "scenario 1: expected decision")
    assert result.reason == "unexpected_decision"
    assert result.detail == (
        "steps: expected [verify_email], got [verify_sms, kyc_review]; "
        "rule (X-Hook-Rule): expected 'otp-only', got 'large-transfer'"
    )


def answer(body: Any, status: int = 200, media_type: str = "application/json") -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda request: Response(content, status_code=status, media_type=media_type)


def decision(**changes: Any) -> dict[str, Any]:
    body = dict(REVIEW_WITH_KYC, **changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("hook", "reason", "detail"),
    [
        (answer(REVIEW_WITH_KYC, status=500), "invalid_status_code", "HTTP 500"),
        (
            answer(REVIEW_WITH_KYC, media_type="text/plain"),
            "response_decode_failed",
            "Content-Type is text/plain",
        ),
        (answer(b'{"status": "rev'), "response_decode_failed", "not JSON"),
        (
            answer(b" " * 65_536 + json.dumps(REVIEW_WITH_KYC).encode()),
            "response_decode_failed",
            "larger than 65536 bytes",
        ),
        (answer(decision(status="granted")), "invalid_status", "'granted'"),
        (answer(decision(status=None)), "invalid_status", "None"),
        (answer(decision(steps=[])), "missing_steps", "review"),
        (answer(decision(grant_mode="forever")), "invalid_grant_mode", "'forever'"),
        (answer(decision(granted_for=0)), "invalid_granted_for", "is 0"),
        (answer(decision(granted_for=86_401)), "invalid_granted_for", "86401"),
        (
            answer(decision(steps=[{"order": 1, "key": "kyc review", "expiration_duration": 60}])),
            "invalid_step",
            "'kyc review'",
        ),
        (
            answer(decision(steps=[{"order": 1, "key": "selfie", "expiration_duration": 60}])),
            "invalid_step",
            "registered in step_keys",
        ),
        (
            answer(decision(steps=[{"order": 1, "key": "verify_sms", "expiration_duration": -1}])),
            "invalid_step",
            "expiration_duration is -1",
        ),
        (answer([REVIEW_WITH_KYC]), "invalid_response", "JSON list"),
    ],
)
async def test_a_wrong_hook_answer_gets_preludes_reason(
    clock: FakeClock, tmp_path: Path, hook: Any, reason: str, detail: str
) -> None:
    fake = FakeService(clock)
    fake.hook = hook
    report = await run(fake.app, clock, one_scenario(tmp_path))
    result = check(report, "scenario 1: Prelude accepts the answer")
    assert (result.passed, result.reason) == (False, reason)
    assert detail in result.detail
    assert not report.passed


async def test_an_answer_after_five_seconds_is_request_failed(
    clock: FakeClock, tmp_path: Path
) -> None:
    fake = FakeService(clock)

    def slow(request: Request) -> Any:
        clock.advance(5.5)  # the simulator measures with this clock
        return JSONResponse(REVIEW_WITH_KYC)

    fake.hook = slow
    report = await run(fake.app, clock, one_scenario(tmp_path))
    result = check(report, "scenario 1: Prelude accepts the answer")
    assert result.reason == "request_failed"
    assert result.detail == "answered after 5.50 s (limit 5 s)"


async def test_no_answer_within_the_limit_is_request_failed(
    clock: FakeClock, tmp_path: Path
) -> None:
    fake = FakeService(clock)

    async def hang(request: Request) -> Any:
        await anyio.sleep_forever()

    fake.hook = hang
    report = await run(fake.app, clock, one_scenario(tmp_path), time_limit=0.05)
    result = check(report, "scenario 1: Prelude accepts the answer")
    assert (result.reason, result.detail) == ("request_failed", "no answer within 0.05 s")


KYC_THEN_EMAIL: dict[str, Any] = {
    **REVIEW_WITH_KYC,
    "steps": [
        {"order": 1, "key": "kyc_review", "expiration_duration": 86400},
        {"order": 2, "key": "verify_email", "expiration_duration": 600},
    ],
}
INVALID = "invalid_verification_token"


@pytest.mark.parametrize(
    ("change", "code", "detail"),
    [
        ({"algorithm": "HS256"}, INVALID, "alg: alg is 'HS256'; only RS256 is accepted"),
        ({"claims": {"sub": "usr_someone_else"}}, "token_mismatch", "sub: sub is 'usr_someone"),
        (
            {"claims": {"challenge_id": "chl_other"}},
            "token_mismatch",
            "challenge_id: challenge_id is 'chl_other'",
        ),
        # verify_sms is done in the challenge (it comes first): not the step being completed
        (
            {"claims": {"key": "verify_sms"}},
            "token_mismatch",
            "key: key is 'verify_sms', the challenge's current step is 'kyc_review'",
        ),
        ({"claims": {"key": "selfie"}}, "step_not_found", "key: key is 'selfie'"),
        ({"claims": {"status": "pending"}}, "step_not_completed", "status: status is 'pending'"),
        ({"claims": {"exp": 1_760_000_000 + 3601}}, INVALID, "exp: exp is 3601 s ahead"),
        ({"claims": {"exp": 1_760_000_000}}, INVALID, "exp: expired 0 s ago"),
        ({"claims": {"iat": 1_760_000_000 + 60}}, INVALID, "iat: iat is 60 s in the future"),
        ({"claims": {"nbf": 1_760_000_000 + 60}}, INVALID, "nbf: nbf is 60 s in the future"),
        ({"header": {"kid": "k-absent"}}, INVALID, "kid: kid 'k-absent' is not in the service's"),
    ],
)
async def test_a_wrong_verification_token_is_rejected_as_prelude_would(
    clock: FakeClock, tmp_path: Path, change: dict[str, Any], code: str, detail: str
) -> None:
    fake = FakeService(clock)
    for name, value in change.items():
        setattr(fake, name, value)
    report = await run(fake.app, clock, one_scenario(tmp_path))
    result = check(report, "scenario 1: kyc_review token verifies")
    assert result.reason == code
    assert result.detail.startswith(detail)
    assert not report.passed


async def test_a_token_for_a_later_step_is_step_bypassed(clock: FakeClock, tmp_path: Path) -> None:
    fake = FakeService(clock)
    fake.hook = lambda request: JSONResponse(KYC_THEN_EMAIL)
    fake.claims = {"key": "verify_email"}  # kyc_review, the current step, is not done yet
    report = await run(fake.app, clock, one_scenario(tmp_path))
    result = check(report, "scenario 1: kyc_review token verifies")
    assert result.reason == "step_bypassed"
    assert result.detail == (
        "key: key is 'verify_email', the challenge's current step is 'kyc_review'"
    )


async def test_a_reused_jti_is_caught(clock: FakeClock, tmp_path: Path) -> None:
    fake = FakeService(clock)
    fake.claims = {"jti": "always-the-same"}
    report = await run(fake.app, clock, one_scenario(tmp_path, times=2))
    assert check(report, "scenario 1: kyc_review token verifies").passed
    reused = check(report, "scenario 2: kyc_review token verifies")
    assert reused.reason == "token_reused"
    assert reused.detail == (
        "jti: jti 'always-the-same' was already used by another token in this run"
    )


async def test_the_challenge_token_carries_the_decisions_steps(
    clock: FakeClock, tmp_path: Path
) -> None:
    """What the service receives in the challenge_token form is what Prelude's SDK reads
    (contract 6): the scope, the session, the metadata and the decision's steps, the ones
    before the current step done."""
    fake = FakeService(clock)
    report = await run(fake.app, clock, one_scenario(tmp_path))
    assert check(report, "scenario 1: kyc_review token verifies").passed
    claims = fake.challenge_claims[0]
    assert claims["current_step"] == "kyc_review"
    assert claims["scope_requested"] == "transfer:write"
    assert claims["metadata"] == {"amount": "1500"}
    assert claims["sid"].startswith("ses_sim_")
    assert claims["exp"] == 1_760_000_000 + 600
    assert claims["steps"] == [
        {"order": 1, "key": "verify_sms", "expiration_duration": 600, "done": True},
        {"order": 2, "key": "kyc_review", "expiration_duration": 86400, "done": False},
    ]
    assert {"sub", "challenge_id", "jti", "grant_mode"} <= set(claims)


async def test_a_second_token_for_one_step_is_caught(clock: FakeClock, tmp_path: Path) -> None:
    fake = FakeService(clock)  # mints a new token (new jti) for every request
    report = await run(fake.app, clock, one_scenario(tmp_path))
    assert check(report, "scenario 1: kyc_review token verifies").passed
    minted = ("second_token_minted", "a second, different token was minted for one step")
    for name in (
        "fields form for the same challenge",
        "challenge_token form for the same challenge",
        "for a second challenge",
    ):
        separator = " " if name.startswith("for") else ", "
        result = check(report, f"scenario 1: kyc_review token{separator}{name}")
        assert (result.reason, result.detail) == minted
    assert fake.minted == 4


async def test_a_refused_token_request_fails_the_custom_step(
    real_app: Any, clock: FakeClock, tmp_path: Path
) -> None:
    report = await run(real_app, clock, one_scenario(tmp_path), api_key="wrong-api-key-0123456789")
    for form in ("challenge_token form", "fields form"):
        result = check(report, f"scenario 1: kyc_review token, {form}")
        assert result.reason == "token_request_failed"
        assert result.detail.startswith("HTTP 401 unauthorized: ")
    assert "scenario 1: kyc_review token verifies" not in [c.title for c in report.checks]
    assert not report.passed


async def test_a_service_refusing_the_prefixed_signature_form_fails(
    clock: FakeClock, tmp_path: Path
) -> None:
    fake = FakeService(clock)

    def bare_only(request: Request) -> Any:
        if request.headers.get("x-webhook-signature", "").startswith("rsassa-pss-sha256="):
            return JSONResponse({"error": "invalid_signature"}, status_code=401)
        return JSONResponse(REVIEW_WITH_KYC)

    fake.hook = bare_only
    report = await run(fake.app, clock, one_scenario(tmp_path))
    assert check(report, "scenario 1: Prelude accepts the answer").passed
    probe = check(report, f"{PROBES}: accepts a rsassa-pss-sha256= signature with a 32-byte salt")
    assert (probe.reason, probe.detail) == (
        "invalid_status_code",
        'HTTP 401: {"error":"invalid_signature"}',
    )


async def test_a_forged_request_refused_with_another_status_is_named(
    clock: FakeClock, tmp_path: Path
) -> None:
    fake = FakeService(clock)

    def forbidden_without_signature(request: Request) -> Any:
        if "x-webhook-signature" not in request.headers:
            return JSONResponse({"error": "forbidden"}, status_code=403)
        return JSONResponse(REVIEW_WITH_KYC)

    fake.hook = forbidden_without_signature
    report = await run(fake.app, clock, one_scenario(tmp_path))
    missing = check(report, f"{PROBES}: refuses a request with no signature")
    assert (missing.reason, missing.detail) == ("unexpected_status", "HTTP 403; expected 401")
    tampered = check(report, f"{PROBES}: refuses a request with a tampered body")
    assert (tampered.reason, tampered.detail) == (
        "forged_request_accepted",
        "HTTP 200; expected 401",
    )


async def test_a_jwks_with_private_members_fails(clock: FakeClock, tmp_path: Path) -> None:
    fake = FakeService(clock)
    fake.jwk_extra = {"d": "c2VjcmV0"}
    report = await run(fake.app, clock, one_scenario(tmp_path))
    result = check(report, "service JWKS (contract 5): served as Prelude needs it")
    assert (result.reason, result.detail) == ("invalid_jwks", "key 'k1' publishes private members")


async def test_a_token_endpoint_without_an_api_key_check_fails(
    clock: FakeClock, tmp_path: Path
) -> None:
    fake = FakeService(clock)
    fake.api_key_checked = False
    report = await run(
        fake.app, clock, one_scenario(tmp_path, "{status: review, steps: [verify_sms, kyc_review]}")
    )
    for what in ("no API key", "a wrong API key"):
        probe = check(report, f"{REFUSALS}: refuses a token request with {what}")
        assert (probe.reason, probe.detail) == (
            "token_without_api_key",
            "minted a token for kyc_review without the API key",
        )
    assert not report.passed


async def test_a_token_request_refused_with_another_status_is_named(
    real_app: Any, clock: FakeClock, tmp_path: Path
) -> None:
    async def forbids_anonymous(scope: Any, receive: Any, send: Any) -> None:
        # Refuses a request without credentials, but with 403 instead of 401.
        anonymous = b"authorization" not in dict(scope.get("headers", []))
        if scope["type"] == "http" and scope["path"] == "/verification-token" and anonymous:
            body = {"error": "forbidden", "detail": "no credentials"}
            await JSONResponse(body, status_code=403)(scope, receive, send)
            return
        await real_app(scope, receive, send)

    wrapped = Starlette(lifespan=real_app.router.lifespan_context)
    wrapped.mount("/", forbids_anonymous)
    # No scenario expects a custom step: the probe still runs, for a step nobody asked for.
    report = await run(wrapped, clock, one_scenario(tmp_path, "{status: review}"))
    anonymous = check(report, f"{REFUSALS}: refuses a token request with no API key")
    assert (anonymous.reason, anonymous.detail) == (
        "unexpected_status",
        "HTTP 403 forbidden: no credentials; expected 401",
    )
    wrong = check(report, f"{REFUSALS}: refuses a token request with a wrong API key")
    assert (wrong.passed, wrong.detail) == (True, "HTTP 401")


async def test_a_challenge_token_decoded_without_verification_is_caught(
    clock: FakeClock, tmp_path: Path
) -> None:
    fake = FakeService(clock)
    fake.challenge_verified = False
    report = await run(fake.app, clock, one_scenario(tmp_path))
    forged = check(report, f"{REFUSALS}: refuses a challenge token Prelude did not sign")
    assert (forged.reason, forged.detail) == (
        "forged_challenge_accepted",
        "minted a token for sim_step from a challenge token signed by another key",
    )
    assert not report.passed
