"""``python -m bench.redis_clients``: what one Redis script call costs the client (issue 15.4).

One private redis-server on loopback, the store's real claim script (``CLAIM_LUA``: a repeated
claim of an already claimed challenge, which reads the token record and re-sets its TTL, with
the key-set guard, realistic keys and a sealed-token-sized argument), and for each client:
CPU µs per call in this process (``time.process_time``) with one caller and with 8 concurrent
callers on one event loop (uvloop, as ``serve`` runs), and calls/s with those 8; best of
several rounds, the clients interleaved, so a loaded machine costs rounds, not figures. Then
each client's guarantees are checked against the server: a per-call timeout (the server
paused), and calls after a restart of the redis-server (connections gone, script cache empty).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import importlib.util
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import redis
import uvloop
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from hook_service._redis import ERRORS, RedisSite
from hook_service._redis_batch import BatchingRedis
from hook_service.store.redis_scripts import CLAIM_LUA, record_key, token_key

from .raw_redis import Args, Call, RawClient
from .servers import HOST, Process, Processes

CALLERS = 8
SEQUENTIAL_CALLS = 1500
CALLS_PER_CALLER = 250
ROUNDS = 5
TIMEOUT = 0.5  # the store's default
Client = Callable[[int, float], AbstractAsyncContextManager[Call]]


class Batcher:
    """Explicit pipelining over redis-py: the calls made in one loop iteration (the 8 callers)
    go out as one pipeline (``transaction=False``: EVALSHA each, EVAL again after NOSCRIPT)."""

    def __init__(self, client: Redis, script: str) -> None:
        self._client, self._script = client, script
        self._sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324
        self._batch: list[tuple[Sequence[str], Args, asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def call(self, keys: Sequence[str], args: Args) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._batch.append((keys, args, future))
        if len(self._batch) == 1:
            # The first call of a batch: the flush runs after the callers already woken in
            # this loop iteration (the last batch's 8) have added theirs.
            task = asyncio.create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return await future

    async def _flush(self) -> None:
        batch, self._batch = self._batch, []
        try:
            replies = await self._run("evalsha", self._sha, batch)
            if any(isinstance(r, NoScriptError) for r in replies):
                replies = await self._run("eval", self._script, batch)
        except ERRORS as exc:
            replies = [exc] * len(batch)
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _run(self, verb: str, script: str, batch: list[Any]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                getattr(pipe, verb)(script, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies


def _redis_py(single: bool, batched: bool = False, lane: bool = True) -> Client:
    @asynccontextmanager
    async def make(port: int, timeout: float) -> AsyncIterator[Call]:
        site = RedisSite(f"redis://{HOST}:{port}/0")
        made = site.client(
            timeout=timeout, max_connections=None if single else 50, retry_closed=True
        )
        assert isinstance(made, BatchingRedis)
        if not lane:
            made.lane = None  # every call through redis-py's pool, as before the lane
        client: Redis = made
        if single:
            client = Redis(connection_pool=made.connection_pool, single_connection_client=True)
        script = client.register_script(CLAIM_LUA)
        try:
            if batched:
                yield Batcher(client, CLAIM_LUA).call
            else:
                yield lambda keys, args: script(keys=keys, args=args)
        finally:
            await client.aclose()
            if client is not made:  # the single connection's client leaves the pool open
                await made.aclose()

    return make


@asynccontextmanager
async def coredis_pool(port: int, timeout: float) -> AsyncIterator[Call]:
    """coredis (RESP3, a multiplexing pool of 50), one retry after a connection error."""
    coredis = importlib.import_module("coredis")
    retry = importlib.import_module("coredis.retry").ConstantRetryPolicy(
        (coredis.exceptions.ConnectionError,), retries=1, delay=0
    )
    options = {"stream_timeout": timeout, "connect_timeout": timeout, "pool_timeout": timeout}
    client = coredis.Redis(
        HOST, port, decode_responses=True, max_connections=50, retry_policy=retry, **options
    )
    async with client:
        script = client.register_script(CLAIM_LUA)
        yield lambda keys, args: script(keys=keys, args=args)


TODAY = "redis-py + lane (today)"
CLIENTS: dict[str, Client] = {
    # The store's own client (RedisSite.client: blocking pool of 50, hiredis packing, one retry
    # after a closed connection, its script calls on the lane, hook_service/_redis_lane.py);
    # the same client without the lane (every call through the pool); the same options on one
    # connection behind a lock, and that connection with the callers' calls gathered into
    # pipelines.
    TODAY: _redis_py(single=False),
    "redis-py, pool": _redis_py(single=False, lane=False),
    "redis-py, single connection": _redis_py(single=True),
    "redis-py, single connection + pipelining": _redis_py(single=True, batched=True),
    # Not a dependency: the `bench` extra (pip install -e '.[bench]'); its row is left out without.
    **({"coredis, pool": coredis_pool} if importlib.util.find_spec("coredis") else {}),
    "raw RESP + hiredis.Reader": lambda port, timeout: RawClient(port, CLAIM_LUA, timeout),
}
# Read from the libraries' APIs and docs, not run here (the service's tests run redis-py's).
TOPOLOGY = {"redis-py": "Sentinel, Cluster", "coredis": "Sentinel, Cluster", "raw": "neither"}
TOPOLOGY[TODAY] = "Sentinel (its lane), Cluster (redis-py's, no lane)"


class Claim:
    """A repeated claim of a claimed challenge: the store's keys and arguments (a token's TTL
    re-set, the key-set guard, a sealed token of about 950 characters)."""

    def __init__(self, port: int) -> None:
        user, challenge, self.port = "user-" + secrets.token_hex(8), secrets.token_hex(8), port
        self.now_ms = int(time.time() * 1000)
        self.keys = [record_key("hook:", user, "kyc_review"), "hook:keys:version"]
        self.keys.insert(1, token_key("hook:", user, "kyc_review", challenge))
        expiry, self.jti = self.now_ms // 1000 + 600, secrets.token_hex(16)
        sealed = secrets.token_urlsafe(700)
        self.args: list[int | str] = [self.now_ms, challenge, sealed, self.jti, "k1", expiry]
        self.args += ["", "7"]  # any scope; the key-set version the guard expects
        self.seed()

    def seed(self) -> None:
        """The pending step and the key-set version (again after a restart); the first claim."""
        with redis.Redis(host=HOST, port=self.port, decode_responses=True) as admin:
            admin.hset(self.keys[0], mapping={"e": self.now_ms + 3_600_000, "s": "transfer:write"})
            admin.set(self.keys[2], "7")
            assert admin.eval(CLAIM_LUA, 3, *self.keys, *self.args)[0] == 1
            admin.script_flush()  # EVAL cached it: the clients' first EVALSHA meets NOSCRIPT

    async def call(self, call: Call) -> None:
        reply = await call(self.keys, self.args)
        if not isinstance(reply, list) or reply[0] != 2 or reply[2] != self.jti:
            raise RuntimeError(f"unexpected claim reply {reply!r:.200}")


async def _round(call: Call, claim: Claim, callers: int, calls: int) -> tuple[float, float]:
    """CPU µs per call and calls/s for ``callers`` concurrent callers of ``calls`` calls."""

    async def caller() -> None:
        for _ in range(calls):
            await claim.call(call)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / (callers * calls) * 1e6, callers * calls / wall


async def measure(port: int) -> dict[str, tuple[float, float, float]]:
    """Per client: best CPU µs per call with one caller and with 8, best calls/s with 8."""
    claim = Claim(port)
    best = {name: (float("inf"), float("inf"), 0.0) for name in CLIENTS}
    async with AsyncExitStack() as stack:
        calls = {n: await stack.enter_async_context(c(port, TIMEOUT)) for n, c in CLIENTS.items()}
        for call in calls.values():  # warm-up: connections made, the script loaded
            await _round(call, claim, CALLERS, 20)
        for _ in range(ROUNDS):
            for name, call in calls.items():
                one, _ = await _round(call, claim, 1, SEQUENTIAL_CALLS)
                many, rate = await _round(call, claim, CALLERS, CALLS_PER_CALLER)
                old = best[name]
                best[name] = (min(old[0], one), min(old[1], many), max(old[2], rate))
    return best


async def guarantees(make: Client, procs: Processes, server: Process) -> tuple[str, Process]:
    """A call while the server is paused fails within its timeout (0.15 s), the next one
    succeeds; after a restart (connections gone, script cache empty) the first two calls."""
    claim, notes = Claim(server.port), []
    async with make(server.port, 0.15) as call:
        await claim.call(call)
        with redis.Redis(host=HOST, port=server.port) as admin:
            admin.client_pause(600, all=False)  # WRITE: scripts wait
        started = time.monotonic()
        try:
            await call(claim.keys, claim.args)
            notes.append("timeout NOT honoured")
        except (*ERRORS, TimeoutError, ConnectionError) as exc:
            notes.append(f"timeout: {type(exc).__name__} after {time.monotonic() - started:.2f} s")
        await asyncio.sleep(0.7)
        await claim.call(call)
        server = restart(procs, server)
        claim.seed()
        for attempt in ("1st", "2nd"):
            try:
                await claim.call(call)
                notes.append(f"{attempt} call after restart ok")
            except Exception as exc:
                notes.append(f"{attempt} call after restart: {type(exc).__name__}")
    return "; ".join(notes), server


def restart(procs: Processes, server: Process) -> Process:
    """The redis-server stopped and started again on its port (empty: the bench saves none)."""
    procs.stop(server)
    argv = [shutil.which("redis-server") or "redis-server", "--port", str(server.port)]
    argv += ["--bind", HOST, "--save", "", "--dir", str(server.log.parent)]
    with server.log.open("ab") as log:
        popen = subprocess.Popen(argv, stdout=log, stderr=log)
    again = Process(server.name, popen, server.port, server.log)
    procs.started.append(again)  # stopped by procs.stop_all
    for _ in range(200):
        again.check_alive()
        with contextlib.suppress(redis.RedisError), redis.Redis(port=server.port) as probe:
            if probe.ping():
                return again
        time.sleep(0.05)
    raise RuntimeError("redis-server did not come back")


def report(workdir: Path) -> list[dict[str, Any]]:
    """Measure every client on a private redis-server in ``workdir``; print a Markdown table
    and return its rows."""
    procs = Processes(workdir)
    try:
        server = procs.redis("redis_clients")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            figures, checks = runner.run(measure(server.port)), {}
            for name, make in CLIENTS.items():
                checks[name], server = runner.run(guarantees(make, procs, server))
    finally:
        procs.stop_all()
    rows: list[dict[str, Any]] = []
    print("| client | CPU µs/call, 1 caller | at 8 | calls/s at 8 | ratio | guarantees seen |")
    print("|---|---|---|---|---|---|")
    for name, (one, many, rate) in figures.items():
        topology = TOPOLOGY.get(name) or TOPOLOGY.get(name.split(",")[0], "neither")
        seen = f"Lua by EVALSHA; {checks[name]}; {topology}"
        ratio = rate / figures[TODAY][2]
        rows.append({"client": name, "cpu_us_1": one, "cpu_us_8": many, "rate_8": rate})
        rows[-1] |= {"ratio": ratio, "guarantees": seen}
        print(f"| {name} | {one:.1f} | {many:.1f} | {rate:,.0f} | {ratio:.2f} | {seen} |")
    return rows


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hook-bench-redis-") as path:
        report(Path(path))
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
