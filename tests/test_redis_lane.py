"""hook_service/_redis_lane.py: a client's script calls on one multiplexed connection give the
callers what redis-py gives them (replies, exception classes, timeouts, reconnects), on a real
redis-server each time, with the asyncio event loop and with uvloop (what ``serve`` runs)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import ipaddress
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import AuthenticationError, NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hook_service import _redis_lane as lane_module
from hook_service._redis import RedisSite
from hook_service._redis_batch import BatchingRedis
from tests.store.support import RedisServer
from tests.support import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SCRIPT = r"""
local a = ARGV[1]
if a == 'fail' then return redis.error_reply('ERR asked to fail') end
if a == 'readonly' then return redis.error_reply('READONLY not against a replica.') end
if a == 'nest' then return {1, {2, 'x', {}}, false, '\237\160\128', -7, {err='in'}, {ok='FINE'}} end
if a == 'nil' then return nil end
if a == 'undecodable' then return '\237' end
if a == 'status' then return {ok='FINE'} end
if a == 'big' then return 2^53 end
if a == 'busy' then
  local t = redis.call('TIME'); local until_us = t[1] * 1e6 + t[2] + tonumber(ARGV[2]) * 1000
  repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= until_us
  return 'busy done'
end
if a == 'set' then redis.call('SET', KEYS[1], ARGV[2]) return redis.call('GET', KEYS[1]) end
return a
"""
CASES = ["a", "nest", "nil", "undecodable", "fail", "readonly", "status", "big", "x\udcff", "ü"]


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return ("asyncio", {"use_uvloop": request.param == "uvloop"})


def laned(url: str, timeout: float = 1.0, **options: Any) -> BatchingRedis:
    client = RedisSite(url).client(timeout=timeout, **options)
    assert isinstance(client, BatchingRedis) and client.lane is not None
    return client


def described(value: Any) -> Any:
    """``value`` with each exception in it (nested error replies too) as its class and message."""
    if isinstance(value, Exception):
        return (type(value).__name__, str(value))
    if isinstance(value, list):
        return [described(item) for item in value]
    return value


async def outcomes(client: aredis.Redis, args: list[str]) -> list[Any]:
    """Each call's reply or error, one call at a time."""
    script, seen = client.register_script(SCRIPT), []
    for arg in args:
        try:
            seen.append(("reply", described(await script(keys=["k"], args=[arg]))))
        except Exception as exc:
            seen.append(described(exc))
    return seen


async def lane_clients(url: str) -> list[dict[str, str]]:
    """CLIENT LIST entries of connections whose last command was EVALSHA."""
    with redis.Redis.from_url(url, decode_responses=True) as admin:
        return [c for c in admin.client_list() if c["cmd"] == "evalsha"]


async def test_replies_and_errors_are_those_redis_py_gives(redis_url: str) -> None:
    through_pool = RedisSite(redis_url).client(timeout=1.0)
    assert isinstance(through_pool, BatchingRedis)
    through_pool.lane = None  # redis-py's own connections and parser
    client = laned(redis_url)
    try:
        theirs = await outcomes(through_pool, CASES)
        assert await outcomes(client, CASES) == theirs
        # What was compared: integers, nested arrays, nil, lone surrogates both ways (the
        # client's surrogatepass), redis-py's error classes, an error inside an array.
        nested = [1, [2, "x", []], None, "\ud800", -7, ("ResponseError", "in"), "FINE"]
        assert theirs[:3] == [("reply", "a"), ("reply", nested), ("reply", None)]
        assert [kind for kind, _ in theirs[3:6]] == [
            "UnicodeDecodeError",
            "ResponseError",
            "ReadOnlyError",
        ]
        assert theirs[6:] == [("reply", r) for r in ("FINE", 9007199254740992, "x\udcff", "ü")]
        with pytest.raises(NoScriptError):  # AsyncScript loads the script on this class
            await client.evalsha("0" * 40, 0)
        assert await asyncio.gather(*(client.register_script(SCRIPT)(args=[w]) for w in "xyz")) == [
            "x",
            "y",
            "z",
        ]
    finally:
        await client.aclose()
        await through_pool.aclose()


