"""The service's runs of ``make bench`` in their order, and the figures and goals they give.

The floors (bench/floors.py) beside the service under ``hook-service serve``, one worker
(the hook with and without a custom step, JWKS, tokens in both request forms), in
interleaved rounds (bench/rounds.py); one worker beside two at :data:`SCALING_CONNECTIONS`;
policies of 1, 10 and 100 rules and a shadow policy side by side; Redis memory per pending
step; the hook with and without facts beside a signed floor; Redis memory per user; then,
when asked for, the same figures on Sentinel and on a Cluster (bench/topologies.py) and how
cost grows (bench/scale.py). Each figure is a ratio to
a floor or to another run of the same machine in the same run (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cluster, prepare, scale
from ._log import log
from .cpu import where_ratios_come_from
from .facts import bytes_per_user
from .floors import floor_cases, floor_pools_of, floor_rates
from .load import WrkResult, rsa_sign_rate
from .pending import REDIS_STEPS, bytes_per_step, record_pending
from .report import Figure
from .rounds import ROUNDS, Case, interleaved
from .servers import Process, rss_bytes, worker_pids
from .topologies import cluster_figures, sentinel_figures

if TYPE_CHECKING:
    from .harness import Bench

JWKS_PATH = "/.well-known/jwks.json"
SCALING_CONNECTIONS = 32
HOOK_POOL_SIZE = 2000  # distinct signed hook calls; wrk cycles through them


def figures(bench: Bench) -> list[Figure]:
    """Every run on ``bench``'s processes in order (with ``--scale-only`` bench/scale.py's
    alone) and their figures, in the order of the table."""
    redis = bench.procs.redis()
    bench.env["HOOK_REDIS_URL"] = bench.redis_target = f"redis://127.0.0.1:{redis.port}/0"
    log("raw RSA-2048 PKCS#1 v1.5 SHA-256 signing in this process (the old floor)")
    sign_rate = rsa_sign_rate(min(bench.duration, 5.0))
    if bench.scale is not None and bench.scale_only:
        return scale.figures(bench, bench.scale, sign_rate, record_pending)
    pair_rate = rsa_sign_rate(min(bench.duration, 5.0), ed25519_verify=True)
    log(f"  {sign_rate:.0f} signs/s, {pair_rate:.0f} with an Ed25519 verify; request pools")
    jwks_pool = bench.pool("jwks", iter([prepare.PoolRequest("GET", JWKS_PATH, "")]))
    small = bench.pool("hook", prepare.hook_pool(bench.keys, HOOK_POOL_SIZE, amount="50"))
    large = bench.pool("hook_kyc", prepare.hook_pool(bench.keys, HOOK_POOL_SIZE, amount="5000"))

    # The floors and the service side by side, their load runs interleaved: every ratio to a
    # floor compares runs of the same minutes (bench/rounds.py).
    floor_pools = floor_pools_of(bench, small)
    floor_server = bench.procs.floors("floors", bench.env)
    service = bench.procs.serve("service", bench.env)
    cases = floor_cases(bench, floor_server, floor_pools)
    # Each hook pool once whole: every round then answers the same mix (replays of calls
    # decided here), not the first round the pool's first pass as well.
    bench.warm(service, small, HOOK_POOL_SIZE)
    bench.warm(service, large, HOOK_POOL_SIZE)
    bench.warm(service, jwks_pool)

    def load(pool: Path, rule: str | None = None) -> Case:
        return lambda round_, duration: bench.load(service, pool, rule=rule, duration=duration)

    def tokens_case(rate: float, form: prepare.TokenForm) -> Case:
        return lambda round_, duration: bench.tokens_once(service, rate, form, duration=duration)

    # The example policy's rules: otp-only (no custom step), large-transfer (kyc_review).
    cases |= {
        "hook": load(small, "otp-only"),
        "hook_kyc": load(large, "large-transfer"),
        "jwks": load(jwks_pool),
        "tokens": tokens_case(sign_rate, "fields"),
        "tokens_jwt": tokens_case(pair_rate, "challenge_token"),
    }
    log(f"floors and service (hook-service serve, 1 worker), {ROUNDS} interleaved rounds")
    best = interleaved(cases, bench.duration)
    bench.procs.stop(floor_server)
    floors = floor_rates(best)
    hook, hook_kyc, jwks = best["hook"], best["hook_kyc"], best["jwks"]
    tokens, tokens_jwt = best["tokens"], best["tokens_jwt"]
    # The scaling figures compare 1 and 2 workers at SCALING_CONNECTIONS, enough
    # connections for two workers to share (see balanced); the two services side by side,
    # interleaved as above. Before any other policy answers the pool: its calls' replay
    # records (kept HOOK_REPLAY_WINDOW) must hold the example policy's rule.
    log(f"growth: hook and tokens with serve --workers 1 and 2, {ROUNDS} interleaved rounds")
    two = bench.procs.serve("service2", bench.env, workers=2)
    bench.warm(two, small)

    def scaling(server: Process) -> dict[str, Case]:
        return {
            f"hook_{server.name}": lambda round_, duration: bench.load_hook(
                server, small, SCALING_CONNECTIONS, duration=duration
            ),
            f"tokens_{server.name}": lambda round_, duration: bench.load_tokens(
                server, sign_rate, "fields", SCALING_CONNECTIONS, duration=duration
            ),
        }

    scaled = interleaved({**scaling(service), **scaling(two)}, bench.duration)
    hook_many, tokens_many = scaled[f"hook_{service.name}"], scaled[f"tokens_{service.name}"]
    hook2, tokens2 = scaled[f"hook_{two.name}"], scaled[f"tokens_{two.name}"]
    rss = max(rss_bytes(pid) for pid in worker_pids(service))
    bench.procs.stop(service)
    bench.procs.stop(two)
    log("growth: policies of 1, 10 and 100 rules, and 10 with a 10-rule shadow, side by side")
    shadow_file = bench.workdir / "policy_shadow.yaml"
    shadow_file.write_text(json.dumps(prepare.policy_with_rules(10)))  # JSON is YAML
    policies = _policies_side_by_side(
        bench,
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
    per_step = _redis_bytes_per_step(bench)
    log("facts: the hook with and without facts (replay check off: every call counts)")
    # Side by side, interleaved: the pair's ratios (0.7, 1.5) are closer than a single
    # 10-second run on a small machine is steady; the signed floor in the same rounds, for
    # "hook with facts vs signed floor".
    facts_floor = bench.procs.floors("floors_facts", bench.env)
    facts_pair = _policies_side_by_side(
        bench,
        {
            "facts": (prepare.facts_policy(True), {}),
            "no_facts": (prepare.facts_policy(False), {}),
        },
        small,
        floor_cases(bench, facts_floor, {"signed": floor_pools["signed"]}),
    )
    bench.procs.stop(facts_floor)
    with_facts, without_facts = facts_pair["facts"], facts_pair["no_facts"]
    log("growth: Redis memory per user with a month of history")
    per_user = _redis_bytes_per_user(bench)
    on_sentinel = sentinel_figures(bench, large, hook_kyc, tokens, sign_rate)
    on_cluster: list[Figure] = []
    if bench.cluster:
        single = cluster.Rates(hook.rate, hook_kyc.rate, tokens.rate, hook.p99_ms)
        on_cluster = cluster_figures(bench, single, small, large, sign_rate)
    grown = (
        [] if bench.scale is None else scale.figures(bench, bench.scale, sign_rate, record_pending)
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
            facts_pair["signed"].rate,
            0.5,
        ),
        Figure.ratio_limit(
            f"hook p99 vs signed floor p99, {bench.connections} conns",
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
        *where_ratios_come_from(
            {
                "hook call": (hook, signed),
                "hook call with custom step": (hook_kyc, signed),
                "hook call with facts": (with_facts, facts_pair["signed"]),
                "token": (tokens, signing),
                "token, challenge_token form": (tokens_jwt, signing_ed),
            },
            {
                "hook": (hook_many, hook2),
                "tokens": (tokens_many, tokens2),
            },
        ),
        Figure.ratio("hook req/s with facts vs without", with_facts.rate, without_facts.rate, 0.7),
        Figure.ratio_limit(
            f"hook p99 with facts vs without, {bench.connections} conns",
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


def _policies_side_by_side(
    bench: Bench,
    cases: dict[str, tuple[dict[str, Any], dict[str, str]]],
    pool: Path,
    beside: dict[str, Case] | None = None,
) -> dict[str, WrkResult]:
    """The hook under each case's policy (its last rule, ``last``, decides) and variables,
    a server each, started together and loaded in interleaved rounds
    (:func:`bench.rounds.interleaved`: the machine's other load falls on every case alike); each
    case's best round (its rate and that round's p99). ``HOOK_REPLAY_WINDOW=0``: the
    servers share one Redis and one pool, and a replay would get the answer another
    server's policy gave (deciding nothing, a shadow policy included). The cases ``beside``
    (a floor) are loaded in the same rounds, and their results returned too."""
    started: list[Process] = []
    runs: dict[str, Case] = {}
    try:
        for name, (policy, env) in cases.items():
            policy_file = bench.workdir / f"policy_{name}.yaml"
            policy_file.write_text(json.dumps(policy))  # JSON is YAML
            variables = {"HOOK_POLICY_FILE": str(policy_file), "HOOK_REPLAY_WINDOW": "0"}
            server = bench.procs.serve(f"policy_{name}", {**bench.env, **variables, **env})
            started.append(server)
            bench.warm(server, pool)
            runs[name] = scale.load_case(bench, server, [pool] * ROUNDS, rule="last", once=False)
        return interleaved(runs | (beside or {}), bench.duration)
    finally:
        for server in reversed(started):
            bench.procs.stop(server)


def _redis_bytes_per_user(bench: Bench) -> float:
    """:func:`bench.facts.bytes_per_user` on a fresh redis-server of its own."""
    redis = bench.procs.redis("redis_facts")
    try:
        url = f"redis://127.0.0.1:{redis.port}/0"
        return asyncio.run(bytes_per_user(url, bench.env["HOOK_FACTS_KEY"]))
    finally:
        bench.procs.stop(redis)


def _redis_bytes_per_step(bench: Bench) -> float:
    """:func:`bench.pending.bytes_per_step` on a fresh redis-server of its own."""
    redis = bench.procs.redis("redis_memory")
    try:
        return asyncio.run(bytes_per_step(f"redis://127.0.0.1:{redis.port}/0"))
    finally:
        bench.procs.stop(redis)
