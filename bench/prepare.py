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
from dataclasses import dataclass, field, replace
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


def hook_pool(
    keys: PreludeKeys, size: int, *, amount: str, first: int = 0
) -> Iterator[PoolRequest]:
    """``size`` signed hook calls from distinct users (``first``, ``first + 1``, ...)."""
    for index in range(first, first + size):
        yield hook_request(keys, hook_body(index, amount=amount))


def at_path(requests: Iterable[PoolRequest], path: str) -> Iterator[PoolRequest]:
    """``requests`` sent to ``path`` instead (the floors replay the service's requests)."""
    for request in requests:
        yield replace(request, path=path)


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