async def test_connects_lazily_with_the_urls_password_database_and_client_name(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(password="lane-pw")
    url = f"redis://:lane-pw@127.0.0.1:{server.port}/3?client_name=lane-test"
    client = laned(url)
    try:
        assert await lane_clients(server.url) == []  # nothing until the first call
        script = client.register_script(SCRIPT)
        assert await script(keys=["written"], args=["set", "v"]) == "v"
        (seen,) = await lane_clients(server.url)
        assert seen["name"] == "lane-test" and seen["db"] == "3"
        with redis.Redis.from_url(server.url.removesuffix("/0") + "/3") as admin:
            assert admin.get("written") == b"v"
    finally:
        await client.aclose()
    wrong = laned(f"redis://:wrong@127.0.0.1:{server.port}/0")
    try:
        with pytest.raises(AuthenticationError):
            await wrong.evalsha("0" * 40, 0)
    finally:
        await wrong.aclose()


async def test_a_unix_socket(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    path = tmp_path / "redis.sock"
    redis_server_factory("--unixsocket", str(path), "--unixsocketperm", "700")
    client = laned(f"unix://{path}?db=2")
    try:
        assert await client.register_script(SCRIPT)(keys=["u"], args=["set", "1"]) == "1"
    finally:
        await client.aclose()


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_with_the_urls_ssl_settings(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    cert, key = _certificate(tmp_path)
    port = free_port()
    tls = ("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    redis_server_factory(*tls, "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")
    client = laned(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}")
    try:
        assert await client.register_script(SCRIPT)(args=["over tls"]) == "over tls"
    finally:
        await client.aclose()
    # The pool's SSL settings are the lane's: without the CA the server is not trusted.
    untrusted = laned(f"rediss://127.0.0.1:{port}/0")
    try:
        with pytest.raises(RedisConnectionError):
            await untrusted.register_script(SCRIPT)(args=["x"])
    finally:
        await untrusted.aclose()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_a_server_that_never_answers_the_handshake_fails_within_the_timeout(
    silent_port: int,
) -> None:
    client = laned(f"redis://:pw@127.0.0.1:{silent_port}/0", timeout=0.2)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RedisTimeoutError):
            await client.evalsha("0" * 40, 0)
        assert loop.time() - started < 0.6
    finally:
        await client.aclose()


async def test_a_paused_server_times_the_call_out_and_its_late_reply_reaches_nobody(
    redis_url: str,
) -> None:
    client = laned(redis_url, timeout=0.3, retry_closed=True)
    script = client.register_script(SCRIPT)
    try:
        assert await script(args=["warm"]) == "warm"
        (before,) = await lane_clients(redis_url)
        with redis.Redis.from_url(redis_url) as admin:
            admin.client_pause(450, all=False)  # WRITE: scripts wait, then run
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RedisTimeoutError):  # not retried: a timeout is never sent again
            await script(args=["late"])
        took = loop.time() - started
        assert 0.25 < took < 0.45, took
        # The connection was dropped: the next call, on a new one, gets its own reply even
        # though Redis may still answer the first.
        assert await script(args=["next"]) == "next"
        (after,) = await lane_clients(redis_url)
        assert after["id"] != before["id"]
    finally:
        await client.aclose()


async def test_callers_that_give_up_leave_the_others_their_replies(redis_url: str) -> None:
    client = laned(redis_url, timeout=2.0)
    script = client.register_script(SCRIPT)
    try:
        await script(args=["warm"])
        # Sent, then given up while Redis runs it (the decider's own deadline).
        slow = asyncio.ensure_future(script(args=["busy", "300"]))
        await asyncio.sleep(0.05)
        others = [asyncio.ensure_future(script(args=[str(i)])) for i in range(3)]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await slow
        assert await asyncio.gather(*others) == ["0", "1", "2"]
        cancelled = asyncio.ensure_future(script(args=["cancelled"]))
        after = asyncio.ensure_future(script(args=["after"]))
        await asyncio.sleep(0)
        cancelled.cancel()
        assert await after == "after"
        assert await script(args=["still in step"]) == "still in step"
    finally:
        await client.aclose()


async def test_a_call_that_met_a_restart_is_sent_again_only_with_retry_closed(
    redis_server: RedisServer, redis_url: str
) -> None:
    for retry in (True, False):
        client = laned(redis_url, retry_closed=retry)
        script = client.register_script(SCRIPT)
        try:
            assert await script(args=["warm"]) == "warm"
            # Restarted while the loop does not run: the call is written on the connection the
            # restart closed before the client has seen the close (as under load).
            redis_server.stop()
            redis_server.start()
            if retry:  # once more, on a fresh connection (and the script loaded again)
                assert await script(args=["again"]) == "again"
            else:
                with pytest.raises(RedisConnectionError):
                    await script(args=["again"])
            assert await script(args=["later"]) == "later"
        finally:
            await client.aclose()


async def test_an_idle_connection_closed_by_a_restart_is_made_again(
    redis_server: RedisServer, redis_url: str
) -> None:
    client = laned(redis_url)  # no retry_closed: the call must not need one
    script = client.register_script(SCRIPT)
    try:
        assert await script(args=["before"]) == "before"
        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(redis_server.start)
        await asyncio.sleep(0.05)  # the close reaches the client
        assert await script(args=["after"]) == "after"
    finally:
        await client.aclose()


async def test_readonly_on_a_single_server_is_redis_pys_read_only_error(redis_url: str) -> None:
    client = laned(redis_url, retry_closed=True)
    script = client.register_script(SCRIPT)
    try:
        with pytest.raises(ReadOnlyError):
            await script(args=["readonly"])
        (still,) = await lane_clients(redis_url)  # the connection is kept, as redis-py keeps it
        assert await script(args=["ok"]) == "ok"
        assert [c["id"] for c in await lane_clients(redis_url)] == [still["id"]]
    finally:
        await client.aclose()


async def test_aclose_closes_the_connection_without_a_resource_warning(redis_url: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = laned(redis_url)
        assert await client.register_script(SCRIPT)(args=["x"]) == "x"
        assert len(await lane_clients(redis_url)) == 1
        await client.aclose()
        await asyncio.sleep(0.05)
        assert await lane_clients(redis_url) == []
        del client
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_each_call_is_recorded_as_redis_py_records_a_command(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py's observability hooks (no-ops unless its OpenTelemetry metrics are enabled):
    # the lane calls them once per call, as redis-py's execute_command does.
    seen: list[tuple[str, Any]] = []

    async def duration(command: str, seconds: float, host: Any, port: Any, db: str) -> None:
        seen.append(("duration", (command, host, port, db)))

    async def error(*args: Any, **kwargs: Any) -> None:
        seen.append(("error", type(args[4]).__name__))

    monkeypatch.setattr(lane_module, "record_operation_duration", duration)
    monkeypatch.setattr(lane_module, "record_error_count", error)
    client = laned(redis_url)
    script = client.register_script(SCRIPT)
    try:
        await script.registered_client.script_load(SCRIPT)
        await asyncio.gather(script(args=["a"]), script(args=["b"]))
        with pytest.raises(ResponseError):
            await script(args=["fail"])
    finally:
        await client.aclose()
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    assert seen == [("duration", ("EVALSHA", "127.0.0.1", port, "0"))] * 2 + [
        ("error", "ResponseError")
    ]


async def test_a_reply_nobody_asked_for_drops_the_connection(redis_url: str) -> None:
    client = laned(redis_url)
    script = client.register_script(SCRIPT)
    try:
        assert await script(args=["a"]) == "a"
        (before,) = await lane_clients(redis_url)
        assert client.lane is not None and client.lane._link is not None
        client.lane._link.transport.write(b"PING\r\n")  # a reply the lane never asked for
        await asyncio.sleep(0.05)
        assert client.lane._link is None
        assert await script(args=["b"]) == "b"  # on a new connection
        (after,) = await lane_clients(redis_url)
        assert after["id"] != before["id"]
    finally:
        await client.aclose()


COUNTING = "if ARGV[1] == 'bad' then return '\\237' end return redis.call('INCR', KEYS[1])"


@pytest.mark.parametrize("retry_closed", [False, True])
async def test_an_undecodable_reply_fails_its_caller_alone_and_runs_nothing_again(
    redis_url: str, retry_closed: bool
) -> None:
    # hiredis reads a reply that is not UTF-8 whole and stays in step: the calls written
    # behind it ran, and must get their replies, not a dropped connection and a second run.
    client = laned(redis_url, retry_closed=retry_closed)
    script = client.register_script(COUNTING)
    try:
        await script(keys=["count"], args=["warm"])
        await client.delete("count")
        results = await asyncio.gather(
            script(keys=["count"], args=["bad"]),
            *[script(keys=["count"], args=["ok"]) for _ in range(7)],
            return_exceptions=True,
        )
        assert isinstance(results[0], UnicodeDecodeError)
        replies = results[1:]
        assert not [r for r in replies if isinstance(r, BaseException)]
        assert sorted(replies) == [1, 2, 3, 4, 5, 6, 7]  # type: ignore[type-var]
        assert await client.get("count") == "7"
    finally:
        await client.aclose()


async def test_calls_racing_aclose_fail_and_leave_no_connection_behind(redis_url: str) -> None:
    # The calls queued (one turn), then aclose before, during and after their connect; a
    # call made after aclose returns may connect again, as through redis-py's pool.
    before = {c["id"] for c in await lane_clients(redis_url)}  # other tests' connections
    for spins in range(1, 7):
        client = laned(redis_url, retry_closed=True)
        script = client.register_script(SCRIPT)
        calls = [asyncio.ensure_future(script(args=[str(i)])) for i in range(5)]
        for _ in range(spins):
            await asyncio.sleep(0)
        await client.aclose()
        for call in calls:
            with contextlib.suppress(RedisConnectionError):
                await call
        await asyncio.sleep(0.05)
        assert {c["id"] for c in await lane_clients(redis_url)} <= before, spins
        # And the client works again afterwards, as a redis-py client does.
        assert await script(args=["again"]) == "again"
        await client.aclose()
