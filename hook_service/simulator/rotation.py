"""``simulate rotation``: issue tokens, rotate through the admin API, issue more, and show that
each token verifies at every moment of its life for a verifier like Prelude's (contract 5: the
JWKS cached 10 minutes, refetched on an unknown kid).

Only the verifier's clock moves to the later moments; the service's JWKS is read as it is served
now, and the admin API's ``retire_at`` says how long a retired key will stay in it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from .client import Answer, ServiceClient, ServiceError
from .flows import (
    SERVICE_UNREACHABLE,
    TOKEN_REQUEST_FAILED,
    UNEXPECTED_STATUS,
    Flow,
    Issued,
    build_flow,
    custom_keys,
    token_of,
)
from .prelude import new_challenge_id, new_user_id
from .report import Report
from .scenarios import HookRequestSpec, ScenarioError, ScenarioFile
from .verifier import (
    JWKS_CACHE_TTL,
    Challenge,
    JwksCache,
    TokenRejected,
    TokenVerifier,
)

ADMIN_API_FAILED: Final = "admin_api_failed"
ROTATION_TOO_EARLY: Final = "rotation_too_early"
RETIRED_TOO_EARLY: Final = "retired_too_early"
NO_CUSTOM_STEP: Final = "no_custom_step"
WRONG_SIGNING_KEY: Final = "wrong_signing_key"
ADMIN_API_UNPROTECTED: Final = "admin_api_unprotected"
TOKENS_PER_PHASE: Final = 2


@dataclass(slots=True)
class MovableClock:
    """The verifier's clock: ``base`` shifted to a chosen moment."""

    base: Callable[[], float]
    offset: float = 0.0

    def __call__(self) -> float:
        return self.base() + self.offset

    def at(self, moment: float) -> None:
        self.offset = moment - self.base()


async def simulate_rotation(
    service: ServiceClient,
    spec: HookRequestSpec,
    *,
    force: bool,
    clock: Callable[[], float] = time.time,
) -> Report:
    """Observe a rotation of ``service``'s keys; ``spec`` must yield a custom step."""
    verifier_clock = MovableClock(clock)
    flow = build_flow(service, "simulate rotation", clock, verifier_clock)
    await run_rotation(flow, spec, verifier_clock, force=force)
    return flow.report


def custom_step_request(scenarios: ScenarioFile) -> HookRequestSpec:
    """The request of the first scenario expected to yield a custom step."""
    spec = scenarios.custom_step_request()
    if spec is not None:
        return spec
    raise ScenarioError(
        f"{scenarios.path}: no scenario expects a review with a custom step (expect.steps)"
    )


async def run_rotation(
    flow: Flow, spec: HookRequestSpec, clock: MovableClock, *, force: bool
) -> None:
    """Add one row per check to ``flow.report``."""
    try:
        await _rotation(flow, spec, clock, force)
    except ServiceError as exc:
        flow.report.fail("service reachable", SERVICE_UNREACHABLE, str(exc))


