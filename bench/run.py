"""``make bench``: measure the service against its floors in one run and print the ratios.

Everything runs on this machine over loopback: a private redis-server, the service under
``hook-service serve`` configured through ``HOOK_*`` variables like a deployment, the floors
(bench/bare_app.py: bare Starlette routes doing only the unavoidable work) under the same server
settings, and wrk replaying pools of pre-signed requests (the load generator does no crypto).
See docs/benchmarks.md for the figures and goals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import redis_clients, runs
from ._log import log
from .harness import Bench
from .load import BenchError, require_wrk
from .report import markdown_table, replace_block, text_table

# Where the figures of the last run are kept (--update-docs with no file).
BENCH_DOC = Path(__file__).parents[1] / "docs" / "benchmarks.md"


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
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per case (in interleaved rounds)"
    )
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
            figures = runs.figures(bench)
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
