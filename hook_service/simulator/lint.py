"""Check a hook answer as Prelude does, naming Prelude's own failure reason (contract 3 and 8),
and the service's JWKS against contract 5.

Pure: takes what was observed on the wire (:class:`HookAnswer`), returns a :class:`Verdict`.
Where the contract is silent, the check takes its conservative reading (contract preamble):
``granted_for`` must be 1..86 400 for every grant mode, because Prelude rejects 0 for the modes
"that require a positive duration" without saying which (contract 3, 9.2).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Final

# Contract 8.
REQUEST_FAILED: Final = "request_failed"
INVALID_STATUS_CODE: Final = "invalid_status_code"
RESPONSE_DECODE_FAILED: Final = "response_decode_failed"
INVALID_STATUS: Final = "invalid_status"
MISSING_STEPS: Final = "missing_steps"
INVALID_GRANTED_FOR: Final = "invalid_granted_for"
INVALID_GRANT_MODE: Final = "invalid_grant_mode"
INVALID_STEP: Final = "invalid_step"
INVALID_RESPONSE: Final = "invalid_response"

TIME_LIMIT: Final = 5.0  # seconds (contract 3 and 8, request_failed)
BODY_LIMIT: Final = 64 * 1024  # bytes (contract 3 and 8, response_decode_failed)
MAX_DURATION: Final = 86_400  # seconds (contract 3)
STATUSES: Final = ("continue", "review", "block")
GRANT_MODES: Final = ("single-use", "session-bound", "profile-bound")
MANAGED_STEPS: Final = frozenset({"verify_sms", "verify_email", "verify_passkey"})
STEP_KEY: Final = re.compile(r"[a-zA-Z0-9._:-]+")


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """What came back from one hook call. ``error`` is set when no HTTP answer arrived in time
    (then the other fields are empty); ``truncated`` when the body went past the limit."""

    status_code: int = 0
    content_type: str = ""
    body: bytes = b""
    elapsed: float = 0.0
    error: str | None = None
    truncated: bool = False
    rule: str | None = None  # the X-Hook-Rule header, when the service sends one


@dataclass(frozen=True, slots=True)
class Verdict:
    """``reason`` is ``None`` when Prelude would accept the answer; ``decision`` is the parsed
    body whenever it could be decoded."""

    reason: str | None
    detail: str
    decision: dict[str, Any] | None = None


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def lint_hook_answer(
    answer: HookAnswer, step_keys: frozenset[str] | None = None, time_limit: float = TIME_LIMIT
) -> Verdict:
    """Prelude's verdict on ``answer``. ``step_keys``, when given, are the custom keys
    registered in Prelude's ``step_keys``; any other non-managed key is then ``invalid_step``
    (contract 3: an unregistered custom key is "probably rejected or never completable")."""
    if answer.error is not None:
        return Verdict(REQUEST_FAILED, answer.error)
    if answer.elapsed > time_limit:
        return Verdict(
            REQUEST_FAILED, f"answered after {answer.elapsed:.2f} s (limit {time_limit:g} s)"
        )
    if not 200 <= answer.status_code < 300:
        return Verdict(INVALID_STATUS_CODE, f"HTTP {answer.status_code}: {_preview(answer.body)}")
    try:
        decision = _decode(answer)
    except _Invalid as exc:
        return Verdict(exc.reason, exc.detail)
    try:
        _check_fields(decision, step_keys)
    except _Invalid as exc:
        return Verdict(exc.reason, exc.detail, decision)
    return Verdict(None, f"HTTP {answer.status_code} in {answer.elapsed:.3f} s", decision)


def _preview(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return text or "(empty body)"


def _decode(answer: HookAnswer) -> dict[str, Any]:
    if answer.truncated or len(answer.body) > BODY_LIMIT:
        raise _Invalid(RESPONSE_DECODE_FAILED, f"body larger than {BODY_LIMIT} bytes")
    media_type = answer.content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        shown = answer.content_type or "none"
        raise _Invalid(RESPONSE_DECODE_FAILED, f"Content-Type is {shown}, not application/json")
    try:
        # UTF-8 only, no BOM, no NaN/Infinity (RFC 8259 sections 6 and 8.1): json.loads would
        # take UTF-16 bytes, a BOM and NaN, which a strict decoder like Prelude's refuses.
        decoded = json.loads(answer.body.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Invalid(RESPONSE_DECODE_FAILED, f"body is not JSON ({exc})") from None
    if not isinstance(decoded, dict):
        raise _Invalid(INVALID_RESPONSE, f"body is a JSON {type(decoded).__name__}, not an object")
    return decoded


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _in_range(value: Any, low: int, high: int) -> bool:
    """An integer (not a bool, which JSON keeps apart) from ``low`` to ``high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_fields(decision: dict[str, Any], step_keys: frozenset[str] | None) -> None:
    status = decision.get("status")
    if status not in STATUSES:
        raise _Invalid(INVALID_STATUS, f"status is {status!r}, not one of {', '.join(STATUSES)}")
    grant_mode = decision.get("grant_mode")
    if grant_mode not in GRANT_MODES:
        raise _Invalid(
            INVALID_GRANT_MODE, f"grant_mode is {grant_mode!r}, not one of {', '.join(GRANT_MODES)}"
        )
    granted_for = decision.get("granted_for")
    if not _in_range(granted_for, 1, MAX_DURATION):
        raise _Invalid(
            INVALID_GRANTED_FOR,
            f"granted_for is {granted_for!r}; send an integer from 1 to {MAX_DURATION} "
            "(0 is refused for some grant modes, contract 3)",
        )
    steps = decision.get("steps")
    if steps is None:  # absent or null: no steps, which only review forbids
        steps = []
    if not isinstance(steps, list):
        raise _Invalid(INVALID_RESPONSE, f"steps is a {type(steps).__name__}, not an array")
    if status == "review" and not steps:
        raise _Invalid(MISSING_STEPS, "status is review but steps is missing or empty")
    for position, step in enumerate(steps, start=1):
        _check_step(position, step, step_keys)


