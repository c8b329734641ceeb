"""Interleaved rounds: how a bench run compares cases on a small shared machine.

Whatever else runs on the machine moves a single 10-second figure by 10 to 20 %, a floor as
much as the service, and a ratio of two such figures taken minutes apart more (two runs of
2026-12-02 gave a bare route of 19,593/s and of 10,300/s). So the cases of a ratio are loaded
in :data:`ROUNDS` rounds that share the run's duration, one case after the other, every other
round in reverse order (no case always follows the same one), and each case keeps its best
round: a disturbance then costs one round of every case alike, not one case's figure.
wrk runs whole seconds: a round of 10 / 3 s is 3 s (at least 1 s).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .load import WrkResult

ROUNDS = 3  # load runs per case, each of duration / ROUNDS; the best one counts

Case = Callable[[int, float], WrkResult]
"""One case's load run: called with the round (0 to ROUNDS - 1) and its duration (s)."""


def interleaved(cases: Mapping[str, Case], duration: float) -> dict[str, WrkResult]:
    """Each case's best round (by rate; its p99 is that round's) of :data:`ROUNDS` rounds of
    ``duration / ROUNDS`` seconds, the cases interleaved round by round."""
    best: dict[str, WrkResult] = {}
    names = list(cases)
    for round_ in range(ROUNDS):
        for name in names if round_ % 2 == 0 else reversed(names):
            result = cases[name](round_, duration / ROUNDS)
            kept = best.get(name)
            if kept is None or result.rate > kept.rate:
                best[name] = result
    return {name: best[name] for name in names}
