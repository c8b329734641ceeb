"""Plain helpers shared by the tests: Prelude's side of the wire, the pre-generated test keys, a
fake clock, a free port. Fixtures built on them live in conftest.py; each helper exists once."""

from __future__ import annotations

import base64
import functools
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet as JoseKeySet
from starlette.testclient import TestClient

from hook_service.collaborators import AT_REST_LABEL
from hook_service.facts.hashing import FactsKey
from hook_service.keys import lifecycle as keys
from hook_service.keys.backends.keyring import DataCipher, keyring

KEYS_DIR = Path(__file__).parent / "keys"
PRELUDE_JWKS_FILE = KEYS_DIR / "prelude_jwks.json"
PRELUDE_KID = "prelude-rsa-1"
CHALLENGE_KID = "prelude-ed-1"
API_KEY = "test-api-key-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"
USER_ID = "usr_39CfbdV8AsXQwdphtbJe4yH07aF"
TEST_KEK = bytes(range(32))  # key-encryption key of the Redis key store in tests
# HOOK_FACTS_KEY of the tests (IPs and devices are hashed under it).
TEST_FACTS_KEY = FactsKey(bytes(range(32, 64)))


def token_sealer() -> DataCipher:
    """What seals tokens at rest in the tests' Redis stores: the service's cipher under
    ``TEST_KEK``."""
    return keyring([TEST_KEK]).cipher(AT_REST_LABEL)


def load_private_key(name: str) -> Any:
    """A pre-generated test key from tests/keys/ (never generated at test time)."""
    return serialization.load_pem_private_key((KEYS_DIR / name).read_bytes(), password=None)


def rsa_private_key(name: str) -> rsa.RSAPrivateKey:
    """:func:`load_private_key` for an RSA key, typed."""
    key = load_private_key(name)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def ed25519_private_key(name: str) -> ed25519.Ed25519PrivateKey:
    """:func:`load_private_key` for an Ed25519 key, typed."""
    key = load_private_key(name)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key


cluster_urls: set[str] = set()
"""The URLs of the private Redis Cluster's nodes while it runs (conftest's ``redis_cluster``)."""


def is_cluster(url: str) -> bool:
    """Whether ``url`` is a node of the tests' Redis Cluster (clients need ``cluster=True``)."""
    return url in cluster_urls


def raw_redis(url: str) -> redis.Redis | redis.RedisCluster:
    """A plain synchronous client on ``url`` (a cluster client on a cluster node), to look at
    or alter what the stores wrote."""
    if is_cluster(url):
        return redis.RedisCluster.from_url(url, socket_timeout=5)
    return redis.Redis.from_url(url, socket_timeout=5)


def cluster_masters(url: str) -> list[redis.Redis]:
    """A plain client on each master of the cluster ``url`` is a node of (close them)."""
    client = redis.RedisCluster.from_url(url, socket_timeout=5)
    try:
        nodes = client.get_primaries()  # type: ignore[no-untyped-call]
        return [redis.Redis(host=n.host, port=n.port, socket_timeout=5) for n in nodes]
    finally:
        client.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FakeClock:
    """An injectable clock that only moves when a test says so.

    The default start is far from the real time on purpose: code that mixes the injected clock
    with the real one (e.g. Redis TTLs in RedisStore) shows up as a failure."""

    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sign_hook(
    body: bytes,
    *,
    key: str = "prelude_rsa.pem",
    kid: str = PRELUDE_KID,
    prefix: bool = True,
    salt_length: int = 32,
) -> dict[str, str]:
    """The headers Prelude sends with a hook request (contract 2.2 and 2.3)."""
    private_key = load_private_key(key)
    signature = private_key.sign(
        body,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length),
        hashes.SHA256(),
    )
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return {
        "Content-Type": "application/json",
        "User-Agent": "Prelude-SessionStepUpHook/1.0",
        "X-Webhook-Signature": ("rsassa-pss-sha256=" if prefix else "") + encoded,
        "X-Webhook-Signature-Key-Id": kid,
    }


def hook_body(
    *,
    scope: str = "transfer:write",
    user_id: str = USER_ID,
    amount: str | None = "1500",
    phone: bool = True,
    platform: str = "WEB",
    **extra: Any,
) -> bytes:
    identifiers = [{"type": "email_address", "value": "user@example.com"}]
    if phone:
        identifiers.append({"type": "phone_number", "value": "+33612345678"})
    body: dict[str, Any] = {
        "scope_requested": scope,
        "user_id": user_id,
        "identifiers": identifiers,
        "signals": {"user_agent": "Mozilla/5.0", "platform": platform, "ip": "203.0.113.42"},
        "metadata": {} if amount is None else {"amount": amount, "currency": "USD"},
    }
    body.update(extra)
    return json.dumps(body).encode()


