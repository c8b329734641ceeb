"""The wire: every HTTP exchange the simulator has with the service, over an injected
``httpx.AsyncClient`` (tests pass one on ``httpx.ASGITransport``; the CLI a real one)."""

from __future__ import annotations

import json
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
OUTCOMES_PATH = "/outcomes"
JWKS_PATH = "/.well-known/jwks.json"
ADMIN_KEYS_PATH = "/admin/keys"
ROTATE_PATH = "/admin/keys/rotate"
# Called by the company's backend and its operators, so on the internal listener when the
# service has one (docs/deploying.md); the hook and the JWKS stay on the public base URL.
INTERNAL_PATHS = (TOKEN_PATH, "/outcomes", "/admin/")
# Every call but the hook (which has Prelude's own 5 s) gets this long.
CALL_TIMEOUT = 10.0
# Every answer but the hook's (64 KB, contract 8) is read up to this size, never further: a JWKS
# or a token answer is a few kilobytes, and a runaway body must not fill the memory.
ANSWER_LIMIT = 1024 * 1024


class ServiceError(Exception):
    """A call other than the hook failed outright (transport error or unusable answer)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer from the service. ``body`` is ``None`` when it was not a JSON object."""

    status_code: int
    body: dict[str, Any] | None
    content_type: str = ""
    problem: str = ""  # why there is no body, when it was not merely "not JSON"

    @property
    def error(self) -> str:
        """``"<status> <error code>: <detail>"`` for the report (never echoes a token)."""
        if self.body is None:
            return f"HTTP {self.status_code} ({self.problem or 'no JSON body'})"
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
    internal_url: str | None = None
    """Base URL of the internal listener, for :data:`INTERNAL_PATHS` (default: ``base_url``)."""

    def url(self, path: str) -> str:
        internal = self.internal_url if path.startswith(INTERNAL_PATHS) else None
        base = internal or self.base_url
        return base.rstrip("/") + path

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
            content, over = await _read_at_most(r, BODY_LIMIT)
            return HookAnswer(
                status_code=r.status_code,
                content_type=r.headers.get("content-type", ""),
                body=content,
                elapsed=self.monotonic() - start,
                truncated=over,
                rule=r.headers.get("x-hook-rule"),
            )

    async def request_token(self, payload: dict[str, Any]) -> Answer:
        """``POST /verification-token`` as the company backend, with the API key."""
        return await self._json("POST", TOKEN_PATH, self.api_key, payload)

    async def request_token_as(self, payload: dict[str, Any], bearer: str | None) -> Answer:
        """``POST /verification-token`` with ``bearer`` instead of the API key (a probe)."""
        return await self._json("POST", TOKEN_PATH, bearer, payload)

    async def report_outcome(self, payload: dict[str, Any]) -> Answer:
        """``POST /outcomes`` as the company backend, with the API key."""
        return await self._json("POST", OUTCOMES_PATH, self.api_key, payload)

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
        """``GET /admin/keys`` with the admin token."""
        return await self.admin_keys_as(self.admin_token)

    async def admin_keys_as(self, bearer: str | None) -> Answer:
        """``GET /admin/keys`` with ``bearer`` instead of the admin token (a probe)."""
        return await self._json("GET", ADMIN_KEYS_PATH, bearer, None)

    async def rotate(self, force: bool) -> Answer:
        """``POST /admin/keys/rotate`` with the admin token."""
        return await self.rotate_as(force, self.admin_token)

    async def rotate_as(self, force: bool, bearer: str | None) -> Answer:
        """``POST /admin/keys/rotate`` with ``bearer`` instead of the admin token (a probe)."""
        return await self._json("POST", ROTATE_PATH, bearer, {"force": force})

    async def _json(
        self, method: str, path: str, bearer: str | None, payload: dict[str, Any] | None
    ) -> Answer:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        request = self.http.build_request(
            method, self.url(path), json=payload, headers=headers, timeout=CALL_TIMEOUT
        )
        try:
            with anyio.fail_after(CALL_TIMEOUT):
                response = await self.http.send(request, stream=True)
                try:
                    content, over = await _read_at_most(response, ANSWER_LIMIT)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ServiceError(f"{method} {path}: {type(exc).__name__} {exc}".strip()) from None
        content_type = response.headers.get("content-type", "")
        if over:
            return Answer(response.status_code, None, content_type, f"over {ANSWER_LIMIT} bytes")
        try:
            body = json.loads(content)
        except ValueError:  # UnicodeDecodeError included
            body = None
        return Answer(response.status_code, body if isinstance(body, dict) else None, content_type)


async def _read_at_most(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the decoded body, and whether it went past them; reading
    stops there, so a runaway body is never buffered whole."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False
