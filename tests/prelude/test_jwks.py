"""prelude/jwks.py: Prelude's app JWKS, cached, from a file or over HTTP (contract 2.3 step 4)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from hook_service import errors
from hook_service.prelude.jwks import PreludeJwks
from tests.support import (
    PRELUDE_JWKS_FILE,
    FakeClock,
    ed25519_private_key,
    free_port,
    rsa_private_key,
)

JWKS: dict[str, Any] = json.loads(PRELUDE_JWKS_FILE.read_text())
LOGGER = "hook_service.prelude"
SECRET_URL = "http://user:hunter2@prelude.test/.well-known/jwks.json?token=s3cr3t"


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rsa_jwk(key: RSAPrivateKey, kid: str, **extra: str) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "n": _b64(numbers.n), "e": _b64(numbers.e), **extra}


PRELUDE_RSA: RSAPrivateKey = rsa_private_key("prelude_rsa.pem")
OTHER_RSA: RSAPrivateKey = rsa_private_key("prelude_rsa_other.pem")
PRELUDE_ED: Ed25519PrivateKey = ed25519_private_key("prelude_ed25519.pem")
ROTATED = {"keys": [*JWKS["keys"], rsa_jwk(OTHER_RSA, "prelude-rsa-2")]}


def jwks_bytes(data: Any) -> bytes:
    return json.dumps(data).encode()


@dataclass
class FakePrelude:
    """An httpx.MockTransport handler: serves ``responses`` in turn (the last one repeats)."""

    responses: list[Callable[[], Awaitable[httpx.Response]] | httpx.Response | bytes] = field(
        default_factory=list
    )
    calls: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        answer = self.responses[min(self.calls, len(self.responses)) - 1]
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer)
        if isinstance(answer, httpx.Response):
            return answer
        return await answer()

    def keys(self, **kwargs: Any) -> PreludeJwks:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self))
        kwargs.setdefault("url", "https://app.session.prelude.test/.well-known/jwks.json")
        return PreludeJwks(client=client, **kwargs)


def same_rsa(a: Any, b: RSAPrivateKey) -> bool:
    return bool(a.public_numbers() == b.public_key().public_numbers())


# --- file source -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_file_source_selects_keys_by_kid_and_type() -> None:
    keys = PreludeJwks(file=PRELUDE_JWKS_FILE)
    assert not keys.loaded
    await keys.load()
    assert keys.loaded
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    ed = await keys.ed25519_key("prelude-ed-1")
    assert ed.public_bytes_raw() == PRELUDE_ED.public_key().public_bytes_raw()


@pytest.mark.anyio
async def test_wrong_key_type_is_invalid_signature_without_refetch() -> None:
    prelude = FakePrelude([jwks_bytes(JWKS)])
    keys = prelude.keys(refetch_interval=0)
    await keys.load()
    with pytest.raises(errors.InvalidSignature, match="not a usable RSA key"):
        await keys.rsa_key("prelude-ed-1")
    with pytest.raises(errors.InvalidSignature, match="not a usable Ed25519 key"):
        await keys.ed25519_key("prelude-rsa-1")
    assert prelude.calls == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read file"), (b"{not json", "invalid JSON"), (b'{"kty": "RSA"}', "JWK Set")],
    ids=["missing", "invalid-json", "not-jwks"],
)
@pytest.mark.anyio
async def test_bad_file_at_load_is_a_config_error_naming_it(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "prelude-jwks.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(errors.ConfigError) as caught:
        await PreludeJwks(file=path).load()
    assert str(path) in str(caught.value) and reason in str(caught.value)


@pytest.mark.anyio
async def test_file_is_reread_on_refetch(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks_bytes(JWKS))
    clock = FakeClock()
    keys = PreludeJwks(file=path, clock=clock)
    await keys.load()
    path.write_bytes(jwks_bytes(ROTATED))
    assert same_rsa(await keys.rsa_key("prelude-rsa-2"), OTHER_RSA)
    # A broken file on a later refetch keeps the cached keys instead of failing start-up rules.
    path.write_bytes(b"garbage")
    clock.now += 31
    with pytest.raises(errors.InvalidSignature, match="unknown"):
        await keys.rsa_key("prelude-rsa-3")
    assert same_rsa(await keys.rsa_key("prelude-rsa-2"), OTHER_RSA)


# --- JWKS contents ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_unsupported_and_malformed_keys_are_skipped_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A 1024-bit modulus (no key is generated at test time): the top half of a test key's.
    weak_n = OTHER_RSA.public_key().public_numbers().n >> 1024 | 1
    assert weak_n.bit_length() == 1024
    jwks = {
        "keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "x": "AA", "y": "AA"},
            {"kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "broken-rsa", "n": "!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "weak-rsa", "n": _b64(weak_n), "e": _b64(65537)},
            rsa_jwk(OTHER_RSA, "enc-rsa", use="enc"),
            {"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": "AA"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "short-ed", "x": "AAAA"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},  # no kid: cannot be selected
            "not-an-object",
            *JWKS["keys"],
        ]
    }
    prelude = FakePrelude([jwks_bytes(jwks)])
    keys = prelude.keys()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        await keys.load()
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    for kid in ("ec-1", "hmac-1", "broken-rsa", "weak-rsa", "enc-rsa"):
        with pytest.raises(errors.InvalidSignature, match="not a usable RSA key"):
            await keys.rsa_key(kid)
    for kid in ("x25519", "short-ed"):
        with pytest.raises(errors.InvalidSignature, match="not a usable Ed25519 key"):
            await keys.ed25519_key(kid)
    assert prelude.calls == 1  # known-but-unusable kids do not trigger refetches
    assert "c2VjcmV0" not in caplog.text
    assert "weak-rsa" in caplog.text and "2048" in caplog.text


@pytest.mark.anyio
async def test_duplicate_kid_with_different_types_is_allowed() -> None:
    # RFC 7517 4.5: the same kid may name alternatives with different kty.
    ed = next(k for k in JWKS["keys"] if k["kty"] == "OKP")
    jwks = {"keys": [rsa_jwk(PRELUDE_RSA, "shared"), {**ed, "kid": "shared"}]}
    keys = FakePrelude([jwks_bytes(jwks)]).keys()
    await keys.load()
    assert same_rsa(await keys.rsa_key("shared"), PRELUDE_RSA)
    assert (await keys.ed25519_key("shared")).public_bytes_raw() == (
        PRELUDE_ED.public_key().public_bytes_raw()
    )


# --- refetch on unknown kid ------------------------------------------------------------------


@pytest.mark.anyio
async def test_unknown_kid_refetches_at_most_once_per_interval() -> None:
    clock = FakeClock()
    prelude = FakePrelude([jwks_bytes(JWKS)])
    keys = prelude.keys(clock=clock, refetch_interval=30)
    await keys.load()
    assert prelude.calls == 1
    with pytest.raises(errors.InvalidSignature, match="unknown signing key id 'nope'"):
        await keys.rsa_key("nope")
    assert prelude.calls == 2
    clock.now += 29.9
    for kid in ("nope", "other", "third"):
        with pytest.raises(errors.InvalidSignature):
            await keys.rsa_key(kid)
    assert prelude.calls == 2
    clock.now += 0.1
    with pytest.raises(errors.InvalidSignature):
        await keys.ed25519_key("nope")
    assert prelude.calls == 3


@pytest.mark.anyio
async def test_unknown_kid_finds_a_rotated_key() -> None:
    prelude = FakePrelude([jwks_bytes(JWKS), jwks_bytes(ROTATED)])
    keys = prelude.keys()
    await keys.load()
    assert same_rsa(await keys.rsa_key("prelude-rsa-2"), OTHER_RSA)
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    assert prelude.calls == 2


@pytest.mark.parametrize("kid", ["", "k" * 257])
@pytest.mark.anyio
async def test_empty_or_oversized_kid_never_refetches(kid: str) -> None:
    prelude = FakePrelude([jwks_bytes(JWKS)])
    keys = prelude.keys(refetch_interval=0)
    await keys.load()
    with pytest.raises(errors.InvalidSignature, match="key id"):
        await keys.rsa_key(kid)
    assert prelude.calls == 1


def _slow(data: Any, started: anyio.Event | None = None) -> Callable[[], Awaitable[httpx.Response]]:
    async def answer() -> httpx.Response:
        if started is not None:
            started.set()
        await anyio.sleep(0.05)
        return httpx.Response(200, content=jwks_bytes(data))

    return answer


@pytest.mark.anyio
async def test_concurrent_misses_share_one_fetch() -> None:
    prelude = FakePrelude([jwks_bytes(JWKS), _slow(JWKS)])
    keys = prelude.keys()
    await keys.load()
    results = await _gather([keys.rsa_key("unknown-kid") for _ in range(10)])
    assert prelude.calls == 2  # load + exactly one refetch
    assert all(isinstance(r, errors.InvalidSignature) for r in results)


@pytest.mark.anyio
async def test_concurrent_misses_share_the_fetch_even_without_rate_limit() -> None:
    # refetch_interval=0: only the in-flight sharing keeps this to a single fetch.
    prelude = FakePrelude([jwks_bytes(JWKS), _slow(ROTATED)])
    keys = prelude.keys(refetch_interval=0)
    await keys.load()
    results = await _gather([keys.rsa_key("prelude-rsa-2") for _ in range(10)])
    assert prelude.calls == 2
    assert all(same_rsa(r, OTHER_RSA) for r in results)


async def _gather(calls: list[Awaitable[Any]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    async def run(i: int, call: Awaitable[Any]) -> None:
        try:
            results[i] = await call
        except errors.HookError as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(run, i, call)
    return results


@pytest.mark.anyio
async def test_cancelled_lookup_does_not_abort_the_shared_refetch() -> None:
    started = anyio.Event()
    prelude = FakePrelude([jwks_bytes(JWKS), _slow(ROTATED, started)])
    keys = prelude.keys()
    await keys.load()
    async with anyio.create_task_group() as tg:
        tg.start_soon(keys.rsa_key, "prelude-rsa-2")
        await started.wait()
        tg.cancel_scope.cancel()  # e.g. Prelude hung up on the hook request
    # The refetch finished anyway, so this lookup needs no new (rate-limited) fetch.
    assert same_rsa(await keys.rsa_key("prelude-rsa-2"), OTHER_RSA)
    assert prelude.calls == 2


# --- failures keep the cache -----------------------------------------------------------------


def _raise(exc: Exception) -> Callable[[], Awaitable[httpx.Response]]:
    async def answer() -> httpx.Response:
        raise exc

    return answer


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (httpx.Response(500, content=b"SECRET-BODY internal error"), "HTTP status 500"),
        (httpx.Response(404, content=b"SECRET-BODY"), "HTTP status 404"),
        (_raise(httpx.ReadTimeout("timed out")), "timed out"),
        (_raise(httpx.ConnectError("[Errno 111] Connection refused")), "ConnectError"),
        (b"SECRET-BODY <html>", "invalid JSON"),
        (b'{"SECRET-BODY": []}', "not a JWK Set"),
        (b'[{"kty": "RSA"}]', "not a JWK Set"),
        (b"x" * (1 << 20) + b"SECRET-BODY", "larger than"),
    ],
    ids=["500", "404", "timeout", "refused", "invalid-json", "no-keys", "array", "too-large"],
)
@pytest.mark.anyio
async def test_failed_refetch_keeps_cached_keys_and_logs_safely(
    caplog: pytest.LogCaptureFixture, failure: Any, reason: str
) -> None:
    prelude = FakePrelude([jwks_bytes(JWKS), failure])
    keys = prelude.keys(url=SECRET_URL, refetch_interval=0)
    await keys.load()
    with (
        caplog.at_level(logging.INFO, logger=LOGGER),
        pytest.raises(errors.InvalidSignature, match="unknown"),
    ):
        await keys.rsa_key("rotated-kid")
    assert prelude.calls == 2
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    assert keys.loaded
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    message = failures[0].getMessage()
    assert reason in message and "'rotated-kid'" in message
    assert "prelude.test/.well-known/jwks.json" in message
    for secret in ("hunter2", "s3cr3t", "token=", "SECRET-BODY"):
        assert secret not in caplog.text


@pytest.mark.anyio
async def test_whole_fetch_is_bounded_by_timeout() -> None:
    async def drip() -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(200, content=jwks_bytes(ROTATED))

    prelude = FakePrelude([jwks_bytes(JWKS), drip])
    keys = prelude.keys(timeout=0.1)
    await keys.load()
    start = time.monotonic()
    with pytest.raises(errors.InvalidSignature):
        await keys.rsa_key("prelude-rsa-2")
    assert time.monotonic() - start < 2
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)


@pytest.mark.anyio
async def test_url_load_failure_is_not_fatal_and_lookups_refetch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prelude = FakePrelude([httpx.Response(503), jwks_bytes(JWKS)])
    keys = prelude.keys(url=SECRET_URL)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await keys.load()
    assert not keys.loaded
    assert "initial fetch" in caplog.text and "HTTP status 503" in caplog.text
    assert "hunter2" not in caplog.text and "s3cr3t" not in caplog.text
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    assert keys.loaded and prelude.calls == 2


# --- max age ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stale_cache_refetches_so_withdrawn_keys_stop_verifying() -> None:
    clock = FakeClock()
    withdrawn = {"keys": [k for k in ROTATED["keys"] if k["kid"] != "prelude-rsa-1"]}
    prelude = FakePrelude([jwks_bytes(JWKS), jwks_bytes(withdrawn)])
    keys = prelude.keys(clock=clock, max_age=600)
    await keys.load()
    clock.now += 599
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    assert prelude.calls == 1
    clock.now += 1
    with pytest.raises(errors.InvalidSignature, match="unknown"):
        await keys.rsa_key("prelude-rsa-1")
    assert prelude.calls == 2


@pytest.mark.anyio
async def test_stale_cache_is_served_when_refresh_fails_or_max_age_is_off() -> None:
    clock = FakeClock()
    prelude = FakePrelude([jwks_bytes(JWKS), httpx.Response(500)])
    keys = prelude.keys(clock=clock, max_age=600)
    await keys.load()
    clock.now += 10_000
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    assert prelude.calls == 2  # the failed refresh is rate-limited like any other

    never = FakePrelude([jwks_bytes(JWKS)])
    keys = never.keys(clock=clock, max_age=None)
    await keys.load()
    clock.now += 1e9
    assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    assert never.calls == 1


@pytest.mark.anyio
async def test_known_kid_is_served_from_cache_while_a_stale_refresh_runs() -> None:
    clock = FakeClock()
    started, release = anyio.Event(), anyio.Event()

    async def blocked() -> httpx.Response:
        started.set()
        await release.wait()
        return httpx.Response(200, content=jwks_bytes(JWKS))

    prelude = FakePrelude([jwks_bytes(JWKS), blocked])
    keys = prelude.keys(clock=clock, max_age=600)
    await keys.load()
    clock.now += 601
    async with anyio.create_task_group() as tg:
        tg.start_soon(keys.rsa_key, "prelude-rsa-1")  # this lookup refreshes the stale cache
        await started.wait()
        with anyio.fail_after(1):  # the others must not queue behind the refresh
            assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
        release.set()
    assert prelude.calls == 2


# --- construction and clean-up ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"url": "https://a.test/jwks", "file": Path("jwks.json")}, {"url": "ftp://a.test/j"}],
    ids=["neither", "both", "not-http"],
)
def test_invalid_source_is_a_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError, match="HOOK_PRELUDE_JWKS"):
        PreludeJwks(**kwargs)


def test_source_hides_url_credentials_and_query() -> None:
    assert PreludeJwks(url=SECRET_URL).source == "http://prelude.test/.well-known/jwks.json"


@pytest.mark.anyio
async def test_aclose_leaves_an_injected_client_open() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(FakePrelude([b"{}"])))
    keys = PreludeJwks(url="https://a.test/jwks", client=client)
    await keys.aclose()
    assert not client.is_closed
    await client.aclose()


# --- a real HTTP server ----------------------------------------------------------------------


@dataclass
class TinyServer:
    url: str
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    requests: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    stop: Callable[[], None] = lambda: None


@pytest.fixture
def server() -> Iterator[TinyServer]:
    state = TinyServer(url="", body=jwks_bytes(JWKS))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            if state.delay:
                state.release.wait(state.delay)
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        if thread.is_alive():
            state.release.set()
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)

    state.stop = stop
    try:
        yield state
    finally:
        stop()


@pytest.mark.anyio
async def test_real_http_fetch_refetch_and_server_error(server: TinyServer) -> None:
    keys = PreludeJwks(url=server.url, refetch_interval=0)
    try:
        await keys.load()
        assert keys.loaded and server.requests == 1
        assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
        server.body = jwks_bytes(ROTATED)
        assert same_rsa(await keys.rsa_key("prelude-rsa-2"), OTHER_RSA)
        server.status, server.body = 500, b"oops"
        with pytest.raises(errors.InvalidSignature):
            await keys.rsa_key("prelude-rsa-3")
        assert server.requests == 3
        assert same_rsa(await keys.rsa_key("prelude-rsa-2"), OTHER_RSA)
    finally:
        await keys.aclose()


@pytest.mark.anyio
async def test_real_http_timeout_is_logged_not_fatal(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.delay = 5.0
    keys = PreludeJwks(url=server.url, timeout=0.2)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await keys.load()
    await keys.aclose()
    assert time.monotonic() - start < 2
    assert not keys.loaded
    assert "timed out after 0.2 s" in caplog.text


@pytest.mark.anyio
async def test_real_connection_refused_at_load_is_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nobody listens on it any more
    keys = PreludeJwks(url=f"http://127.0.0.1:{port}/jwks.json")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await keys.load()
    await keys.aclose()
    assert not keys.loaded
    assert "initial fetch" in caplog.text and "ConnectError" in caplog.text


@pytest.mark.anyio
async def test_real_connection_refused_on_refetch_keeps_cached_keys(
    server: TinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    keys = PreludeJwks(url=server.url, refetch_interval=0)
    try:
        await keys.load()
        server.stop()  # Prelude's JWKS endpoint goes away: connections are refused
        with (
            caplog.at_level(logging.WARNING, logger=LOGGER),
            pytest.raises(errors.InvalidSignature, match="unknown"),
        ):
            await keys.rsa_key("prelude-rsa-2")
        assert "ConnectError" in caplog.text and "'prelude-rsa-2'" in caplog.text
        assert same_rsa(await keys.rsa_key("prelude-rsa-1"), PRELUDE_RSA)
    finally:
        await keys.aclose()