def challenge_token(
    *,
    sub: str = "usr_39CfbdV8AsXQwdphtbJe4yH07aF",
    challenge_id: str = "chl_1",
    current_step: str = "kyc_review",
    exp: float,
    key: str = "prelude_ed25519.pem",
    kid: str = CHALLENGE_KID,
    scope_requested: str | None = "transfer:write",
    steps: Sequence[tuple[str, bool]] | None = (("verify_sms", True), ("kyc_review", False)),
) -> str:
    """A challenge token as Prelude mints it (contract 6): EdDSA JWT with the claims the JS
    SDK reads (the shape of the simulator's ``PreludeChallenge.claims``); by default the
    challenge of the example policy's ``transfer:write`` review, at its ``kyc_review`` step.
    ``steps`` are ``(key, done)`` pairs; ``None`` leaves a claim out."""
    claims: dict[str, Any] = {
        "sub": sub,
        "sid": "ses_1",
        "challenge_id": challenge_id,
        "current_step": current_step,
        "exp": int(exp),
        "jti": f"jti-{challenge_id}",
        "grant_mode": "single-use",
        "metadata": {},
    }
    if scope_requested is not None:
        claims["scope_requested"] = scope_requested
    if steps is not None:
        claims["steps"] = [
            {"order": order, "key": step, "expiration_duration": 600, "done": done}
            for order, (step, done) in enumerate(steps, start=1)
        ]
    return jwt.encode(claims, load_private_key(key), algorithm="EdDSA", headers={"kid": kid})


PROPAGATION = 1.0  # the promise: every replica applies a key set change within 1 s


def wait_for(check: Callable[[], bool], within: float = PROPAGATION) -> None:
    """Poll ``check`` until it holds; fail once ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {within} s")
        time.sleep(0.01)


def mint_token(client: TestClient, user_id: str) -> tuple[int, Any]:
    """Record a kyc_review step for ``user_id`` and ask for its token: (status, body)."""
    body = hook_body(user_id=user_id)
    assert client.post("/hooks/stepup", content=body, headers=sign_hook(body)).status_code == 200
    request = {"user_id": user_id, "challenge_id": f"chl-{user_id}", "key": "kyc_review"}
    response = client.post("/verification-token", headers=bearer(API_KEY), json=request)
    return response.status_code, response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def verify_like_prelude(token: str, jwks: dict[str, Any], now: float) -> dict[str, Any]:
    """Verify one of our verification tokens as Prelude does (contract 4): RS256 only, kid
    present in our JWKS, every time claim; with joserfc, a JOSE library independent of the
    pyjwt that signed it. Returns the claims."""
    key_set = JoseKeySet.import_key_set(jwks)  # type: ignore[arg-type]
    decoded = jose_jwt.decode(token, key_set, algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256"
    assert decoded.header["typ"] == "JWT"
    assert decoded.header["kid"] in {key["kid"] for key in jwks["keys"]}
    claims = dict(decoded.claims)
    assert claims["iat"] <= now and claims["nbf"] <= now < claims["exp"]
    return claims


def active_kid(client: TestClient) -> str:
    """The kid of the active signing key, as the admin API reports it."""
    listed = client.get("/admin/keys", headers=bearer(ADMIN_TOKEN))
    assert listed.status_code == 200
    active = [key["kid"] for key in listed.json()["keys"] if key["state"] == "active"]
    assert len(active) == 1
    kid: str = active[0]
    return kid


# --- our own signing keys (tests/keys/hook_rsa_*.pem) ---------------------------------------


@functools.cache
def hook_keys() -> tuple[rsa.RSAPrivateKey, ...]:
    """tests/keys/hook_rsa_1..16.pem, loaded once."""
    return tuple(rsa_private_key(f"hook_rsa_{i}.pem") for i in range(1, 17))


class OutOfTestKeys(Exception):
    """A test asked for more signing keys than were pre-generated for it.

    An ordinary Exception, not pytest's Failed: raised inside an app (a worker thread, the
    TestClient portal) a BaseException surfaces as an unrelated CancelledError and the message
    is lost. :meth:`KeyFactory.check` turns it into ``pytest.fail`` at teardown."""


class KeyFactory:
    """A ``new_key`` for key stores: the pre-generated signing keys (tests/keys/hook_rsa_*.pem)
    in order, all of them or those at ``indices``.

    Keys are never generated at test time (house rule): running out raises
    :class:`OutOfTestKeys` and :meth:`check` fails the test, even if the code under test
    swallowed the exception."""

    def __init__(self, indices: Sequence[int] | None = None) -> None:
        chosen = list(range(len(hook_keys()))) if indices is None else list(indices)
        self._supply = iter([hook_keys()[i] for i in chosen])
        self._count = len(chosen)
        self.exhausted: str | None = None

    def __call__(self) -> rsa.RSAPrivateKey:
        key = next(self._supply, None)
        if key is None:
            self.exhausted = (
                f"this test needs more than its {self._count} pre-generated signing key(s) "
                "(tests/keys/hook_rsa_*.pem); keys are never generated at test time: add a "
                "pre-generated key or make the test use fewer"
            )
            raise OutOfTestKeys(self.exhausted)
        return key

    def check(self) -> None:
        """Fail the test if it ever ran out of keys (fixtures call this at teardown)."""
        if self.exhausted is not None:
            pytest.fail(self.exhausted, pytrace=False)


def key_supply(indices: Sequence[int] | None = None) -> KeyFactory:
    """Shorthand for :class:`KeyFactory` (``indices`` picks and orders the keys)."""
    return KeyFactory(indices)


def no_new_key() -> rsa.RSAPrivateKey:
    raise AssertionError("no key should be generated here")


def kid_of(i: int) -> str:
    return keys.thumbprint(hook_keys()[i].public_key())


def b64u_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def private_strings(key: rsa.RSAPrivateKey) -> list[str]:
    """Renderings of the private numbers that must never show up in output."""
    nums = key.private_numbers()
    out = []
    for v in (nums.d, nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp):
        out += [str(v)[:40], format(v, "x")[:40], keys._b64u_uint(v)[:40]]
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out += [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    return out


def expected_claims(body: dict[str, Any], now: float, challenge_id: str = "chl_1") -> Any:
    """Every claim of the token in a 200 ``body`` for the kyc_review step minted at ``now``."""
    return {
        "sub": USER_ID,
        "challenge_id": challenge_id,
        "key": "kyc_review",
        "status": "completed",
        "jti": body["jti"],
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 300,
    }


def issued_claims(client: TestClient, response: Any, now: float) -> dict[str, Any]:
    """The claims of the token in a 200 ``response``, verified against our JWKS as Prelude
    would; the body's jti, kid and expires_at must describe that same token."""
    assert response.status_code == 200
    body = response.json()
    jwks = client.get("/.well-known/jwks.json").json()
    claims = verify_like_prelude(body["verification_token"], jwks, now)
    assert (claims["jti"], claims["exp"]) == (body["jti"], body["expires_at"])
    assert body["kid"] == active_kid(client)
    return claims


