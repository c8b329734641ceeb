"""Load generation with wrk (plus the Lua pool script) and the raw RSA signing floor."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

if TYPE_CHECKING:
    from .cpu import CpuWindow

LUA = Path(__file__).with_name("pool.lua")
READY = "BENCH_READY"  # bench/pool.lua's line on stderr once its pool is read
WRK_MISSING = (
    "wrk is required: install it with `apt-get install -y wrk` (Debian/Ubuntu; `make bench` "
    "does this when run as root)"
)


class BenchError(Exception):
    """A run that cannot give an honest figure (errors, exhausted pool, server died)."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration: float  # seconds
    non2xx: int  # non-2xx answers, or 2xx decided by another rule than expected
    socket_errors: int
    p50_ms: float
    p99_ms: float
    # With a CpuWindow (bench/cpu.py): each of the loaded server's workers' CPU and the whole
    # machine's busy CPU (every process, the kernel's network work too) during the run, and
    # the wall-clock seconds they were measured over.
    worker_cpu: tuple[float, ...] = ()
    machine_busy: float = 0.0
    cpu_window: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    @property
    def server_cpu(self) -> float:
        """The server's CPU during the run: all its workers', in seconds."""
        return sum(self.worker_cpu)

    @property
    def cpu_per_request_us(self) -> float:
        """The server's CPU per answered request, in µs."""
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def cores_busy(self) -> float:
        """How many of the machine's cores were busy on average during the run."""
        return self.machine_busy / self.cpu_window if self.cpu_window else 0.0


def require_wrk() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit(WRK_MISSING)
    return binary


def run_wrk(
    url: str,
    pool: Path,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    once: bool = False,
    rule: str | None = None,
    window: CpuWindow | None = None,
) -> WrkResult:
    """Load ``url`` with wrk for ``duration`` s, replaying the request-pool file ``pool``;
    ``window`` measures the CPU from when wrk has read the pool until it exits.

    Raises :class:`BenchError` if any response is not 2xx (or, with ``rule``, was not decided
    by that policy rule) or any socket error occurred: a benchmark that measures errors must
    fail loudly, not print a fast figure."""
    argv = [require_wrk(), "-t", str(threads), "-c", str(connections)]
    argv += ["-d", f"{max(1, round(duration))}s", "--timeout", "5s", "-s", str(LUA), url]
    argv += ["--", str(pool), "once" if once else "cycle", str(threads), *([rule] if rule else [])]
    returncode, stdout, stderr = _wrk(argv, threads, duration + 60, window)
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({returncode}): {stderr.strip()[-500:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    result = WrkResult(
        requests=data["requests"],
        duration=data["duration_us"] / 1e6,
        non2xx=data["bad"],
        socket_errors=sum(
            data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
    if window is not None:
        result = dataclasses.replace(
            result,
            worker_cpu=window.worker_cpu,
            machine_busy=window.machine_busy,
            cpu_window=window.seconds,
        )
    if result.non2xx or result.socket_errors or not result.requests:
        raise BenchError(
            f"{url}: {result.non2xx} non-2xx (or wrong-rule) responses and "
            f"{result.socket_errors} socket errors out of {result.requests} requests "
            "(pool exhausted or server failing; see its log)"
        )
    return result


def _wrk(
    argv: list[str], threads: int, timeout: float, window: CpuWindow | None
) -> tuple[int, str, str]:
    """Run wrk; ``window`` opens once every thread has written ``BENCH_READY`` (the end of
    bench/pool.lua's ``init``) and closes when wrk exits. Killed after ``timeout`` s."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        assert proc.stderr is not None
        before: list[str] = []
        ready = 0
        while ready < threads:
            got = proc.stderr.readline()
            if not got:
                break  # wrk ended (or failed) before its pool was read
            if got.strip() == READY:
                ready += 1
            else:
                before.append(got)
        if ready == threads and window is not None:
            window.start()
        stdout, stderr = proc.communicate()
        if window is not None:
            window.stop()
    finally:
        killer.cancel()
    return proc.returncode, stdout, "".join(before) + stderr


def rsa_sign_rate(
    duration: float, payload_size: int = 300, *, ed25519_verify: bool = False
) -> float:
    """Raw RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second, one thread, ``cryptography``.

    With ``ed25519_verify``, each signature is paired with the Ed25519 verification a
    ``challenge_token`` request also needs (contract sec. 6): the floor of that form."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    payload = b"x" * payload_size  # about the size of a verification token's signing input
    pad, algorithm = padding.PKCS1v15(), hashes.SHA256()
    challenge_key = ed25519.Ed25519PrivateKey.generate()
    challenge = challenge_key.sign(payload)
    challenge_public = challenge_key.public_key()

    def one() -> None:
        key.sign(payload, pad, algorithm)
        if ed25519_verify:
            challenge_public.verify(challenge, payload)

    for _ in range(20):  # warm-up
        one()
    count, start = 0, time.perf_counter()
    deadline = start + duration
    while True:
        for _ in range(50):
            one()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)
