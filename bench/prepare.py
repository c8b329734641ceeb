"""Pure preparation for the benchmark: signed hook requests and challenge tokens (made with
the simulator's Prelude keys, :mod:`hook_service.simulator.prelude`), generated policies and
the request-pool file that wrk's Lua script replays.

Everything here is plain values and files, no servers, so ``tests/test_bench.py`` can check it.
The pool format is one request per line, tab-separated: method, path, body, then header name
and value pairs. JSON bodies from :func:`json.dumps` never hold a raw tab or newline, nor do
base64url signatures, so no escaping is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hook_service.simulator.prelude import PreludeChallenge, PreludeKeys, Step

HOOK_PATH = "/hooks/stepup"
TOKEN_PATH = "/verification-token"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True, slots=True)
class PoolRequest:
    """One pre-built HTTP request of a pool."""

    method: str
    path: str
    body: str
    headers: tuple[tuple[str, str], ...] = field(default=())

    def line(self) -> str:
        fields = [self.method, self.path, self.body]
        for name, value in self.headers:
            fields += [name, value]
        if any("\t" in f or "\n" in f for f in fields):
            raise ValueError("pool fields must not contain tabs or newlines")
        return "\t".join(fields)

    @classmethod
    def from_line(cls, line: str) -> PoolRequest:
        method, path, body, *rest = line.rstrip("\n").split("\t")
        if len(rest) % 2:
            raise ValueError("a pool line must end with complete header name/value pairs")
        pairs = tuple(zip(rest[::2], rest[1::2], strict=True))
        return cls(method, path, body, pairs)


def write_pool(path: Path, requests: Iterable[PoolRequest]) -> int:
    """Write ``requests`` to ``path`` in the pool format; returns how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for request in requests:
            out.write(request.line() + "\n")
            count += 1
    return count


def read_pool(path: Path) -> list[PoolRequest]:
    """The requests of a pool file written by :func:`write_pool`."""
    with path.open(encoding="utf-8") as src:
        return [PoolRequest.from_line(line) for line in src if line.strip()]


def hook_request(keys: PreludeKeys, body: bytes) -> PoolRequest:
    """A hook call as Prelude sends it (contract 2.2, 2.3), signed by the simulator's Prelude
    keys (``rsassa-pss-sha256=`` form, 32-byte salt)."""
    headers = tuple(keys.hook_headers(body, prefix=True, salt="hash").items())
    return PoolRequest("POST", HOOK_PATH, body.decode("utf-8"), headers)


def user_id(index: int) -> str:
    """A Prelude-shaped user id (``usr_`` + 27 characters), distinct per ``index``."""
    return f"usr_bench{index:022d}"