def _check_step(position: int, step: Any, step_keys: frozenset[str] | None) -> None:
    where = f"steps[{position - 1}]"
    if not isinstance(step, dict):
        raise _Invalid(INVALID_RESPONSE, f"{where} is not an object")
    key = step.get("key")
    if not isinstance(key, str) or not STEP_KEY.fullmatch(key):
        raise _Invalid(INVALID_STEP, f"{where}.key {key!r} does not match [a-zA-Z0-9._:-]+")
    if step_keys is not None and key not in MANAGED_STEPS and key not in step_keys:
        raise _Invalid(
            INVALID_STEP, f"{where}.key {key!r} is neither managed nor registered in step_keys"
        )
    duration = step.get("expiration_duration")
    if not _in_range(duration, 0, MAX_DURATION):
        raise _Invalid(
            INVALID_STEP,
            f"{where}.expiration_duration is {duration!r}, not an integer from 0 to {MAX_DURATION}",
        )
    if not _in_range(step.get("order"), -(2**31), 2**31 - 1):
        raise _Invalid(INVALID_RESPONSE, f"{where}.order is {step.get('order')!r}, not an integer")


# Contract 5: public members only, RSA of at least 2048 bits, a kid on every key.
PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MIN_RSA_BITS: Final = 2048


def lint_jwks(content_type: str, document: dict[str, Any] | None) -> list[str]:
    """What is wrong with the service's JWKS for Prelude (contract 5); empty when nothing."""
    problems = []
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        problems.append(f"Content-Type is {content_type or 'none'}, not application/json")
    keys = (document or {}).get("keys")
    if not isinstance(keys, list) or not keys:
        return [*problems, "no keys array, or an empty one"]
    kids = [jwk.get("kid") for jwk in keys if isinstance(jwk, dict)]
    if len(kids) != len(keys):
        return [*problems, "a key is not a JSON object"]
    for kid, jwk in zip(kids, keys, strict=True):
        where = f"key {kid!r}"
        if not isinstance(kid, str) or not kid:
            problems.append("a key has no kid")
        if PRIVATE_MEMBERS & set(jwk):
            problems.append(f"{where} publishes private members")
        if jwk.get("kty") != "RSA" or jwk.get("alg", "RS256") != "RS256":
            problems.append(f"{where} is not an RS256 RSA key")
        elif _rsa_bits(jwk.get("n")) < MIN_RSA_BITS:
            problems.append(f"{where} is shorter than {MIN_RSA_BITS} bits")
    if len(set(kids)) != len(kids):
        problems.append("two keys share a kid")
    return problems


def _rsa_bits(n: Any) -> int:
    if not isinstance(n, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()
