"""How cost grows (issue 15 point 5): the hook with 1,000, 100,000 and 1,000,000 users of
history in Redis, and tokens with 1,000,000 pending steps, each against the smallest case in
the same run (goal >= 0.9: nothing in the hot path may grow with the number of users).

The users' history is written by :func:`bench.history.populate` (a few real months, copied
with DUMP/RESTORE under each user's own key names). Every case has a fresh ``redis-server``
and service of its own.

On a small shared machine, whatever else runs moves a 10-second figure by more than
the 10 % the goals allow; so the cases run side by side, their load runs interleaved in
:data:`~bench.rounds.ROUNDS` rounds sharing the run's duration (bench/rounds.py), and each
case keeps its best round.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import prepare
from ._log import log
from .history import Population, populate
from .load import WrkResult
from .report import Figure
from .rounds import ROUNDS, Case, interleaved
from .servers import HOST, Process

if TYPE_CHECKING:
    from .harness import Bench

POOL_USERS = 1000  # distinct users of each hook pool, drawn among the populated ones
WARM_TOKENS = 200
SEED = 15  # the users drawn are the same from one run to the next

RecordPending = Callable[[str, list[str]], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Sizes:
    """The users of history of each hook case (the first is the one compared against) and the
    pending steps of the large tokens case."""

    users: tuple[int, ...]
    pending: int

    @classmethod
    def full(cls) -> Sizes:
        return cls((1_000, 100_000, 1_000_000), 1_000_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls((1_000, 10_000, 100_000), 100_000)


@dataclass(frozen=True, slots=True)
class HookCase:
    """The hook's run with ``users`` users of history, and what their history takes in
    Redis."""

    users: int
    result: WrkResult
    population: Population


def label(count: int) -> str:
    """``1k``, ``100k``, ``1M``: a count as the figures name it."""
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return str(count)


def figures(
    bench: Bench, sizes: Sizes, sign_rate: float, record_pending: RecordPending
) -> list[Figure]:
    """Runs every case of ``sizes`` on ``bench``'s processes and returns their figures."""
    cases = hook_cases(bench, sizes.users)
    few, many = tokens_cases(bench, sizes.pending, sign_rate, record_pending)
    base = cases[0]
    rows: list[Figure] = []
    for case in cases[1:]:
        rows.append(
            Figure.ratio(
                f"hook req/s with facts, {label(case.users)} users of history vs "
                f"{label(base.users)}",
                case.result.rate,
                base.result.rate,
                0.9,
            )
        )
    for case in cases:
        rows.append(
            Figure(
                f"Redis used_memory, {label(case.users)} users of history",
                case.population.memory / 2**20,
                "MB",
                None,
                None,
                "below",
            )
        )
    for case in cases[1:]:
        # Memory may not grow faster than the users: per user within 1 / 0.9 of the smallest.
        rows.append(
            Figure.ratio_limit(
                f"Redis bytes per user, {label(case.users)} users vs {label(base.users)}",
                case.population.per_user,
                base.population.per_user,
                1.1,
                "B",
            )
        )
    rows.append(
        Figure.ratio(
            f"tokens/s, {label(sizes.pending)} pending steps vs few",
            many.rate,
            few.rate,
            0.9,
        )
    )
    return rows


def hook_cases(bench: Bench, sizes: tuple[int, ...]) -> list[HookCase]:
    """For each of ``sizes``: a fresh Redis holding that many users of history and the hook
    under :func:`prepare.facts_policy` (rules reading facts; HOOK_REPLAY_WINDOW=0 as for the
    facts figures) on it, its pool calling :data:`POOL_USERS` distinct users drawn among
    them; then their load runs, interleaved (rule ``last``)."""
    policy_file = bench.workdir / "policy_scale.yaml"
    policy_file.write_text(json.dumps(prepare.facts_policy(True)))  # JSON is YAML
    started: list[Process] = []
    runs: list[tuple[Process, list[Path]]] = []
    populations = []
    try:
        for users in sizes:
            log(f"scale: {label(users)} users of history in Redis, a service on it")
            redis = bench.procs.redis(f"redis_scale_{users}")
            started.append(redis)
            population = asyncio.run(populate(redis.port, bench.env["HOOK_FACTS_KEY"], users))
            populations.append(population)
            log(f"  {population.memory / 2**20:.1f} MB, {population.per_user:.0f} B per user")
            drawn = random.Random(SEED + users).sample(range(users), min(POOL_USERS, users))  # noqa: S311
            pool = bench.pool(
                f"scale_hook_{users}",
                (
                    prepare.hook_request(bench.keys, prepare.hook_body(i, amount="50"))
                    for i in drawn
                ),
            )
            env = {
                **bench.env,
                "HOOK_POLICY_FILE": str(policy_file),
                "HOOK_REPLAY_WINDOW": "0",
                "HOOK_REDIS_URL": f"redis://{HOST}:{redis.port}/0",
            }
            server = bench.procs.serve(f"scale_hook_{users}", env)
            started.append(server)
            bench.warm(server, pool)
            runs.append((server, [pool] * ROUNDS))
        log(f"scale: the hook with facts, {ROUNDS} interleaved rounds")
        results = best_rounds(bench, runs, rule="last", once=False)
    finally:
        for process in reversed(started):
            bench.procs.stop(process)
    for users, result in zip(sizes, results, strict=True):
        log(f"  {label(users)} users: {result.rate:.0f} req/s")
    return [HookCase(*case) for case in zip(sizes, results, populations, strict=True)]


