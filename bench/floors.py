"""The floors of a bench run: the routes of bench/bare_app.py, bare Starlette doing only the
work the contract makes unavoidable (verify a signed call, sign a token), on one server under
the service's server settings and loaded like the service, so that the goals are ratios to
what this machine can do at best in the same run (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from . import prepare
from .load import WrkResult
from .rounds import Case
from .servers import Process

if TYPE_CHECKING:
    from .harness import Bench

# The floor routes of bench/bare_app.py.
FLOOR_SIGNED = "/signed"
FLOOR_SIGNING = "/signing"
FLOOR_SIGNING_ED25519 = "/signing-ed25519"


@dataclass(frozen=True, slots=True)
class FloorRates:
    """The floor routes' wrk results of one run."""

    bare: WrkResult
    signed: WrkResult
    signing: WrkResult
    signing_ed25519: WrkResult


def floor_pools_of(bench: Bench, hook_pool: Path) -> dict[str, Path]:
    """The floor routes' request pools, keyed by :class:`FloorRates`' fields: the bare route,
    the signed floor (replaying the hook pool's signed calls), the signing floor with and
    without one Ed25519 verification."""
    token_body = prepare.token_request(
        bench.keys, 0, api_key=bench.api_key, now=time.time(), form="fields"
    )
    return {
        "bare": bench.pool("bare", iter([prepare.PoolRequest("GET", "/", "")])),
        "signed": bench.pool("signed", prepare.at_path(prepare.read_pool(hook_pool), FLOOR_SIGNED)),
        "signing": bench.pool("signing", prepare.at_path([token_body], FLOOR_SIGNING)),
        "signing_ed25519": bench.pool(
            "signing_ed25519", prepare.at_path([token_body], FLOOR_SIGNING_ED25519)
        ),
    }


def floor_cases(bench: Bench, server: Process, pools: dict[str, Path]) -> dict[str, Case]:
    """The load runs of ``pools`` (:func:`floor_pools_of`, or some of them) on ``server``
    (bench/bare_app.py under the service's server settings), each pool warmed first."""
    for pool in pools.values():
        bench.warm(server, pool)

    def case(pool: Path) -> Case:
        return lambda round_, duration: bench.load(server, pool, duration=duration)

    return {name: case(pool) for name, pool in pools.items()}


def floor_rates(results: dict[str, WrkResult]) -> FloorRates:
    """The floors' results among the interleaved cases' (:func:`floor_cases`' keys)."""
    return FloorRates(**{f.name: results[f.name] for f in fields(FloorRates)})
