"""Helpers for the simulator's tests: its Prelude keys (pre-generated, tests/keys), the real
service in-process, scenario files, and a deliberately configurable fake service."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hook_service.simulator.client import ServiceClient
from hook_service.simulator.prelude import PreludeKeys
from hook_service.simulator.scenarios import ScenarioFile, load_scenarios
from tests.support import ADMIN_TOKEN, API_KEY, ed25519_private_key, hook_keys, rsa_private_key

BASE = "http://service.test"


def sim_keys() -> PreludeKeys:
    """The simulator's Prelude keys: the test suite's pre-generated Prelude key pair."""
    return PreludeKeys(
        rsa_private_key("prelude_rsa.pem"), ed25519_private_key("prelude_ed25519.pem")
    )


def write_key_file(path: Path) -> Path:
    """The two PEM keys of :func:`sim_keys` in one file, as ``--prelude-key`` reads it."""
    keys = Path(__file__).parents[1] / "keys"
    path.write_bytes(
        (keys / "prelude_rsa.pem").read_bytes() + (keys / "prelude_ed25519.pem").read_bytes()
    )
    path.chmod(0o600)
    return path


@asynccontextmanager
async def service_client(
    app: Starlette, clock: Callable[[], float], **options: Any
) -> AsyncIterator[ServiceClient]:
    """A :class:`ServiceClient` talking to ``app`` in-process, its lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as http:
            options.setdefault("api_key", API_KEY)
            options.setdefault("admin_token", ADMIN_TOKEN)
            yield ServiceClient(http, BASE, sim_keys(), monotonic=clock, **options)


def scenario_file(tmp_path: Path, text: str, name: str = "scenarios.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def one_scenario(tmp_path: Path, expect: str = "{status: review}", times: int = 1) -> ScenarioFile:
    """``times`` large-transfer scenarios expecting ``expect``."""
    items = "".join(
        f"""
          - name: scenario {i}
            request:
              scope: "transfer:write"
              identifiers: [{{type: phone_number, value: "+33612345678"}}]
              signals: {{platform: WEB}}
              metadata: {{amount: "1500"}}
            expect: {expect}
        """
        for i in range(1, times + 1)
    )
    text = "version: 1\nstep_keys: [kyc_review]\nscenarios:" + textwrap.indent(
        textwrap.dedent(items), "  "
    )
    return load_scenarios(scenario_file(tmp_path, text))


REVIEW_WITH_KYC: dict[str, Any] = {
    "status": "review",
    "grant_mode": "single-use",
    "granted_for": 300,
    "steps": [
        {"order": 1, "key": "verify_sms", "expiration_duration": 600},
        {"order": 2, "key": "kyc_review", "expiration_duration": 86400},
    ],
}


class FakeService:
    """A service that is wrong on purpose. ``hook`` answers the hook; ``claims`` and
    ``header`` change the verification token it mints; its JWKS holds hook_rsa_1 as ``k1``;
    ``api_key_checked = False`` mints tokens for anyone; ``challenge_verified = False`` decodes
    challenge tokens without checking their signature."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.hook: Callable[[Request], Any] = lambda request: JSONResponse(REVIEW_WITH_KYC)
        self.claims: dict[str, Any] = {}
        self.header: dict[str, Any] = {}
        self.algorithm = "RS256"
        self.jwk_extra: dict[str, Any] = {}
        self.api_key_checked = True
        self.challenge_verified = True
        self.minted = 0
        self.challenge_claims: list[dict[str, Any]] = []  # of every challenge_token received
        self.app = Starlette(
            routes=[
                Route("/hooks/stepup", self._hook, methods=["POST"]),
                Route("/verification-token", self._token, methods=["POST"]),
                Route("/.well-known/jwks.json", self._jwks, methods=["GET"]),
            ]
        )

    async def _hook(self, request: Request) -> Response:
        answer = self.hook(request)
        if not isinstance(answer, Response):
            answer = await answer
        assert isinstance(answer, Response)
        return answer

    async def _token(self, request: Request) -> Response:
        if self.api_key_checked and request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"error": "unauthorized", "detail": "API key"}, status_code=401)
        data = await request.json()
        if "challenge_token" in data:
            try:
                data = jwt.decode(
                    data["challenge_token"],
                    sim_keys().challenge_key.public_key(),
                    algorithms=["EdDSA"],
                    # The tests run on a fake clock: only the signature matters here.
                    options={"verify_signature": self.challenge_verified, "verify_exp": False},
                )
            except jwt.InvalidTokenError:
                return JSONResponse({"error": "invalid_challenge_token"}, status_code=401)
            self.challenge_claims.append(data)
            data = {
                "user_id": data["sub"],
                "challenge_id": data["challenge_id"],
                "key": data["current_step"],
            }
        now = int(self.clock())
        self.minted += 1
        claims = {
            "sub": data["user_id"],
            "challenge_id": data["challenge_id"],
            "key": data["key"],
            "status": "completed",
            "jti": f"jti-{self.minted}",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            **self.claims,
        }
        header = {"kid": "k1", **self.header}
        key: Any = (
            "a-shared-secret-of-32-bytes-long!" if self.algorithm == "HS256" else hook_keys()[0]
        )
        token = jwt.encode(claims, key, algorithm=self.algorithm, headers=header)
        return JSONResponse(
            {
                "verification_token": token,
                "jti": claims["jti"],
                "kid": header["kid"],
                "expires_at": claims["exp"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(hook_keys()[0].public_key()))
        served = {**jwk, "kid": "k1", "alg": "RS256", "use": "sig", **self.jwk_extra}
        return JSONResponse({"keys": [served]})
