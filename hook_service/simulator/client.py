"""The wire: every HTTP exchange the simulator has with the service, over an injected
``httpx.AsyncClient`` (tests pass one on ``httpx.ASGITransport``; the CLI a real one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from .lint import BODY_LIMIT, TIME_LIMIT, HookAnswer
from .prelude import PreludeKeys

HOOK_PATH = "/hooks/stepup"
TOKEN_PATH = "/verification-token"  # noqa: S105 (a path)
JWKS_PATH = "/.well-known/jwks.json"
ADMIN_KEYS_PATH = "/admin/keys"
ROTATE_PATH = "/admin/keys/rotate"
# Every call but the hook (which has Prelude's own 5 s) gets this long.
CALL_TIMEOUT = 10.0


class ServiceError(Exception):
    """A call other than the hook failed outright (transport error or unusable answer)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer from the service. ``body`` is ``None`` when it was not a JSON object."""

    status_code: int
    body: dict[str, Any] | None
    content_type: str = ""

    @property
    def error(self) -> str:
        """``"<status> <error code>: <detail>"`` for the report (never echoes a token)."""
        if self.body is None:
            return f"HTTP {self.status_code} (no JSON body)"
        code = self.body.get("error", "")
        return f"HTTP {self.status_code} {code}: {self.body.get('detail', '')}".strip()


@dataclass(slots=True)
class ServiceClient:
    """Prelude's and the company backend's side of every conversation with ``base_url``."""

    http: httpx.AsyncClient
    base_url: str
    prelude: PreludeKeys
    api_key: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    time_limit: float = TIME_LIMIT
    monotonic: Callable[[], float] = time.monotonic

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    async def call_hook(self, body: bytes, headers: dict[str, str]) -> HookAnswer:
        """POST ``body`` to the hook as Prelude does: give up after the time limit, read at
        most one byte past 64 KB (contract 8)."""
        start = self.monotonic()
        answer: HookAnswer | None = None
        # move_on_after, not httpx's timeout: an ASGI transport ignores the latter.
        with anyio.move_on_after(self.time_limit):
            try:
                answer = await self._post_hook(body, headers, start)
            except httpx.HTTPError as exc:
                return HookAnswer(error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        if answer is None:
            return HookAnswer(error=f"no answer within {self.time_limit:g} s")
        return answer

    async def _post_hook(self, body: bytes, headers: dict[str, str], start: float) -> HookAnswer:
        url = self.url(HOOK_PATH)
        timeout = httpx.Timeout(self.time_limit)
        async with self.http.stream(
            "POST", url, content=body, headers=headers, timeout=timeout
        ) as r:
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > BODY_LIMIT:
                    break
            return HookAnswer(
                status_code=r.status_code,
                content_type=r.headers.get("content-type", ""),
                body=b"".join(chunks)[: BODY_LIMIT + 1],
                elapsed=self.monotonic() - start,
                truncated=size > BODY_LIMIT,
                rule=r.headers.get("x-hook-rule"),
            )

    async def request_token(self, payload: dict[str, Any]) -> Answer:
        """``POST /verification-token`` as the company backend, with the API key."""
        return await self._json("POST", TOKEN_PATH, self.api_key, payload)

    async def get_jwks(self) -> Answer:
        """``GET /.well-known/jwks.json`` as it is served."""
        return await self._json("GET", JWKS_PATH, None, None)

    async def fetch_jwks(self) -> dict[str, Any]:
        """The service's JWKS; raises :class:`ServiceError` when it cannot be had."""
        answer = await self.get_jwks()
        if answer.status_code != 200 or answer.body is None:
            raise ServiceError(f"GET {JWKS_PATH}: {answer.error}")
        return answer.body

    async def admin_keys(self) -> Answer:
        return await self._json("GET", ADMIN_KEYS_PATH, self.admin_token, None)

    async def rotate(self, force: bool) -> Answer:
        return await self._json("POST", ROTATE_PATH, self.admin_token, {"force": force})

    async def _json(
        self, method: str, path: str, bearer: str | None, payload: dict[str, Any] | None
    ) -> Answer:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            with anyio.fail_after(CALL_TIMEOUT):
                response = await self.http.request(
                    method, self.url(path), json=payload, headers=headers, timeout=CALL_TIMEOUT
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ServiceError(f"{method} {path}: {type(exc).__name__} {exc}".strip()) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(
            response.status_code,
            body if isinstance(body, dict) else None,
            response.headers.get("content-type", ""),
        )
