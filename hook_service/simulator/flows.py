"""The conversations behind the checks: a signed hook call, a custom step taken end to end
(contract 4 and 6), and the probes a service must refuse (contract 2.3)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import jwt

from .client import Answer, ServiceClient, ServiceError
from .lint import (
    MANAGED_STEPS,
    REQUEST_FAILED,
    HookAnswer,
    Verdict,
    lint_hook_answer,
    lint_jwks,
)
from .prelude import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    PreludeChallenge,
    new_challenge_id,
    new_user_id,
)
from .report import Report
from .scenarios import HookRequestSpec
from .verifier import (
    INVALID_VERIFICATION_TOKEN,
    Challenge,
    JwksCache,
    TokenRejected,
    TokenVerifier,
)

# The simulator's own reasons, for checks Prelude has no name for.
TOKEN_REQUEST_FAILED: Final = "token_request_failed"  # noqa: S105 (a reason, not a secret)
SECOND_TOKEN_MINTED: Final = "second_token_minted"  # noqa: S105
UNEXPECTED_DECISION: Final = "unexpected_decision"
FORGED_REQUEST_ACCEPTED: Final = "forged_request_accepted"
UNEXPECTED_STATUS: Final = "unexpected_status"
TOKEN_WITHOUT_API_KEY: Final = "token_without_api_key"  # noqa: S105
FORGED_CHALLENGE_ACCEPTED: Final = "forged_challenge_accepted"
SERVICE_UNREACHABLE: Final = "service_unreachable"
INVALID_JWKS: Final = "invalid_jwks"
PROBES: Final = "hook signature check (contract 2.3)"
JWKS_GROUP: Final = "service JWKS (contract 5)"
REFUSALS: Final = "token request refusals (POST /verification-token)"


@dataclass(frozen=True, slots=True)
class Issued:
    """A verification token the service minted, with the challenge it answers."""

    token: str
    challenge: Challenge
    claims: dict[str, Any]
    kid: str


@dataclass(slots=True)
class Flow:
    """What every conversation needs: the service, Prelude's verifier, a clock, the report."""

    service: ServiceClient
    verifier: TokenVerifier
    clock: Callable[[], float]
    report: Report
    step_keys: frozenset[str] | None = None

    async def hook(
        self, spec: HookRequestSpec, user_id: str, **sign: Any
    ) -> tuple[HookAnswer, Verdict]:
        """Send ``spec`` signed as Prelude does; what came back and Prelude's verdict on it."""
        body = spec.body(user_id)
        answer = await self.service.call_hook(body, self.service.prelude.hook_headers(body, **sign))
        return answer, lint_hook_answer(answer, self.step_keys, self.service.time_limit)

    async def custom_step(self, label: str, opened: PreludeChallenge, key: str) -> Issued | None:
        """Take the custom step ``key`` of the challenge Prelude ``opened`` from the hook's
        decision, as Prelude and the company backend would: challenge token (earlier steps
        done), both request forms, retry, replay, a second challenge; the first token is
        verified as Prelude does."""
        now = self.clock()
        claims = opened.claims(key, now)
        challenge = Challenge.from_claims(claims)
        token = self.service.prelude.challenge_token(opened, key, now)
        user_id = opened.sub
        forms = {
            "challenge_token form": {"challenge_token": token},
            "fields form": {"user_id": user_id, "challenge_id": challenge.challenge_id, "key": key},
        }
        # The challenge_token form first (the README's recommendation); if the service refuses
        # it, the fields form still lets the rest of the flow be checked.
        order = list(forms)
        for form in list(order):
            first = await self.service.request_token(forms[form])
            if token_of(first) is not None:
                break
            self.report.fail(f"{key} token, {form}", TOKEN_REQUEST_FAILED, first.error, group=label)
            order.remove(form)
        else:
            return None
        issued = await self.verify(f"{key} token verifies", first, challenge, form, group=label)
        if issued is None:
            return None
        # The other form for the same challenge, then the very same request again.
        for retry in [f for f in order if f != form] + [form]:
            name = f"{key} token, {retry} for the same challenge"
            await self._retry(name, forms[retry], issued, group=label)
        other = dict(forms["fields form"], challenge_id=new_challenge_id())
        name = f"{key} token for a second challenge"
        await self._retry(name, other, issued, group=label, same=False)
        return issued

    async def verify(
        self, name: str, answer: Answer, challenge: Challenge, form: str, *, group: str = ""
    ) -> Issued | None:
        """Verify the token in ``answer`` as Prelude would; report the outcome."""
        token = token_of(answer)
        assert token is not None and answer.body is not None  # callers checked token_of
        body = answer.body
        try:
            claims = await self.verifier.verify(token, challenge)
        except TokenRejected as exc:
            self.report.fail(name, exc.code, str(exc), group=group)
            return None
        except ServiceError as exc:
            # Without our JWKS Prelude cannot verify anything.
            self.report.fail(name, INVALID_VERIFICATION_TOKEN, str(exc), group=group)
            return None
        kid = _header_kid(token)
        described = (body.get("jti"), body.get("kid"), body.get("expires_at"))
        if described != (claims["jti"], kid, claims["exp"]):
            self.report.fail(
                name,
                TOKEN_REQUEST_FAILED,
                "the answer's jti, kid or expires_at do not describe the token it carries",
                group=group,
            )
            return None
        self.report.ok(
            name,
            f"{form}; RS256, kid {kid}, jti {claims['jti']}, "
            f"expires in {claims['exp'] - self.clock():.0f} s",
            group=group,
        )
        return Issued(token, challenge, claims, kid)

    async def _retry(
        self, name: str, payload: dict[str, Any], issued: Issued, *, group: str, same: bool = True
    ) -> None:
        # One pending step yields one token (design.md): a retry of the same challenge may get the
        # identical token back or be refused; a second, different token is a failure.
        answer = await self.service.request_token(payload)
        token = token_of(answer)
        if token is None:
            self.report.ok(name, f"refused: {answer.error}", group=group)
        elif token == issued.token and same:
            self.report.ok(name, "returned the identical token (safe retry)", group=group)
        else:
            self.report.fail(
                name,
                SECOND_TOKEN_MINTED,
                "a second, different token was minted for one step",
                group=group,
            )

    async def jwks(self) -> None:
        """The service's JWKS as Prelude fetches it (contract 5)."""
        name = "served as Prelude needs it"
        try:
            answer = await self.service.get_jwks()
        except ServiceError as exc:
            self.report.fail(name, INVALID_JWKS, str(exc), group=JWKS_GROUP)
            return
        if answer.status_code != 200:
            self.report.fail(name, INVALID_JWKS, answer.error, group=JWKS_GROUP)
            return
        problems = lint_jwks(answer.content_type, answer.body)
        if problems:
            self.report.fail(name, INVALID_JWKS, "; ".join(problems), group=JWKS_GROUP)
        else:
            count = len((answer.body or {})["keys"])
            self.report.ok(name, f"{count} RS256 keys, public members only", group=JWKS_GROUP)

    async def probes(self, spec: HookRequestSpec) -> None:
        """Requests Prelude never sends must get 401 (contract 2.3 step 6); both documented
        signature forms must be accepted (contract 2.3 step 2, 5)."""
        group = PROBES
        _, verdict = await self.hook(spec, new_user_id(), prefix=True, salt="hash")
        name = "accepts a rsassa-pss-sha256= signature with a 32-byte salt"
        if verdict.reason is None:
            self.report.ok(name, verdict.detail, group=group)
        else:  # Prelude's own reason: this is a request it could send
            self.report.fail(name, verdict.reason, verdict.detail, group=group)
        body = spec.body(new_user_id())
        headers = self.service.prelude.hook_headers(body)
        tampered = json.loads(body)
        tampered["metadata"] = {**tampered["metadata"], "amount": "1"}
        forged = {
            "a tampered body": (json.dumps(tampered).encode(), headers),
            "an unknown signing key id": (body, {**headers, KEY_ID_HEADER: "sim-unknown-kid"}),
            "no signature": (body, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}),
        }
        for what, (sent, sent_headers) in forged.items():
            answer = await self.service.call_hook(sent, sent_headers)
            name = f"refuses a request with {what}"
            if answer.status_code == 401:
                self.report.ok(name, "HTTP 401", group=group)
            elif answer.error is not None:
                self.report.fail(name, REQUEST_FAILED, answer.error, group=group)
            else:
                # A 2xx acted on a request Prelude never signed; another refusal is only
                # the wrong status.
                accepted = 200 <= answer.status_code < 300
                reason = FORGED_REQUEST_ACCEPTED if accepted else UNEXPECTED_STATUS
                detail = f"HTTP {answer.status_code}; expected 401"
                self.report.fail(name, reason, detail, group=group)

    async def token_probes(self, spec: HookRequestSpec | None) -> None:
        """A token request without the API key, or with a wrong one, must get 401, even for a
        step that is really pending (``spec``'s custom step, when given): whoever can reach
        the endpoint could otherwise mint tokens that complete any custom step. A challenge
        token Prelude did not sign must be refused too (contract 1: verify it, never just
        decode it)."""
        user_id, key = new_user_id(), "sim_step"
        decision: dict[str, Any] = {"steps": [{"order": 1, "key": key, "expiration_duration": 600}]}
        if spec is not None:
            _, verdict = await self.hook(spec, user_id)
            if custom_keys(verdict.decision):
                key, decision = custom_keys(verdict.decision)[0], verdict.decision or {}
        scope = spec.scope if spec is not None else "sim:scope"
        opened = PreludeChallenge.open(decision, sub=user_id, scope=scope)
        payload = {"user_id": user_id, "challenge_id": opened.challenge_id, "key": key}
        wrong = "sim-wrong-" + secrets.token_urlsafe(24)
        for what, bearer in (("no API key", None), ("a wrong API key", wrong)):
            answer = await self.service.request_token_as(payload, bearer)
            name = f"refuses a token request with {what}"
            if answer.status_code == 401:
                self.report.ok(name, "HTTP 401", group=REFUSALS)
            elif token_of(answer) is not None:
                detail = f"minted a token for {key} without the API key"
                self.report.fail(name, TOKEN_WITHOUT_API_KEY, detail, group=REFUSALS)
            else:
                detail = f"{answer.error}; expected 401"
                self.report.fail(name, UNEXPECTED_STATUS, detail, group=REFUSALS)
        name = "refuses a challenge token Prelude did not sign"
        forged = self.service.prelude.forged_challenge_token(opened, key, self.clock())
        answer = await self.service.request_token({"challenge_token": forged})
        if token_of(answer) is not None:
            detail = f"minted a token for {key} from a challenge token signed by another key"
            self.report.fail(name, FORGED_CHALLENGE_ACCEPTED, detail, group=REFUSALS)
        elif 400 <= answer.status_code < 500:
            self.report.ok(name, answer.error, group=REFUSALS)
        else:
            detail = f"{answer.error}; expected a 4xx refusal"
            self.report.fail(name, UNEXPECTED_STATUS, detail, group=REFUSALS)


def build_flow(
    service: ServiceClient,
    command: str,
    clock: Callable[[], float],
    verifier_clock: Callable[[], float],
) -> Flow:
    """A flow whose verifier reads the service's JWKS with ``verifier_clock``."""
    verifier = TokenVerifier(JwksCache(service.fetch_jwks, verifier_clock), verifier_clock)
    return Flow(service, verifier, clock, Report(command, service.base_url))


def custom_keys(decision: dict[str, Any] | None) -> list[str]:
    """The step keys of a decision that are not Prelude's managed steps."""
    steps = (decision or {}).get("steps") or []
    return [s["key"] for s in steps if isinstance(s, dict) and s.get("key") not in MANAGED_STEPS]


def token_of(answer: Answer) -> str | None:
    """The verification token in a 200 answer, if there is one."""
    if answer.status_code != 200 or answer.body is None:
        return None
    token = answer.body.get("verification_token")
    return token if isinstance(token, str) and token else None


def _header_kid(token: str) -> str:
    return str(jwt.get_unverified_header(token).get("kid"))