async def _rotation(flow: Flow, spec: HookRequestSpec, clock: MovableClock, force: bool) -> None:
    report, service = flow.report, flow.service
    listed = await service.admin_keys()
    if listed.status_code != 200 or listed.body is None:
        report.fail("GET /admin/keys", ADMIN_API_FAILED, listed.error)
        return
    before = _by_state(listed.body)
    if before is None:
        report.fail("GET /admin/keys", ADMIN_API_FAILED, KEY_SET_SHAPE)
        return
    report.ok("GET /admin/keys", f"active {before['active'][0]}, next {before['next'][0]}")
    await _admin_probes(flow)
    await flow.verifier.jwks.refresh()  # Prelude's cache, warm from before the rotation
    earlier = [
        await _issue(flow, spec, f"before rotation #{i}") for i in range(1, TOKENS_PER_PHASE + 1)
    ]
    rotated = await service.rotate(force)
    if rotated.status_code == 409 and (rotated.body or {}).get("error") == ROTATION_TOO_EARLY:
        report.fail(
            "POST /admin/keys/rotate",
            ROTATION_TOO_EARLY,
            f"{rotated.error}; run again with --force, or wait until the next key has been "
            "published for 11 minutes",
        )
        return
    if rotated.status_code != 200 or rotated.body is None:
        report.fail("POST /admin/keys/rotate", ADMIN_API_FAILED, rotated.error)
        return
    after = _by_state(rotated.body)
    old_active, old_next = before["active"][0], before["next"][0]
    if after is None:
        report.fail("POST /admin/keys/rotate", ADMIN_API_FAILED, KEY_SET_SHAPE)
        return
    if after["active"][0] != old_next or old_active not in after.get("retired", []):
        report.fail(
            "POST /admin/keys/rotate",
            ADMIN_API_FAILED,
            "expected the next key to become active and the active key to be retired",
        )
        return
    known = old_next in flow.verifier.jwks.kids()
    report.ok(
        "POST /admin/keys/rotate",
        f"{old_next} now signs; {old_active} retired"
        + ("; the verifier's cached JWKS already held the new kid" if known else ""),
    )
    later = [
        await _issue(flow, spec, f"after rotation #{i}") for i in range(1, TOKENS_PER_PHASE + 1)
    ]
    _signed_by(report, [t for t in earlier if t], old_active, [t for t in later if t], old_next)
    issued = [t for t in earlier + later if t is not None]
    retire_at = _retire_at(rotated.body, old_active)
    await _moments(flow, clock, issued, old_active, retire_at)
    signed_by_old = [t.claims["exp"] for t in issued if t.kid == old_active]
    name = "retired key stays published until its tokens have expired"
    if retire_at is None:
        detail = f"the admin API gives {old_active} no retire_at with a time zone"
        report.fail(name, RETIRED_TOO_EARLY, detail)
    elif signed_by_old and retire_at < max(signed_by_old):
        late = max(signed_by_old) - retire_at
        detail = f"{old_active} leaves the JWKS {late:.0f} s before a token it signed expires"
        report.fail(name, RETIRED_TOO_EARLY, detail)
    else:
        report.ok(name, f"{old_active} retire_at is {retire_at - clock.base():.0f} s from now")


async def _admin_probes(flow: Flow) -> None:
    """The admin API refuses a wrong admin token and a missing one with 401 (design.md)."""
    wrong = "sim-wrong-" + secrets.token_urlsafe(24)
    listed = await flow.service.admin_keys_as(wrong)
    _refused(flow.report, "GET /admin/keys refuses a wrong admin token", listed)
    rotated = await flow.service.rotate_as(False, None)
    _refused(flow.report, "POST /admin/keys/rotate refuses no admin token", rotated)


def _refused(report: Report, name: str, answer: Answer) -> None:
    if answer.status_code == 401:
        report.ok(name, "HTTP 401")
    else:
        if 200 <= answer.status_code < 300:
            report.fail(name, ADMIN_API_UNPROTECTED, f"HTTP {answer.status_code}; expected 401")
        else:
            report.fail(name, UNEXPECTED_STATUS, f"{answer.error}; expected 401")


def _signed_by(
    report: Report, earlier: list[Issued], old: str, later: list[Issued], new: str
) -> None:
    """Tokens before the rotation carry the old active kid, tokens after it the new one: a
    service that keeps signing with the retired key has not rotated, whatever its API says."""
    name = "tokens are signed by the key the admin API calls active"
    wrong = [t.kid for t in earlier if t.kid != old] + [t.kid for t in later if t.kid != new]
    if wrong:
        detail = f"expected {old} before and {new} after the rotation, got {', '.join(wrong)}"
        report.fail(name, WRONG_SIGNING_KEY, detail)
    else:
        report.ok(name, f"{len(earlier)} by {old} before, {len(later)} by {new} after")


