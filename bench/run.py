"""``make bench``: measure the service against its floors in one run and print the ratios.

Everything runs on this machine over loopback: a private redis-server, the service under
``hook-service serve`` configured through ``HOOK_*`` variables like a deployment, the floors
(bench/bare_app.py: bare Starlette routes doing only the unavoidable work) under the same server
settings, and wrk replaying pools of pre-signed requests (the load generator does no crypto).
See docs/benchmarks.md for the figures and goals.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from hook_service._redis_target import RedisTarget
from hook_service.simulator.prelude import PreludeKeys

from . import cluster, prepare, redis_clients, scale
from ._log import log
from .facts import bytes_per_user
from .floors import floor_rates
from .load import BenchError, WrkResult, require_wrk, rsa_sign_rate, run_wrk
from .pending import REDIS_STEPS, bytes_per_step, record_pending
from .report import Figure, markdown_table, replace_block, text_table
from .servers import (
    Process,
    Processes,
    cpu_seconds,
    rss_bytes,
    worker_pids,
)
from .topologies import cluster_figures, sentinel_figures

# Where the figures of the last run are kept (--update-docs with no file).
BENCH_DOC = Path(__file__).parents[1] / "docs" / "benchmarks.md"
JWKS_PATH = "/.well-known/jwks.json"
SCALING_CONNECTIONS = 32
BALANCE_ATTEMPTS = 4
HOOK_POOL_SIZE = 2000  # distinct signed hook calls; wrk cycles through them
WARMUP_REQUESTS = 200


class Bench:
    """One benchmark run; :meth:`run` returns the figures."""

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
    ) -> WrkResult:
        result = run_wrk(
            server.url,
            pool,
            duration=self.duration,
            connections=connections or self.connections,
            once=once,
            rule=rule,
        )
        server.check_alive()
        return result

    def run(self) -> list[Figure]:
        redis = self.procs.redis()
        self.env["HOOK_REDIS_URL"] = self.redis_target = f"redis://127.0.0.1:{redis.port}/0"
        log("raw RSA-2048 PKCS#1 v1.5 SHA-256 signing in this process (the old floor)")
        sign_rate = rsa_sign_rate(min(self.duration, 5.0))
        if self.scale is not None and self.scale_only:
            return scale.figures(self, self.scale, sign_rate, record_pending)
        pair_rate = rsa_sign_rate(min(self.duration, 5.0), ed25519_verify=True)
        log(f"  {sign_rate:.0f} signs/s, {pair_rate:.0f} with an Ed25519 verify; request pools")
        jwks_pool = self.pool("jwks", iter([prepare.PoolRequest("GET", JWKS_PATH, "")]))
        small = self.pool("hook", prepare.hook_pool(self.keys, HOOK_POOL_SIZE, amount="50"))
        large = self.pool("hook_kyc", prepare.hook_pool(self.keys, HOOK_POOL_SIZE, amount="5000"))

        floors = floor_rates(self, small)

        log("service: hook, custom step, JWKS, tokens (hook-service serve, 1 worker)")
        service = self.procs.serve("service", self.env)
        self.warm(service, small)
        self.warm(service, large)
        self.warm(service, jwks_pool)
        # The example policy's rules: otp-only (no custom step), large-transfer (kyc_review).
        hook = self.load(service, small, rule="otp-only")
        hook_kyc = self.load(service, large, rule="large-transfer")
        jwks = self.load(service, jwks_pool)
        tokens = self.load_tokens(service, sign_rate, "fields")
        tokens_jwt = self.load_tokens(service, pair_rate, "challenge_token")
        # The scaling figures compare 1 and 2 workers at SCALING_CONNECTIONS, enough
        # connections for two workers to share (see balanced).
        tokens_many = self.load_tokens(service, sign_rate, "fields", SCALING_CONNECTIONS)
        hook_many = self.load_hook(service, small, SCALING_CONNECTIONS)
        rss = max(rss_bytes(pid) for pid in worker_pids(service))
        self.procs.stop(service)

        # Before any other policy answers the pool: its calls' replay records (kept
        # HOOK_REPLAY_WINDOW) must hold the example policy's rule for the 2-worker run.
        log("growth: hook and tokens with serve --workers 2")
        two = self.procs.serve("service2", self.env, workers=2)
        self.warm(two, small)
        hook2 = self.load_hook(two, small, SCALING_CONNECTIONS)
        tokens2 = self.load_tokens(two, sign_rate, "fields", SCALING_CONNECTIONS)
        self.procs.stop(two)
        log("growth: policies of 1, 10 and 100 rules, and 10 with a 10-rule shadow, side by side")
        shadow_file = self.workdir / "policy_shadow.yaml"
        shadow_file.write_text(json.dumps(prepare.policy_with_rules(10)))  # JSON is YAML
        policies = self.policies_side_by_side(
            {
                **{str(count): (prepare.policy_with_rules(count), {}) for count in (1, 10, 100)},
                "10_shadowed": (
                    prepare.policy_with_rules(10),
                    {"HOOK_SHADOW_POLICY_FILE": str(shadow_file)},
                ),
            },
            small,
        )
        by_rules = {count: policies[str(count)].rate for count in (1, 10, 100)}
        shadowed = policies["10_shadowed"].rate
        log(f"growth: Redis memory for {REDIS_STEPS} pending steps")
        per_step = self.redis_bytes_per_step()
        log("facts: the hook with and without facts (replay check off: every call counts)")
        # Side by side, interleaved: the pair's ratios (0.7, 1.5) are closer than a single
        # 10-second run on a small machine is steady.
        facts_pair = self.policies_side_by_side(
            {
                "facts": (prepare.facts_policy(True), {}),
                "no_facts": (prepare.facts_policy(False), {}),
            },
            small,
        )
        with_facts, without_facts = facts_pair["facts"], facts_pair["no_facts"]
        log("growth: Redis memory per user with a month of history")
        per_user = self.redis_bytes_per_user()
        on_sentinel = sentinel_figures(self, large, hook_kyc, tokens, sign_rate)
        on_cluster: list[Figure] = []
        if self.cluster:
            single = cluster.Rates(hook.rate, hook_kyc.rate, tokens.rate, hook.p99_ms)
            on_cluster = cluster_figures(self, single, small, large, sign_rate)
        grown = (
            [] if self.scale is None else scale.figures(self, self.scale, sign_rate, record_pending)
        )

        signed, signing, signing_ed = floors.signed, floors.signing, floors.signing_ed25519
        return [
            *on_cluster,
            # The goals (issue 15): against floors doing the work the contract makes
            # unavoidable, measured in this run under the same server settings.
            Figure.ratio("hook req/s vs signed floor", hook.rate, signed.rate, 0.7),
            Figure.ratio(
                "hook req/s with custom step (Redis) vs signed floor",
                hook_kyc.rate,
                signed.rate,
                0.5,
            ),
            Figure.ratio(
                "hook req/s with facts (replay check off) vs signed floor",
                with_facts.rate,
                signed.rate,
                0.5,
            ),
            Figure.ratio_limit(
                f"hook p99 vs signed floor p99, {self.connections} conns",
                hook.p99_ms,
                signed.p99_ms,
                2.0,
                "ms",
            ),
            Figure.ratio("tokens/s (Redis) vs signing floor", tokens.rate, signing.rate, 0.8),
            Figure.ratio(
                "tokens/s, challenge_token form vs signing + Ed25519 floor",
                tokens_jwt.rate,
                signing_ed.rate,
                0.75,
            ),
            Figure.ratio(
                f"hook req/s, 2 workers vs 1 worker ({SCALING_CONNECTIONS} conns)",
                hook2.rate,
                hook_many.rate,
                1.7,
            ),
            Figure.ratio(
                f"tokens/s, 2 workers vs 1 worker ({SCALING_CONNECTIONS} conns)",
                tokens2.rate,
                tokens_many.rate,
                1.7,
            ),
            Figure.ratio("JWKS req/s vs bare route", jwks.rate, floors.bare.rate, 0.9),
            Figure.limit("worker RSS after the run", rss / 2**20, "MB", 120),
            Figure.ratio("hook req/s, 10 rules vs 1 rule", by_rules[10], by_rules[1], None),
            Figure.ratio("hook req/s, 100 rules vs 1 rule", by_rules[100], by_rules[1], 0.7),
            # Issue 12: a shadow policy may cost at most 10 % of the hook's throughput.
            Figure.ratio("hook req/s with a shadow policy vs without", shadowed, by_rules[10], 0.9),
            Figure.limit("Redis bytes per pending step", per_step, "B", 300, inclusive=True),
            # For continuity with earlier runs: the old floors (no goal any more).
            Figure.ratio("hook req/s vs bare route", hook.rate, floors.bare.rate, None),
            Figure.ratio(
                "hook req/s with custom step vs bare route", hook_kyc.rate, floors.bare.rate, None
            ),
            Figure.ratio("tokens/s vs raw RSA signs/s", tokens.rate, sign_rate, None),
            Figure.ratio(
                "tokens/s, challenge_token form vs raw sign + Ed25519 verify",
                tokens_jwt.rate,
                pair_rate,
                None,
            ),
            Figure.ratio("signed floor vs bare route", signed.rate, floors.bare.rate, None),
            Figure.ratio("signing floor vs raw RSA signs/s", signing.rate, sign_rate, None),
            Figure.ratio(
                "hook req/s with facts vs without", with_facts.rate, without_facts.rate, 0.7
            ),
            Figure.ratio_limit(
                f"hook p99 with facts vs without, {self.connections} conns",
                with_facts.p99_ms,
                without_facts.p99_ms,
                1.5,
                "ms",
            ),
            Figure.limit(
                "Redis bytes per user, a month of history", per_user, "B", 2048, inclusive=True
            ),
            *on_sentinel,
            *grown,
        ]

    def load_hook(self, server: Process, pool: Path, connections: int) -> WrkResult:
        """The hook (rule ``otp-only``) at ``connections``, on evenly loaded workers."""
        return self.balanced(
            server, lambda: self.load(server, pool, rule="otp-only", connections=connections)
        )

    def warm(self, server: Process, pool: Path) -> None:
        """A few sequential requests from ``pool`` first: imports, caches, connections."""
        requests = prepare.read_pool(pool)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for index in range(WARMUP_REQUESTS):
                request = requests[index % len(requests)]
                _send(client, request)

    def load_tokens(
        self,
        server: Process,
        sign_rate: float,
        form: prepare.TokenForm,
        connections: int | None = None,
    ) -> WrkResult:
        """:meth:`tokens_once` on evenly loaded workers (:meth:`balanced`)."""
        return self.balanced(server, lambda: self.tokens_once(server, sign_rate, form, connections))

    def balanced(self, server: Process, run: Callable[[], WrkResult]) -> WrkResult:
        """``run()``, run again while the workers' share of the load is uneven.

        uvicorn's workers accept from one shared socket and wrk opens all its connections at
        once, so one worker sometimes accepts every connection while the other idles (seen
        here with 32 connections). A deployment's connections come and go and even out; a run
        where a worker used less than half the CPU of the other is not that steady state."""
        pids = worker_pids(server)
        for attempt in range(1, BALANCE_ATTEMPTS + 1):
            before = [cpu_seconds(pid) for pid in pids]
            result = run()
            used = [cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
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
    ) -> WrkResult:
        """Tokens/s for distinct pending steps prepared in advance (a retry would skip signing:
        the service returns the same token), sized so the pool outlasts the run; ``form`` is
        the request form (design.md: explicit fields, or the frontend's challenge token)."""
        count = int(sign_rate * (os.cpu_count() or 1) * self.duration * 1.2) + 1000
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
        return self.load(server, pool, once=True, connections=connections)

    def policies_side_by_side(
        self, cases: dict[str, tuple[dict[str, Any], dict[str, str]]], pool: Path
    ) -> dict[str, WrkResult]:
        """The hook under each case's policy (its last rule, ``last``, decides) and variables,
        a server each, started together and loaded in interleaved rounds
        (:func:`scale.best_rounds`: the machine's other load falls on every case alike); each
        case's best round (its rate and that round's p99). ``HOOK_REPLAY_WINDOW=0``: the
        servers share one Redis and one pool, and a replay would get the answer another
        server's policy gave (deciding nothing, a shadow policy included)."""
        started: list[Process] = []
        runs: list[tuple[Process, list[Path]]] = []
        try:
            for name, (policy, env) in cases.items():
                policy_file = self.workdir / f"policy_{name}.yaml"
                policy_file.write_text(json.dumps(policy))  # JSON is YAML
                variables = {"HOOK_POLICY_FILE": str(policy_file), "HOOK_REPLAY_WINDOW": "0"}
                server = self.procs.serve(f"policy_{name}", {**self.env, **variables, **env})
                started.append(server)
                self.warm(server, pool)
                runs.append((server, [pool] * scale.ROUNDS))
            results = scale.best_rounds(self, runs, rule="last", once=False)
        finally:
            for server in reversed(started):
                self.procs.stop(server)
        return dict(zip(cases, results, strict=True))

    def redis_bytes_per_user(self) -> float:
        redis = self.procs.redis("redis_facts")
        try:
            url = f"redis://127.0.0.1:{redis.port}/0"
            return asyncio.run(bytes_per_user(url, self.env["HOOK_FACTS_KEY"]))
        finally:
            self.procs.stop(redis)

    def redis_bytes_per_step(self) -> float:
        redis = self.procs.redis("redis_memory")
        try:
            return asyncio.run(bytes_per_step(f"redis://127.0.0.1:{redis.port}/0"))
        finally:
            self.procs.stop(redis)


def _send(client: httpx.Client, request: prepare.PoolRequest) -> None:
    response = client.request(
        request.method,
        request.path,
        content=request.body.encode() or None,
        headers=dict(request.headers),
    )
    if not response.is_success:
        raise BenchError(f"warm-up {request.path}: {response.status_code} {response.text[:300]}")


@contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    if keep:
        yield Path(tempfile.mkdtemp(prefix="hook-bench-"))
        return
    with tempfile.TemporaryDirectory(prefix="hook-bench-") as path:
        yield Path(path)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.machine()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--quick", action="store_true", help="2 s runs: a smoke test")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, pools)")
    parser.add_argument(
        "--update-docs",
        # The figures used to live in the README; the old flag name still works.
        "--update-readme",
        dest="update_docs",
        type=Path,
        nargs="?",
        const=BENCH_DOC,
        metavar="FILE",
        help="rewrite the bench table block of FILE (default docs/benchmarks.md)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also the hook and token figures on a three-master Redis Cluster",
    )
    parser.add_argument(
        "--sentinel",
        action="store_true",
        help="also the hook and token figures on Sentinel (master, replica, WAIT 1)",
    )
    parser.add_argument(
        "--redis-clients",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the Redis clients' CPU and calls/s per script call (bench/redis_clients.py)",
    )
    parser.add_argument(
        "--scale",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="how cost grows: 1k/100k/1M users of history, 1M pending steps (--quick: 1k/10k/"
        "100k, 100k; bench/scale.py)",
    )
    parser.add_argument("--scale-only", action="store_true", help="only those figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 2.0
    if args.update_docs is not None:
        # Checked before the run, not after two minutes of it.
        try:
            replace_block(args.update_docs.read_text(), "")
        except (OSError, ValueError) as exc:
            parser.error(f"--update-docs {args.update_docs}: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    require_wrk()
    started = time.time()
    with _workdir(args.keep) as workdir:
        bench = Bench(args, workdir)
        try:
            figures = bench.run()
        except BenchError as exc:
            log(f"FAILED: {exc} (logs: {workdir}; --keep keeps them)")
            return 2
        finally:
            bench.procs.stop_all()
        # About 25 s: the Redis clients' cost per script call (docs/benchmarks.md).
        if args.redis_clients and not args.scale_only:
            redis_clients.report(workdir)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "nproc": os.cpu_count(),
        "machine": _cpu_model(),
        "python": platform.python_version(),
        "duration_s": args.duration,
        "connections": args.connections,
        "wrk_threads": 1,
        "elapsed_s": round(time.time() - started, 1),
    }
    args.output.write_text(
        json.dumps({**meta, "figures": [f.to_json() for f in figures]}, indent=2) + "\n"
    )
    print(text_table(figures))
    print(
        f"\n{sum(f.passed for f in figures if f.goal is not None)} of "
        f"{sum(f.goal is not None for f in figures)} goals met; {meta['nproc']} cores; "
        f"{meta['elapsed_s']} s; JSON: {args.output}"
    )
    table = markdown_table(figures, meta)
    if args.markdown:
        print("\n" + table)
    if args.update_docs is not None:
        args.update_docs.write_text(replace_block(args.update_docs.read_text(), table))
    missed = any(f.goal is not None and not f.passed for f in figures)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
