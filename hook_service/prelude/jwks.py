"""Prelude's per-app JWKS, cached: RSA keys for hook signatures, Ed25519 keys for challenge tokens.

Contract 2.3 step 4: look the key up by kid; on an unknown kid refetch once (rate-limited); select
by kid and check the key type, since the same JWKS holds the EdDSA token keys (contract 6). Logs
name the kid and the reason, never a response body, a URL's credentials or query, or a signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import anyio
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from hook_service import errors, logs
from hook_service._variables import redact_url
from hook_service.clock import Clock, system_clock
from hook_service.prelude.parse import FetchError, JwkSet, parse_jwks

log = logging.getLogger(logs.PRELUDE)

MAX_JWKS_BYTES: Final = 1 << 20  # a JWKS is a few KiB; refuse to buffer a runaway response
_MAX_KID_CHARS: Final = 256  # longer kids are never looked up (they cannot trigger a refetch)


class PreludeJwks:
    """Prelude's app JWKS cache (an ``AppJwks``), from exactly one of ``url`` or ``file``.

    An unknown kid triggers at most one refetch per ``refetch_interval`` seconds, and concurrent
    misses wait for the same in-flight refetch. After ``max_age`` seconds (``None``: never) the
    next lookup also refetches, so keys Prelude withdrew stop verifying; while that refetch runs,
    other lookups of known kids use the cached keys. A failed refetch keeps the cached keys.
    ``on_fetch(trigger, ok)`` hears of every fetch (the metrics): ``initial``, ``unknown_kid``
    or ``stale_cache``, and whether it succeeded.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        file: Path | None = None,
        clock: Clock = system_clock,
        refetch_interval: float = 30.0,
        client: httpx.AsyncClient | None = None,
        timeout: float = 2.0,
        max_age: float | None = 600.0,
        on_fetch: Callable[[str, bool], None] | None = None,
    ) -> None:
        if (url is None) == (file is None):
            raise errors.ConfigError(
                "set exactly one of HOOK_PRELUDE_JWKS_URL and HOOK_PRELUDE_JWKS_FILE"
            )
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise errors.ConfigError(f"HOOK_PRELUDE_JWKS_URL {redact_url(url)}: not an http(s) URL")
        self._url = url
        self._file = file
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._timeout = timeout
        self._max_age = max_age
        self._client = client
        self._owns_client = client is None
        self._keys = JwkSet()
        self._loaded = False
        self._fetched_at: float | None = None  # last successful fetch (max_age)
        self._attempted_at: float | None = None  # last refetch attempt, failed or not (rate limit)
        self._generation = 0  # bumped by every fetch attempt; waiters use it to share one fetch
        self._lock = anyio.Lock()
        self._on_fetch = on_fetch

    @property
    def source(self) -> str:
        """Where the keys come from, safe to log (no URL credentials or query)."""
        return redact_url(self._url) if self._url is not None else str(self._file)

    @property
    def loaded(self) -> bool:
        """Whether a JWKS has been fetched successfully at least once."""
        return self._loaded

    def preload(self) -> None:
        """Read a file source now, synchronously, so a bad file stops start-up with a clean
        :class:`errors.ConfigError` before the server runs. A URL source waits for :meth:`load`."""
        if self._file is None:
            return
        try:
            keys = parse_jwks(self._read_file())
        except FetchError as exc:
            raise errors.ConfigError(f"HOOK_PRELUDE_JWKS_FILE {self._file}: {exc}") from None
        self._install(keys)

    async def load(self) -> None:
        """Initial fetch at start-up. An unreadable or invalid file raises
        :class:`errors.ConfigError` naming it; a URL failure is logged and lookups refetch."""
        async with self._lock:
            try:
                keys = await self._fetch("initial")
            except FetchError as exc:
                if self._file is not None:
                    raise errors.ConfigError(
                        f"HOOK_PRELUDE_JWKS_FILE {self._file}: {exc}"
                    ) from None
                log.warning("prelude JWKS initial fetch from %s failed: %s", self.source, exc)
                return
            finally:
                self._generation += 1
            self._install(keys)

    async def rsa_key(self, kid: str) -> RSAPublicKey:
        """The RSA key that verifies hook signatures (contract 2.3). Raises
        :class:`errors.InvalidSignature` for an unknown kid or a kid that is not an RSA key."""
        await self._ensure(kid)
        key = self._keys.rsa.get(kid)
        if key is None:
            raise self._missing(kid, "RSA")
        return key

    async def ed25519_key(self, kid: str) -> Ed25519PublicKey:
        """The Ed25519 key that verifies challenge tokens (contract 6). Raises
        :class:`errors.InvalidSignature` for an unknown kid or a kid that is not an Ed25519 key."""
        await self._ensure(kid)
        key = self._keys.ed25519.get(kid)
        if key is None:
            raise self._missing(kid, "Ed25519")
        return key

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _ensure(self, kid: str) -> None:
        if not kid or len(kid) > _MAX_KID_CHARS:
            raise errors.InvalidSignature("missing or oversized signing key id", "missing_key_id")
        if kid not in self._keys.kids:
            await self._refresh(kid, known=False)
        elif self._is_stale():
            await self._refresh(kid, known=True)

    def _missing(self, kid: str, label: str) -> errors.InvalidSignature:
        if kid in self._keys.kids:
            return errors.InvalidSignature(
                f"signing key {kid[:64]!r} is not a usable {label} key", "wrong_key_type"
            )
        return errors.InvalidSignature(f"unknown signing key id {kid[:64]!r}", "unknown_key")

    def _is_stale(self) -> bool:
        return (
            self._max_age is not None
            and self._fetched_at is not None
            and self._clock() - self._fetched_at >= self._max_age
        )

    def _rate_limited(self) -> bool:
        last = self._attempted_at
        return last is not None and self._clock() - last < self._refetch_interval

    async def _refresh(self, kid: str, *, known: bool) -> None:
        if self._lock.locked():
            if known:
                return  # a refetch is in flight; the cached key is good meanwhile
        elif self._rate_limited():
            return  # fast path; never skips waiting for an in-flight fetch
        generation = self._generation
        async with self._lock:
            if self._generation != generation or self._rate_limited():
                return  # another task fetched while we waited: share its result
            self._attempted_at = self._clock()
            reason = "stale cache" if known else "unknown kid"
            try:
                keys = await self._fetch(reason.replace(" ", "_"))
            except FetchError as exc:
                log.warning(
                    "prelude JWKS refetch (%s kid=%r) from %s failed, keeping %d cached keys: %s",
                    reason,
                    kid[:64],
                    self.source,
                    len(self._keys.kids),
                    exc,
                )
                return
            finally:
                self._generation += 1
            self._install(keys)
            log.info(
                "prelude JWKS refetched (%s kid=%r): %d keys", reason, kid[:64], len(keys.kids)
            )

    def _install(self, keys: JwkSet) -> None:
        self._keys = keys
        self._loaded = True
        self._fetched_at = self._clock()

    async def _fetch(self, trigger: str) -> JwkSet:
        try:
            keys = await self._fetch_once()
        except FetchError:
            if self._on_fetch is not None:
                self._on_fetch(trigger, False)
            raise
        if self._on_fetch is not None:
            self._on_fetch(trigger, True)
        return keys

    async def _fetch_once(self) -> JwkSet:
        # Shielded: a hook request cancelled mid-fetch must not abort the refetch others wait on;
        # the deadline bounds it instead (httpx timeouts are per phase, not for the whole fetch).
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(self._timeout):
                    if self._file is not None:
                        raw = await anyio.to_thread.run_sync(self._read_file)
                    else:
                        raw = await self._get()
            except TimeoutError:
                raise FetchError(f"timed out after {self._timeout:g} s") from None
        return parse_jwks(raw)

    def _read_file(self) -> bytes:
        assert self._file is not None
        try:
            with self._file.open("rb") as f:
                raw = f.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise FetchError(f"cannot read file: {exc.strerror or type(exc).__name__}") from None
        if len(raw) > MAX_JWKS_BYTES:
            raise FetchError(f"file larger than {MAX_JWKS_BYTES} bytes")
        return raw

    async def _get(self) -> bytes:
        assert self._url is not None
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout, headers={"User-Agent": "prelude-stepup-hook"}
            )
        try:
            headers = {"Accept": "application/json"}
            async with self._client.stream("GET", self._url, headers=headers) as response:
                if response.status_code != httpx.codes.OK:
                    raise FetchError(f"HTTP status {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise FetchError(f"response larger than {MAX_JWKS_BYTES} bytes")
                return bytes(body)
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {self._timeout:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            # str(exc) may quote the full URL (credentials, query): log the class name only.
            raise FetchError(f"request failed ({type(exc).__name__})") from None
