"""The :class:`Bench`: one benchmark run's state and the ways its runs load a server.

It holds what every group of runs shares (bench/floors.py, bench/runs.py,
bench/topologies.py, bench/scale.py): the options, the work directory and its processes,
the Prelude-like keys and API key made for the run, the service's ``HOOK_*`` variables, and
where the token pools' pending steps are recorded. Its methods write request pools, warm a
server, load it with wrk (on evenly loaded workers where there are several), and give the
tokens runs their pools of distinct pending steps.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from hook_service._redis_target import RedisTarget
from hook_service.simulator.prelude import PreludeKeys

from . import prepare, scale
from ._log import log
from .cpu import CpuWindow
from .load import BenchError, WrkResult, run_wrk
from .pending import record_pending
from .servers import Process, Processes, worker_pids

BALANCE_ATTEMPTS = 4
WARMUP_REQUESTS = 200


class Bench:
    """One benchmark run; :func:`bench.runs.figures` runs it and returns the figures."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.duration: float = args.duration
        self.cluster: bool = args.cluster
        self.sentinel: bool = args.sentinel
        self.redis_target: RedisTarget | str = ""  # where tokens_once records pending steps
        self.connections: int = args.connections
        # --scale (default) adds bench/scale.py's figures; --scale-only gives them alone.
        self.scale: scale.Sizes | None = None
        if args.scale or args.scale_only:
            self.scale = scale.Sizes.quick() if args.quick else scale.Sizes.full()
        self.scale_only: bool = args.scale_only
        self.workdir = workdir
        self.procs = Processes(workdir)
        self.keys = PreludeKeys.generate()
        self.api_key = secrets.token_urlsafe(24)
        self.token_index = 0  # token subjects are used once across the whole run
        jwks_file = workdir / "prelude_jwks.json"
        jwks_file.write_text(json.dumps(self.keys.jwks()))
        self.env = {
            "HOOK_PRELUDE_JWKS_FILE": str(jwks_file),
            "HOOK_API_KEYS": self.api_key,
            "HOOK_KEYS_DIR": str(workdir / "keys"),
            # With HOOK_REDIS_URL set the key store is Redis, as for several replicas: the
            # private keys are sealed under a key-encryption key made for this run.
            "HOOK_KEY_ENCRYPTION_KEYS": base64.b64encode(secrets.token_bytes(32)).decode(),
            "HOOK_FACTS_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }

    def pool(self, name: str, requests: Iterator[prepare.PoolRequest]) -> Path:
        """``requests`` written as the pool ``name`` of the work directory, for wrk."""
        path = self.workdir / f"{name}.pool"
        prepare.write_pool(path, requests)
        return path

    def load(
        self,
        server: Process,
        pool: Path,
        *,
        once: bool = False,
        rule: str | None = None,
        connections: int | None = None,
        duration: float | None = None,
    ) -> WrkResult:
        """wrk on ``server`` with ``pool`` for ``duration`` s, by default the run's (see
        :func:`run_wrk`), with the server's and the machine's CPU during the run."""
        result = run_wrk(
            server.url,
            pool,
            duration=self.duration if duration is None else duration,
            connections=connections or self.connections,
            once=once,
            rule=rule,
            window=CpuWindow(worker_pids(server)),
        )
        server.check_alive()
        return result

    def warm(self, server: Process, pool: Path, requests: int = WARMUP_REQUESTS) -> None:
        """``requests`` sequential requests from ``pool`` first: imports, caches,
        connections (a whole pool: each of its calls then has its replay record)."""
        pooled = prepare.read_pool(pool)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for index in range(requests):
                request = pooled[index % len(pooled)]
                _send(client, request)

    def load_hook(
        self, server: Process, pool: Path, connections: int, duration: float | None = None
    ) -> WrkResult:
        """The hook (rule ``otp-only``) at ``connections``, on evenly loaded workers."""
        return self.balanced(
            lambda: self.load(
                server, pool, rule="otp-only", connections=connections, duration=duration
            ),
        )

    def load_tokens(
        self,
        server: Process,
        sign_rate: float,
        form: prepare.TokenForm,
        connections: int | None = None,
        duration: float | None = None,
    ) -> WrkResult:
        """:meth:`tokens_once` on evenly loaded workers (:meth:`balanced`)."""
        return self.balanced(
            lambda: self.tokens_once(server, sign_rate, form, connections, duration=duration),
        )

    def balanced(self, run: Callable[[], WrkResult]) -> WrkResult:
        """``run()``, run again while the workers' share of the load is uneven.

        uvicorn's workers accept from one shared socket and wrk opens all its connections at
        once, so one worker sometimes accepts every connection while the other idles (seen
        here with 32 connections). A deployment's connections come and go and even out; a run
        where a worker used less than half the CPU of the other is not that steady state."""
        for attempt in range(1, BALANCE_ATTEMPTS + 1):
            result = run()
            used = result.worker_cpu  # each worker's CPU during the run (Bench.load)
            if not used:
                raise BenchError("no CPU measured for the run (no BENCH_READY from pool.lua)")
            if min(used) >= 0.5 * max(used):
                return result
            shares = ", ".join(f"{u:.1f}" for u in used)
            log(f"  uneven workers (CPU s: {shares}), attempt {attempt}/{BALANCE_ATTEMPTS}")
        raise BenchError(f"the workers never shared the load in {BALANCE_ATTEMPTS} runs")

    def tokens_once(
        self,
        server: Process,
        sign_rate: float,
        form: prepare.TokenForm,
        connections: int | None = None,
        duration: float | None = None,
    ) -> WrkResult:
        """Tokens/s for distinct pending steps prepared in advance (a retry would skip signing:
        the service returns the same token), sized so the pool outlasts the run (``duration``
        s, by default the run's); ``form`` is the request form (design.md: explicit fields, or
        the frontend's challenge token)."""
        seconds = self.duration if duration is None else duration
        count = int(sign_rate * (os.cpu_count() or 1) * seconds * 1.2) + 1000
        start, self.token_index = self.token_index, self.token_index + count + WARMUP_REQUESTS
        # Challenge tokens live 10 minutes (as Prelude's); the pool is used at once.
        now = time.time()
        users = [prepare.token_subject(i)[0] for i in range(start, start + count + WARMUP_REQUESTS)]
        asyncio.run(record_pending(self.redis_target, users))
        warmup = [
            prepare.token_request(
                self.keys, start + count + i, api_key=self.api_key, now=now, form=form
            )
            for i in range(WARMUP_REQUESTS)
        ]
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for request in warmup:
                _send(client, request)
        pool = self.pool(
            f"tokens_{form}_{server.name}",
            (
                prepare.token_request(self.keys, i, api_key=self.api_key, now=now, form=form)
                for i in range(start, start + count)
            ),
        )
        return self.load(server, pool, once=True, connections=connections, duration=seconds)


def _send(client: httpx.Client, request: prepare.PoolRequest) -> None:
    response = client.request(
        request.method,
        request.path,
        content=request.body.encode() or None,
        headers=dict(request.headers),
    )
    if not response.is_success:
        raise BenchError(f"warm-up {request.path}: {response.status_code} {response.text[:300]}")