class ServeProcess:
    """``hook-service serve`` as a real process on a free loopback port, with exactly the
    ``HOOK_*`` variables given (none inherited); a context manager that waits for ``/readyz``
    and stops the process on exit. ``url`` is its base URL; the output goes to
    ``directory / "serve.log"``, shown when it does not come up."""

    def __init__(self, env: dict[str, str], directory: Path, start_timeout: float = 30) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("HOOK_")}
        self.env = {**inherited, **env, "HOOK_HOST": "127.0.0.1", "HOOK_PORT": str(self.port)}
        self.directory = directory
        self.log = directory / "serve.log"
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServeProcess:
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "hook_service", "serve"],
                env=self.env,
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                pytest.fail(f"serve did not become ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def __exit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout=10)


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class ServiceProcess:
    """A service process started by a test (``hook-service serve``, uvicorn...) on ``port``:
    its base URL and everything it writes to stdout and stderr, line by line. Use as a context
    manager: it waits for ``/healthz`` on entry and terminates the process on exit."""

    def __init__(self, command: Sequence[str], env: dict[str, str], port: int, cwd: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._output: queue.Queue[str] = queue.Queue()
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # bytes: a raw \r must show in its line, not split it
        )

    def __enter__(self) -> ServiceProcess:
        stdout = self.process.stdout
        assert stdout is not None

        def drain() -> None:  # a full pipe would block the service
            for line in stdout:
                self._output.put(line.decode("utf-8", "surrogateescape"))

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.__exit__()
                pytest.fail("the service did not start:\n" + "".join(self.read(0.5)))
            time.sleep(0.1)

    def read(self, quiet: float = 0.3, within: float = 10) -> list[str]:
        """Every line so far, waiting until none came for ``quiet`` seconds (at most
        ``within`` seconds)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                self.lines.append(self._output.get(timeout=quiet))
            except queue.Empty:
                break
        return self.lines

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process, timeout=15)


RAW_IP = "203.0.113.42"  # the IP and user agent of hook_body(): never stored or shown raw
RAW_UA = "Mozilla/5.0"


def seed_review(
    client: TestClient,
    user_id: str = USER_ID,
    *,
    scope: str = "transfer:write",
    steps: tuple[str, ...] = ("kyc_review",),
    window: float = 600,
) -> None:
    """What the hook records in the facts for a ``review`` (observe, then settle), done
    through the app's own facts store and attempt factory, on the app's event loop."""
    services = client.app.state.services  # type: ignore[attr-defined]
    now = services.clock()
    signals = {"ip": RAW_IP, "user_agent": RAW_UA, "platform": "WEB"}
    attempt = services.attempts.attempt(scope, signals, now)
    client.portal.call(services.facts.observe, user_id, attempt, now)  # type: ignore[union-attr]
    settled = attempt.settled("review", steps, now + window)
    client.portal.call(services.facts.settle, user_id, settled, now)  # type: ignore[union-attr]