async def _issue(flow: Flow, spec: HookRequestSpec, label: str) -> Issued | None:
    """One verification token: a signed hook call that yields a custom step, then the token."""
    user_id = new_user_id()
    _, verdict = await flow.hook(spec, user_id)
    keys = custom_keys(verdict.decision)
    if verdict.reason is not None or not keys:
        reason = verdict.reason or NO_CUSTOM_STEP
        flow.report.fail(
            f"token {label}",
            reason,
            verdict.detail if verdict.reason else "the hook asked for no custom step",
        )
        return None
    challenge = Challenge(user_id, new_challenge_id(), keys[0])
    answer = await flow.service.request_token(
        {"user_id": user_id, "challenge_id": challenge.challenge_id, "key": challenge.key}
    )
    if token_of(answer) is None:
        flow.report.fail(f"token {label}", TOKEN_REQUEST_FAILED, answer.error)
        return None
    return await flow.verify(f"token {label}", answer, challenge, "fields form")


async def _moments(
    flow: Flow, clock: MovableClock, tokens: list[Issued], retired: str, retire_at: float | None
) -> None:
    """At each moment, with the verifier's clock moved there: every token still valid verifies,
    and every key that signed one is found in the JWKS until its ``retire_at``.

    Twice: for the verifier whose cache was warmed before the rotation, and for one whose
    cache is filled at that moment (another Prelude instance, or a cache that just expired),
    so that a key unpublished early is caught even while the warm cache still holds it."""
    start = clock.base()
    moments = {start, start + JWKS_CACHE_TTL - 1}
    moments.update(t.claims["exp"] - 1 for t in tokens)
    if retire_at is not None:
        moments.add(retire_at - 1)
    for moment in sorted(moments):
        clock.at(moment)
        fetches = flow.verifier.jwks.fetches
        valid = [t for t in tokens if t.claims["iat"] <= moment < t.claims["exp"]]
        kids = sorted(
            {t.kid for t in tokens if t.kid != retired or retire_at is None or moment < retire_at}
        )
        name = f"tokens at now+{moment - start:.0f} s"
        cold = TokenVerifier(JwksCache(flow.service.fetch_jwks, clock), clock)
        try:
            for verifier in (flow.verifier, cold):
                for token in valid:
                    await verifier.verify(token.token, token.challenge, remember=False)
                for kid in kids:
                    await verifier.jwks.key(kid)
        except TokenRejected as exc:
            flow.report.fail(name, exc.code, str(exc))
            continue
        fetched = flow.verifier.jwks.fetches > fetches
        flow.report.ok(
            name,
            f"{len(valid)} valid, all verify; {len(tokens) - len(valid)} expired; "
            f"{len(kids)} signing keys found; " + ("JWKS refetched" if fetched else "cached JWKS"),
        )
    clock.offset = 0.0


KEY_SET_SHAPE: Final = (
    "expected {keys: [{kid, state}]} with exactly one active and one next key (design.md)"
)


def _by_state(body: dict[str, Any]) -> dict[str, list[str]] | None:
    """Kids by state, or ``None`` when the admin API's answer is not a usable key set."""
    keys = body.get("keys")
    if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
        return None
    states: dict[str, list[str]] = {}
    for key in keys:
        if isinstance(key.get("state"), str) and isinstance(key.get("kid"), str):
            states.setdefault(key["state"], []).append(key["kid"])
    if len(states.get("active", [])) != 1 or len(states.get("next", [])) != 1:
        return None
    return states


def _retire_at(body: dict[str, Any], kid: str) -> float | None:
    """``kid``'s ``retire_at`` as a timestamp; ``None`` when absent, unreadable or without a
    time zone (a naive time would be read in this machine's zone, not the service's)."""
    for key in body.get("keys", []):
        if key.get("kid") == kid and isinstance(key.get("retire_at"), str):
            try:
                moment = datetime.fromisoformat(key["retire_at"])
            except ValueError:
                return None
            return moment.timestamp() if moment.tzinfo is not None else None
    return None