def hook_body(index: int, *, amount: str, scope: str = "transfer:write") -> bytes:
    """A realistic hook body (contract 2.1) for user ``index``."""
    body = {
        "scope_requested": scope,
        "user_id": user_id(index),
        "identifiers": [
            {"type": "email_address", "value": f"user{index}@example.com"},
            {"type": "phone_number", "value": f"+336{index % 100_000_000:08d}"},
        ],
        "signals": {"user_agent": "Mozilla/5.0 (bench)", "platform": "WEB", "ip": "203.0.113.42"},
        "metadata": {"amount": amount, "currency": "USD"},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def hook_pool(keys: PreludeKeys, size: int, *, amount: str) -> Iterator[PoolRequest]:
    """``size`` signed hook calls from distinct users."""
    for index in range(size):
        yield hook_request(keys, hook_body(index, amount=amount))


TokenForm = Literal["fields", "challenge_token"]


def token_request(
    keys: PreludeKeys,
    index: int,
    *,
    api_key: str,
    now: float,
    form: TokenForm = "challenge_token",
) -> PoolRequest:
    """``POST /verification-token`` for the pending ``kyc_review`` step of token user ``index``
    (see :func:`token_subject`), in one of design.md's two forms: the explicit ``fields``
    (user_id, challenge_id, key) as a backend sends them, or the ``challenge_token`` the
    frontend holds (the service then also verifies its EdDSA signature)."""
    user, challenge_id = token_subject(index)
    headers = (("Content-Type", "application/json"), ("Authorization", f"Bearer {api_key}"))
    if form == "fields":
        data = {"user_id": user, "challenge_id": challenge_id, "key": "kyc_review"}
    else:
        challenge = PreludeChallenge(
            user,
            "transfer:write",
            (Step(1, "kyc_review", 86_400),),
            challenge_id=challenge_id,
        )
        token = keys.challenge_token(challenge, "kyc_review", now)
        data = {"challenge_token": token}
    return PoolRequest("POST", TOKEN_PATH, json.dumps(data, separators=(",", ":")), headers)


def token_subject(index: int) -> tuple[str, str]:
    """``(user_id, challenge_id)`` of token request ``index``; user ids do not overlap the
    hook pools' (each pending step must be claimed once)."""
    return user_id(10**15 + index), f"chl_bench_{index}"


def policy_with_rules(count: int) -> dict[str, Any]:
    """A valid policy whose ``transfer:write`` scope has ``count`` rules and only the last one
    matches the bench's hook bodies (:func:`hook_body` with a numeric ``amount``)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    rules: list[dict[str, Any]] = [
        {
            "name": f"miss-{index}",
            # A realistic condition that evaluates fully and is false for the bench requests.
            "when": f'signals.platform == "P{index}" || metadata.currency == "C{index}"',
            "status": "block",
        }
        for index in range(count - 1)
    ]
    rules.append(
        {
            "name": "last",
            "when": 'signals.platform == "WEB" && has(metadata.amount)',
            "status": "review",
            "steps": ["otp"],
        }
    )
    return {
        "version": 1,
        "custom_steps": ["kyc_review"],
        "defaults": {"grant_mode": "single-use", "granted_for": 300, "expiration_duration": 600},
        "on_error": {"status": "block"},
        "scopes": {"transfer:write": {"rules": rules}},
        "default": {"status": "block"},
    }


# Conditions of the same shape that are false for the bench's hook bodies: on the user's
# facts, or on the request alone. The facts ones read most fields; the velocity threshold is
# out of reach because wrk replays each user's request many times in one run.
_FACTS_RULES = (
    ("flagged", "facts.flagged"),
    ("velocity", "facts.attempts_1h >= 1000000 || facts.distinct_ips_24h >= 1000000"),
    ("travel", "facts.travel_kmh > 900.0 && !facts.device_known"),
    (
        "new-device-new-country",
        '!facts.device_known && facts.country != "" && !facts.country_known'
        ' && !("kyc_review" in facts.step_age && facts.step_age["kyc_review"] < 2592000)',
    ),
)
_PLAIN_RULES = (
    ("flagged", 'signals.platform == "P0"'),
    ("velocity", 'metadata.currency == "C0" || metadata.currency == "C1"'),
    ("travel", 'signals.platform == "P1" && !has_email'),
    (
        "new-device-new-country",
        '!has_email && signals.platform != "" && signals.platform == "P2"'
        ' && !("kyc_review" in metadata && metadata["kyc_review"] == "x")',
    ),
)


def facts_policy(reads_facts: bool) -> dict[str, Any]:
    """A policy like the example's ``transfer:write``: four blocking rules that miss for the
    bench's hook bodies, then ``last`` (OTP). With ``reads_facts`` the four read ``facts``
    (fetched before deciding); without, the same shape on the request alone (the attempt is
    then recorded in the background): the pair measures what reading facts costs."""
    rules: list[dict[str, Any]] = [
        {"name": name, "when": when, "status": "block"}
        for name, when in (_FACTS_RULES if reads_facts else _PLAIN_RULES)
    ]
    rules.append({"name": "last", "status": "review", "steps": ["otp"]})
    policy = policy_with_rules(1)
    policy["scopes"]["transfer:write"]["rules"] = rules
    return policy


@dataclass(frozen=True, slots=True)
class PastAttempt:
    """One step-up of a user's history: ``after`` seconds after the previous one, from
    ``ip`` with ``user_agent``; ``proof`` says whether the user then passed it, and with which
    custom step (``""``: an OTP only)."""

    after: int
    scope: str
    ip: str
    user_agent: str
    proof: str | None


MONTH_DEVICES = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
)
MONTH_SCOPES = ("transfer:write", "prld:pwd:write", "profile:write")


def typical_month(index: int, attempts: int = 60, ips: int = 10) -> list[PastAttempt]:
    """A month of typical history for user ``index`` (issue 11 point 6): ``attempts`` step-ups
    12 h apart from 3 devices and ``ips`` public IPv4 addresses, over 3 scopes; one in four
    passed, one in sixteen with KYC. Deterministic per ``index``."""
    addresses = [f"81.{(index >> 8) % 256}.{index % 256}.{n + 1}" for n in range(ips)]
    return [
        PastAttempt(
            after=12 * 3600,
            scope=MONTH_SCOPES[n % 3],
            ip=addresses[n % ips],
            user_agent=MONTH_DEVICES[n % 3],
            proof=None if n % 4 else ("kyc_review" if n % 16 == 0 else ""),
        )
        for n in range(attempts)
    ]
