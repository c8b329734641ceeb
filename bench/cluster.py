"""``python -m bench.run --cluster``: the hook and token figures on a three-master Redis
Cluster (``HOOK_REDIS_CLUSTER=true``), beside the same figures on one Redis in the same run.

The cluster is three private ``redis-server`` processes on loopback (``cluster-enabled yes``,
no replicas) joined by ``redis-cli --cluster create``; the service is configured exactly as
for one Redis but for ``HOOK_REDIS_URL`` (the first node) and ``HOOK_REDIS_CLUSTER``. The
figures are ratios to the single-Redis run (no goal yet: docs/deploying.md, "Redis Cluster").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .report import Figure

NODES = 3


@dataclass(frozen=True, slots=True)
class Rates:
    """The figures compared: hook calls (no custom step, and with one) and tokens, per s."""

    hook: float
    hook_kyc: float
    tokens: float
    hook_p99_ms: float


def node_argv(binary: str, port: int, bus_port: int, directory: Path) -> list[str]:
    """One cluster master: no persistence, its own node file, an explicit bus port (the
    default, port + 10000, may be out of range for a high free port)."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        str(bus_port),
        "--cluster-config-file",
        "nodes.conf",
    ]


def create_argv(cli: str, ports: list[int]) -> list[str]:
    """``redis-cli --cluster create`` for ``ports``: every one a master, no replicas."""
    if len(ports) < NODES:
        raise ValueError(f"a Redis Cluster needs at least {NODES} masters, got {len(ports)}")
    addresses = [f"127.0.0.1:{port}" for port in ports]
    return [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]


def cluster_env(env: dict[str, str], ports: list[int]) -> dict[str, str]:
    """The service's variables for the cluster: any node's URL and the switch."""
    return {
        **env,
        "HOOK_REDIS_URL": f"redis://127.0.0.1:{ports[0]}/0",
        "HOOK_REDIS_CLUSTER": "true",
    }


def figures(single: Rates, cluster: Rates, connections: int) -> list[Figure]:
    """The cluster's figures as ratios to one Redis's (measured in the same run)."""
    name = f"{NODES}-master cluster vs one Redis"
    return [
        Figure.ratio(f"hook req/s, {name}", cluster.hook, single.hook, None),
        Figure.ratio(
            f"hook req/s with custom step, {name}", cluster.hook_kyc, single.hook_kyc, None
        ),
        Figure.ratio(f"tokens/s, {name}", cluster.tokens, single.tokens, None),
        Figure.limit(
            f"hook p99 latency on the cluster, {connections} conns", cluster.hook_p99_ms, "ms", 10
        ),
    ]
