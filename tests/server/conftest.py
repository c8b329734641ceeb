"""A real ``hook-service serve`` process on free loopback ports, for the server's tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import ADMIN_TOKEN, API_KEY, free_port

START_TIMEOUT = 60


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    internal_port: int | None
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        assert self.internal_port is not None
        return f"http://127.0.0.1:{self.internal_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_kib(self) -> int:
        """Resident memory of the serving process (one worker)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])


def serve_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment without any HOOK_* of the caller's, plus a development configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOK_")}
    env.update(
        HOOK_INSECURE_SKIP_SIGNATURE="true",
        HOOK_KEYS_DIR=str(tmp_path / "keys"),
        HOOK_API_KEYS=API_KEY,
        HOOK_ADMIN_TOKENS=ADMIN_TOKEN,
        HOOK_LOG_LEVEL="WARNING",
    )
    env.update(variables)
    return env


def wait_until_up(served: Served, within: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(served.url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if served.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"serve did not come up:\n{served.output()[-3000:]}")
        time.sleep(0.1)


class Runner:
    """Starts ``hook-service serve`` processes in ``workdir``; :meth:`stop` ends them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Served] = []

    def __call__(self, *flags: str, internal: bool = False, **variables: str) -> Served:
        """``serve *flags`` with HOOK_PORT (and HOOK_INTERNAL_PORT when ``internal``) on free
        ports and ``variables`` added to a development environment; up when this returns."""
        port = free_port()
        internal_port = free_port() if internal else None
        env = serve_env(self.workdir, HOOK_PORT=str(port), **variables)
        if internal_port is not None:
            env["HOOK_INTERNAL_PORT"] = str(internal_port)
        log = self.workdir / f"serve-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "hook_service", "serve", *flags],
                env=env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        served = Served(process, port, internal_port, log)
        self.started.append(served)
        wait_until_up(served)
        return served

    def stop(self) -> None:
        for served in self.started:
            served.process.terminate()
        for served in self.started:
            try:
                served.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                served.process.kill()
                served.process.wait(timeout=5)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Runner]:
    """Start ``hook-service serve`` processes for one test; stopped after it."""
    runner = Runner(tmp_path)
    try:
        yield runner
    finally:
        runner.stop()


@pytest.fixture(scope="module", params=["httptools", "h11"])
def bounded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One ``serve --http <parser>`` per parser, shared by a module's tests."""
    runner = Runner(tmp_path_factory.mktemp("serve"))
    try:
        yield runner("--http", request.param, HOOK_READ_TIMEOUT="3")
    finally:
        runner.stop()