def best_rounds(
    bench: Bench, runs: list[tuple[Process, list[Path]]], *, rule: str | None, once: bool
) -> list[WrkResult]:
    """Round by round, each server loaded with its pool of that round for duration / ROUNDS
    (:func:`bench.rounds.interleaved`); each one's best round."""
    cases = {str(i): load_case(bench, *run, rule=rule, once=once) for i, run in enumerate(runs)}
    return list(interleaved(cases, bench.duration).values())


def load_case(
    bench: Bench, server: Process, pools: list[Path], *, rule: str | None, once: bool
) -> Case:
    """``server`` loaded with ``pools[round]`` at the run's connections, as a :data:`Case`."""

    return lambda round_, duration: bench.load(
        server, pools[round_], once=once, rule=rule, duration=duration
    )


def tokens_cases(
    bench: Bench, pending: int, sign_rate: float, record_pending: RecordPending
) -> tuple[WrkResult, WrkResult]:
    """Tokens (explicit form), two services each on a fresh Redis: one holding only the steps
    its pools claim, the other ``pending`` steps (recorded through the service's RedisStore)
    among which its pools' steps are drawn; their load runs interleaved."""
    # As Bench.tokens_once: enough distinct steps to outlast each round.
    count = int(sign_rate * (os.cpu_count() or 1) * bench.duration / ROUNDS * 1.2) + 1000
    needed = WARM_TOKENS + ROUNDS * count
    drawn = random.Random(SEED).sample(range(pending), needed)  # noqa: S311
    started: list[Process] = []
    runs: list[tuple[Process, list[Path]]] = []
    try:
        for name, steps, indices in (
            ("few", range(needed), list(range(needed))),
            (label(pending), range(pending), drawn),
        ):
            log(f"scale: {len(steps)} pending steps in Redis, a service on it")
            redis = bench.procs.redis(f"redis_scale_tokens_{name}")
            started.append(redis)
            url = f"redis://{HOST}:{redis.port}/0"
            asyncio.run(record_pending(url, [prepare.token_subject(i)[0] for i in steps]))
            server = bench.procs.serve(f"scale_tokens_{name}", {**bench.env, "HOOK_REDIS_URL": url})
            started.append(server)
            pools = [
                _token_pool(bench, f"{name}_{part}", indices[start : start + count])
                for part, start in enumerate(range(WARM_TOKENS, needed, count))
            ]
            bench.warm(server, _token_pool(bench, f"{name}_warm", indices[:WARM_TOKENS]))
            runs.append((server, pools))
        log(f"scale: tokens, {ROUNDS} interleaved rounds")
        few, many = best_rounds(bench, runs, rule=None, once=True)
    finally:
        for process in reversed(started):
            bench.procs.stop(process)
    log(f"  {few.rate:.0f} tokens/s with few, {many.rate:.0f} with {label(pending)}")
    return few, many


def _token_pool(bench: Bench, name: str, indices: list[int]) -> Path:
    """A pool claiming the pending steps of token subjects ``indices``, each once."""
    now = time.time()  # read by the challenge_token form only
    return bench.pool(
        f"scale_tokens_{name}",
        (
            prepare.token_request(bench.keys, i, api_key=bench.api_key, now=now, form="fields")
            for i in indices
        ),
    )
