"""CPU measured around each load run, and the rows of the table it gives.

A load run (bench/load.py ``run_wrk``) opens its :class:`CpuWindow` when wrk says its pool is
parsed (bench/pool.lua writes ``BENCH_READY`` at the end of ``init``) and closes it when wrk
exits: the window holds the run, not the seconds wrk spends reading a pool of tens of
thousands of requests before it. Over it, the loaded server's CPU (its workers) and the whole
machine's busy CPU. :func:`where_ratios_come_from` turns them into the table's rows that say
what the goal ratios are made of (docs/benchmarks.md, "What the goals ask of a machine").
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .report import Figure
from .servers import cpu_seconds

if TYPE_CHECKING:
    from .load import WrkResult


def machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idling so far (/proc/stat's ``cpu`` line:
    every field but idle and iowait; guest time is already counted in user). Steal, time the
    host took from these virtual cores, counts as busy: it was not free for the run either."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """Each server process's CPU (``pids``, the workers) and the machine's busy CPU, in
    seconds, between :meth:`start` and :meth:`stop`, and the wall-clock ``seconds`` between
    them (all 0 when never started)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.worker_cpu: tuple[float, ...] = ()
        self.machine_busy = self.seconds = 0.0
        self._start: tuple[tuple[float, ...], float, float] | None = None

    @property
    def server_cpu(self) -> float:
        return sum(self.worker_cpu)

    def _now(self) -> tuple[tuple[float, ...], float, float]:
        workers = tuple(cpu_seconds(p) for p in self.pids)
        return workers, machine_busy_seconds(), time.monotonic()

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> None:
        if self._start is None:
            return
        (workers, busy, wall), (workers_end, busy_end, wall_end) = self._start, self._now()
        self.worker_cpu = tuple(b - a for a, b in zip(workers, workers_end, strict=True))
        self.machine_busy, self.seconds = busy_end - busy, wall_end - wall


def where_ratios_come_from(
    per_request: dict[str, tuple[WrkResult, WrkResult]],
    scaled: dict[str, tuple[WrkResult, WrkResult]],
) -> list[Figure]:
    """What the goal ratios are made of, no goal: each case's server CPU per request against
    its floor's (a rate ratio is about the inverse of this one while the server is the
    bottleneck), and how many of the machine's cores the 1- and 2-worker runs kept busy
    (wrk, Redis and the kernel's share included: a 2-worker run that keeps every core busy
    cannot go faster on this machine). The cores are the machine's, as /proc/stat counts."""
    cores = float(os.cpu_count() or 1)
    figures = [
        Figure.compared(
            f"server CPU per {what} vs its floor's",
            case.cpu_per_request_us,
            floor.cpu_per_request_us,
            "µs",
        )
        for what, (case, floor) in per_request.items()
    ]
    for what, (one, two) in scaled.items():
        figures.append(
            Figure.compared(f"cores busy, {what}, 1 worker", one.cores_busy, cores, "cores")
        )
        figures.append(
            Figure.compared(f"cores busy, {what}, 2 workers", two.cores_busy, cores, "cores")
        )
    return figures
