"""The service's figures again on the other Redis topologies it supports, beside the same
figures on one Redis in the same run: a Sentinel group whose writes wait for a replica
(``--sentinel``) and a three-master Redis Cluster (``--cluster``, with bench/cluster.py).

Each run points the service, and the pending steps its token pools claim, at the topology
for its own runs only; the one Redis comes back afterwards (docs/deploying.md, "Choosing
Redis").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hook_service._redis_target import RedisTarget

from . import cluster
from ._log import log
from .load import WrkResult
from .report import Figure
from .servers import HOST, SENTINEL_MASTER, sentinel_env

if TYPE_CHECKING:
    from .harness import Bench


def sentinel_target(ports: list[int], min_replicas: int) -> RedisTarget:
    """What the service makes of :func:`~bench.servers.sentinel_env`'s variables."""
    return RedisTarget(
        sentinels=tuple((HOST, port) for port in ports),
        master=SENTINEL_MASTER,
        min_replicas=min_replicas,
    )


def sentinel_figures(
    bench: Bench, large: Path, hook_kyc: WrkResult, tokens: WrkResult, sign_rate: float
) -> list[Figure]:
    """With ``--sentinel``: the hook with a custom step and the tokens again, on a Sentinel
    group (master, replica, three Sentinels) with ``HOOK_REDIS_MIN_REPLICAS=1``, beside the
    same figures on one Redis (docs/deploying.md, "Choosing Redis")."""
    if not bench.sentinel:
        return []
    log("Sentinel: hook with custom step and tokens, writes waiting for 1 replica")
    group, ports = bench.procs.sentinel_group("sentinel")
    env = {k: v for k, v in bench.env.items() if k != "HOOK_REDIS_URL"}
    env |= sentinel_env(ports, min_replicas=1)
    one_redis, bench.redis_target = bench.redis_target, sentinel_target(ports, 1)
    service = bench.procs.serve("service_sentinel", env)
    try:
        bench.warm(service, large)
        hook = bench.load(service, large, rule="large-transfer")
        sentinel_tokens = bench.load_tokens(service, sign_rate, "fields")
    finally:
        bench.redis_target = one_redis
        for process in [service, *reversed(group)]:
            bench.procs.stop(process)
    return [
        Figure.ratio(
            "hook req/s with custom step, Sentinel + WAIT 1 vs one Redis",
            hook.rate,
            hook_kyc.rate,
            None,
        ),
        Figure.ratio(
            "tokens/s, Sentinel + WAIT 1 vs one Redis", sentinel_tokens.rate, tokens.rate, None
        ),
    ]


def cluster_figures(
    bench: Bench, single: cluster.Rates, small: Path, large: Path, sign_rate: float
) -> list[Figure]:
    """With ``--cluster``: the hook and token figures again, the service on a three-master
    Redis Cluster (bench/cluster.py), as ratios to ``single``, the same figures on one Redis."""
    log(f"cluster: hook, custom step, tokens on {cluster.NODES} masters (1 worker)")
    nodes = bench.procs.redis_cluster()
    saved, bench.env = bench.env, cluster.cluster_env(bench.env, [n.port for n in nodes])
    one_redis = bench.redis_target
    bench.redis_target = RedisTarget(url=bench.env["HOOK_REDIS_URL"], cluster=True)
    try:
        service = bench.procs.serve("service_cluster", bench.env)
        bench.warm(service, small)
        bench.warm(service, large)
        hook = bench.load(service, small, rule="otp-only")
        hook_kyc = bench.load(service, large, rule="large-transfer")
        tokens = bench.load_tokens(service, sign_rate, "fields")
        bench.procs.stop(service)
    finally:
        bench.env, bench.redis_target = saved, one_redis
        for node in nodes:
            bench.procs.stop(node)
    rates = cluster.Rates(hook.rate, hook_kyc.rate, tokens.rate, hook.p99_ms)
    return cluster.figures(single, rates, bench.connections)
