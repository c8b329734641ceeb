"""The simulator's Prelude-like verifier: JWKS cached 10 minutes and refetched on an unknown
kid (contract 5), and every rule of contract 4 on its own."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from hook_service.simulator.verifier import Challenge, JwksCache, TokenRejected, TokenVerifier
from tests.support import FakeClock, hook_keys

pytestmark = pytest.mark.anyio

CHALLENGE = Challenge("usr_1", "chl_1", "kyc_review")
NOW = 1_760_000_000


def jwk(index: int, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(hook_keys()[index].public_key()))
    return {**public, "kid": kid, "alg": "RS256", "use": "sig"}


def token(index: int = 0, kid: str = "k1", **claims: Any) -> str:
    body = {
        "sub": "usr_1",
        "challenge_id": "chl_1",
        "key": "kyc_review",
        "status": "completed",
        "jti": "jti-1",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 300,
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, hook_keys()[index], algorithm="RS256", headers={"kid": kid})


def unsigned_token() -> str:
    """An ``alg: none`` JWT with otherwise valid claims."""
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"k1"}').rstrip(b"=").decode()
    payload = token().split(".")[1]
    return f"{header}.{payload}."


class Served:
    """The JWKS a service serves, changeable between fetches; counts fetches."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0

    async def __call__(self) -> dict[str, Any]:
        self.fetches += 1
        return {"keys": list(self.keys)}


