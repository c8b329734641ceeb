"""Docker for the deployment tests: a daemon, base images made from Debian packages, builds.

No registry image can be pulled here (nor on many bank build hosts), so the bases are made with
``debootstrap --variant=minbase`` and ``docker import``. The root file systems are cached as
tarballs under ``.cache/deploy/`` (ignored by git), keyed on what goes into them; a fresh clone
builds them. Every tool missing or not working FAILS the test with what to install: CI must
not silently drop the image test.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "deploy"
SUITE = "bookworm"
MIRROR = os.environ.get("DEBOOTSTRAP_MIRROR", "http://deb.debian.org/debian")
INSTALL_HINT = "apt-get install docker.io docker-compose debootstrap (`make test` does, as root)"
# One image test at a time on the machine: two private daemons would fight over iptables
# chains and bridge subnets. Other worktrees may run the suite at the same time.
LOCK_FILE = Path(tempfile.gettempdir()) / "prelude-stepup-hook-docker.lock"
LOCK_TIMEOUT = 900
DAEMON_START_TIMEOUT = 60
DEBOOTSTRAP_TIMEOUT = 600


def run(
    command: list[str], *, timeout: float, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with a bound on its time; on failure the error shows its output."""
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(command[:4])} … did not finish within {timeout} s: {exc.output}")
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command[:6])} … exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def tool(name: str, *candidates: str) -> str:
    for path in (*candidates, shutil.which(name)):
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail(f"{name} is required by the image test: {INSTALL_HINT}")


@contextmanager
def machine_lock() -> Iterator[None]:
    with LOCK_FILE.open("a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another image test held {LOCK_FILE} for {LOCK_TIMEOUT} s")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class Docker:
    """A docker client bound to one daemon (ours or the host's)."""

    client: str
    env: dict[str, str]

    def __call__(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([self.client, *args], timeout=timeout, env=self.env, check=check)

    def answers(self) -> bool:
        return (
            self("info", "--format", "{{.ServerVersion}}", timeout=10, check=False).returncode == 0
        )

    def inspect(self, name: str) -> dict[str, object]:
        document: list[dict[str, object]] = json.loads(self("inspect", name).stdout)
        return document[0]


def docker_client() -> str:
    # Debian's docker.io client has BuildKit built in (DOCKER_BUILDKIT=1: build secrets). A
    # newer client without the buildx plugin cannot build with BuildKit at all, so Debian's
    # comes first.
    return tool("docker", "/usr/bin/docker")


@contextmanager
def docker_daemon(state: Path) -> Iterator[Docker]:
    """The host's daemon when one answers; else a private dockerd started here (its own data
    root, exec root, pid file and socket under ``state``), stopped by its pid at the end."""
    client = docker_client()
    host = Docker(client, {**os.environ, "DOCKER_BUILDKIT": "1"})
    if host.answers():
        yield host
        return
    if os.geteuid() != 0:
        pytest.fail("no Docker daemon answers and starting one needs root")
    dockerd = tool("dockerd", "/usr/sbin/dockerd")
    socket = state / "docker.sock"
    log = (state / "dockerd.log").open("w")
    command = [dockerd, "--data-root", str(state / "data"), "--exec-root", str(state / "exec")]
    command += ["--pidfile", str(state / "dockerd.pid"), "--host", f"unix://{socket}"]
    command += ["--bridge", "none"]  # no docker0: compose makes its own network
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    ours = Docker(client, {**host.env, "DOCKER_HOST": f"unix://{socket}"})
    try:
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while not ours.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (state / "dockerd.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"dockerd did not start within {DAEMON_START_TIMEOUT} s:\n{tail}")
            time.sleep(0.5)
        yield ours
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(state / "data", ignore_errors=True)


@dataclass(frozen=True)
class Rootfs:
    """A Debian root file system made by debootstrap, then ``prepare`` run in it (chroot)."""

    name: str
    packages: tuple[str, ...]
    prepare: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        recipe = [SUITE, "minbase", MIRROR, sorted(self.packages), list(self.prepare)]
        return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]

    @property
    def tarball(self) -> Path:
        return CACHE / f"rootfs-{self.name}-{self.key}.tar.gz"

    def build(self) -> Path:
        """The cached tarball, made first when missing."""
        if self.tarball.exists():
            return self.tarball
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            target = Path(scratch) / "rootfs"
            debootstrap = [tool("debootstrap", "/usr/sbin/debootstrap"), "--variant=minbase"]
            debootstrap += [f"--include={','.join(self.packages)}", SUITE, str(target), MIRROR]
            run(debootstrap, timeout=DEBOOTSTRAP_TIMEOUT)
            for command in self.prepare:
                run(["chroot", str(target), "sh", "-c", command], timeout=60)
            # The downloaded .debs and package lists only make the image bigger.
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (target / leftover).glob("*"):
                    if path.is_file():
                        path.unlink()
            partial = Path(scratch) / "rootfs.tar.gz"
            run(["tar", "-C", str(target), "-czf", str(partial), "."], timeout=180)
            partial.rename(self.tarball)
        return self.tarball


def build_rootfs(*recipes: Rootfs) -> list[Path]:
    """Every recipe's tarball; the missing ones made side by side (debootstrap mostly waits on
    the network)."""
    if os.geteuid() != 0 and not all(recipe.tarball.exists() for recipe in recipes):
        pytest.fail("debootstrap needs root to make the base images")
    with ThreadPoolExecutor(max_workers=len(recipes)) as pool:
        return list(pool.map(Rootfs.build, recipes))