def verifier(served: Served, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(JwksCache(served, clock), clock)


async def test_cache_lasts_ten_minutes_and_refetches_on_an_unknown_kid() -> None:
    clock = FakeClock(NOW)
    served = Served(jwk(0, "k1"))
    check = verifier(served, clock)
    await check.verify(token(jti="a"), CHALLENGE)
    assert served.fetches == 1
    served.keys.append(jwk(1, "k2"))
    clock.advance(599)
    await check.verify(token(jti="b", exp=NOW + 900), CHALLENGE)  # k1: cached copy is enough
    assert served.fetches == 1
    await check.verify(token(1, "k2", jti="c", exp=NOW + 900), CHALLENGE)  # unknown kid: refetch
    assert served.fetches == 2
    served.keys = [jwk(1, "k2")]
    clock.advance(599)
    # Within 10 minutes of the last fetch, a key the service dropped is still trusted...
    await check.verify(token(jti="d", exp=NOW + 1500), CHALLENGE)
    assert served.fetches == 2
    clock.advance(1)
    # ...and once the cache is 10 minutes old it is fetched again and the kid is gone.
    with pytest.raises(TokenRejected, match="kid 'k1' is not in the service's JWKS"):
        await check.verify(token(jti="e", exp=NOW + 1500), CHALLENGE)


INVALID = "invalid_verification_token"


@pytest.mark.parametrize(
    ("claims", "rule", "code", "detail"),
    [
        ({"sub": "usr_2"}, "sub", "token_mismatch", "sub is 'usr_2', the challenge has 'usr_1'"),
        ({"challenge_id": "chl_2"}, "challenge_id", "token_mismatch", "challenge_id is 'chl_2'"),
        # The challenge's steps are not known here: any other key is a mismatch.
        ({"key": "other"}, "key", "token_mismatch", "key is 'other'"),
        ({"status": None}, "status", "step_not_completed", "status is None"),
        ({"iat": "now"}, "iat", INVALID, "iat is 'now', not a number"),
        ({"nbf": None}, "nbf", INVALID, "nbf is None, not a number"),
        ({"iat": NOW + 1}, "iat", INVALID, "iat is 1 s in the future"),
        ({"nbf": NOW + 1}, "nbf", INVALID, "nbf is 1 s in the future"),
        ({"exp": NOW}, "exp", INVALID, "expired 0 s ago"),
        ({"exp": NOW + 3601}, "exp", INVALID, "exp is 3601 s ahead, more than 3600 s"),
        ({"jti": None}, "jti", INVALID, "jti is missing"),
    ],
)
async def test_each_claim_rule(claims: dict[str, Any], rule: str, code: str, detail: str) -> None:
    check = verifier(Served(jwk(0, "k1")), FakeClock(NOW))
    with pytest.raises(TokenRejected) as raised:
        await check.verify(token(**claims), CHALLENGE)
    assert (raised.value.rule, raised.value.code) == (rule, code)
    assert raised.value.detail.startswith(detail)


# The challenge token of a challenge at its second step (contract 6), as Prelude mints it.
AT_KYC = Challenge.from_claims(
    {
        "sub": "usr_1",
        "challenge_id": "chl_1",
        "current_step": "kyc_review",
        "exp": NOW + 600,
        "steps": [
            {"order": 1, "key": "verify_sms", "expiration_duration": 600, "done": True},
            {"order": 2, "key": "kyc_review", "expiration_duration": 600, "done": False},
            {"order": 3, "key": "manager_ok", "expiration_duration": 600, "done": False},
        ],
    }
)


@pytest.mark.parametrize(
    ("key", "code"),
    [("manager_ok", "step_bypassed"), ("verify_sms", "token_mismatch"), ("x", "step_not_found")],
)
async def test_a_token_for_another_step_gets_preludes_code(key: str, code: str) -> None:
    assert AT_KYC.steps == (("verify_sms", True), ("kyc_review", False), ("manager_ok", False))
    check = verifier(Served(jwk(0, "k1")), FakeClock(NOW))
    with pytest.raises(TokenRejected) as raised:
        await check.verify(token(key=key), AT_KYC)
    assert (raised.value.rule, raised.value.code) == ("key", code)
    assert raised.value.detail == f"key is {key!r}, the challenge's current step is 'kyc_review'"
    assert (await check.verify(token(), AT_KYC))["key"] == "kyc_review"


async def test_an_expired_challenge_token_is_refused_before_the_token_is_read() -> None:
    clock = FakeClock(NOW + 600)
    check = verifier(Served(jwk(0, "k1")), clock)
    with pytest.raises(TokenRejected) as raised:
        await check.verify("not even a JWT", AT_KYC)
    assert (raised.value.rule, raised.value.code) == ("challenge", "expired_challenge_token")
    assert raised.value.detail == "the challenge token expired 0 s ago"
    clock.now = NOW + 599
    assert (await check.verify(token(exp=NOW + 900), AT_KYC))["jti"] == "jti-1"


async def test_exactly_one_hour_ahead_is_accepted() -> None:
    check = verifier(Served(jwk(0, "k1")), FakeClock(NOW))
    claims = await check.verify(token(exp=NOW + 3600), CHALLENGE)
    assert claims["exp"] == NOW + 3600


@pytest.mark.parametrize(
    ("make", "rule"),
    [
        (
            lambda: jwt.encode(
                {"sub": "usr_1"}, "s" * 32, algorithm="HS256", headers={"kid": "k1"}
            ),
            "alg",
        ),
        (lambda: unsigned_token(), "alg"),
        (lambda: token(kid="k2"), "kid"),
        (lambda: token(index=1), "signature"),  # kid k1, signed by another key
        (lambda: "not.a.jwt", "format"),
    ],
)
async def test_algorithm_kid_and_signature(make: Any, rule: str) -> None:
    check = verifier(Served(jwk(0, "k1")), FakeClock(NOW))
    with pytest.raises(TokenRejected) as raised:
        await check.verify(make(), CHALLENGE)
    assert (raised.value.rule, raised.value.code) == (rule, "invalid_verification_token")


async def test_a_key_published_for_another_algorithm_is_refused() -> None:
    check = verifier(Served({**jwk(0, "k1"), "alg": "PS256"}), FakeClock(NOW))
    with pytest.raises(TokenRejected, match="published for 'PS256'"):
        await check.verify(token(), CHALLENGE)


async def test_a_jti_is_accepted_once_unless_rechecking() -> None:
    check = verifier(Served(jwk(0, "k1")), FakeClock(NOW))
    first = token()
    await check.verify(first, CHALLENGE)
    await check.verify(first, CHALLENGE, remember=False)  # the rotation check looks again
    with pytest.raises(TokenRejected, match="jti 'jti-1' was already used") as raised:
        await check.verify(token(exp=NOW + 301), CHALLENGE)
    assert raised.value.code == "token_reused"


async def test_an_unusable_jwk_is_a_rejection() -> None:
    broken = {"kty": "RSA", "kid": "k1", "n": "not-base64-!", "e": "AQAB"}
    check = verifier(Served(broken), FakeClock(NOW))
    with pytest.raises(TokenRejected) as raised:
        await check.verify(token(), CHALLENGE)
    assert raised.value.rule == "kid"
    assert "is not a usable RSA key" in raised.value.detail
