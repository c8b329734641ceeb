"""Processes the benchmark starts on loopback: private redis-servers (one, or a Sentinel group:
master, replica, three Sentinels), ``hook-service serve`` and the floors under the same server
settings.

Every process is started here, tracked, and stopped by its own pid at the end."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import redis

from . import cluster

HOST = "127.0.0.1"
SENTINEL_MASTER = "benchmaster"
SENTINEL_QUORUM = 2


def sentinel_conf(port: int, master_port: int, workdir: Path) -> str:
    """The configuration of one bench Sentinel watching the master on ``master_port``."""
    return (
        f"port {port}\nbind {HOST}\ndir {workdir}\n"
        f"sentinel monitor {SENTINEL_MASTER} {HOST} {master_port} {SENTINEL_QUORUM}\n"
        f"sentinel down-after-milliseconds {SENTINEL_MASTER} 5000\n"
    )


def sentinel_env(sentinel_ports: list[int], min_replicas: int) -> dict[str, str]:
    """The service's variables for the Sentinels on ``sentinel_ports`` (instead of
    ``HOOK_REDIS_URL``), its writes waiting for ``min_replicas`` replicas."""
    return {
        "HOOK_REDIS_SENTINELS": ",".join(f"{HOST}:{port}" for port in sentinel_ports),
        "HOOK_REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        "HOOK_REDIS_MIN_REPLICAS": str(min_replicas),
    }


def free_port() -> int:
    """A loopback TCP port nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """A started child process, its port and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(process: Process) -> list[int]:
    """The uvicorn worker pids: the process itself with one worker, else its spawned workers
    (not multiprocessing's resource tracker, also a child)."""
    children = Path(f"/proc/{process.popen.pid}/task/{process.popen.pid}/children")
    pids = [int(p) for p in children.read_text().split()] if children.exists() else []
    workers = [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return workers or [process.popen.pid]


class Processes:
    """Starts children and stops all of them (newest first) on :meth:`stop_all`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Process] = []

    def _spawn(self, name: str, argv: list[str], port: int, env: dict[str, str]) -> Process:
        log = self.workdir / f"{name}.log"
        out: IO[bytes] = log.open("wb")
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        process = Process(name, popen, port, log)
        self.started.append(process)
        return process

    def redis(self, name: str = "redis", *extra: str) -> Process:
        port = free_port()
        directory = self.workdir / f"{name}_data"  # a replica's full sync writes an RDB there
        directory.mkdir(exist_ok=True)
        argv = [_binary("redis-server"), "--port", str(port), "--bind", HOST, "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(directory), *extra]
        process = self._spawn(name, argv, port, dict(os.environ))
        _wait(lambda: _redis_ping(port), process)
        return process

    def redis_cluster(self, name: str = "cluster") -> list[Process]:
        """Three masters joined by ``redis-cli --cluster create`` (bench/cluster.py)."""
        binary, cli = _binary("redis-server"), _binary("redis-cli")
        nodes = []
        for index in range(cluster.NODES):
            directory = self.workdir / f"{name}{index}"
            directory.mkdir()
            port = free_port()
            argv = cluster.node_argv(binary, port, free_port(), directory)
            nodes.append(self._spawn(f"{name}{index}", argv, port, dict(os.environ)))
        for node in nodes:
            _wait(lambda node=node: _redis_ping(node.port), node)  # type: ignore[misc]
        ports = [node.port for node in nodes]
        subprocess.run(cluster.create_argv(cli, ports), capture_output=True, timeout=60, check=True)
        _wait(lambda: all(_cluster_ok(port) for port in ports), nodes[0])
        return nodes

    def sentinel_group(self, name: str) -> tuple[list[Process], list[int]]:
        """A master, its replica (in sync) and three Sentinels that see both: the processes and
        the Sentinels' ports."""
        master = self.redis(f"{name}_master")
        replica = self.redis(f"{name}_replica", "--replicaof", HOST, str(master.port))
        # Up is not in sync: the master holds a full sync back repl-diskless-sync-delay (5 s)
        # for more replicas, and until it is done no write can reach WAIT 1's replica.
        _wait(functools.partial(_replica_in_sync, replica.port), replica)
        processes = [master, replica]
        for index in range(3):
            port = free_port()
            directory = self.workdir / f"{name}_sentinel_{index}"
            directory.mkdir()
            conf = directory / "sentinel.conf"
            conf.write_text(sentinel_conf(port, master.port, directory))
            argv = [_binary("redis-sentinel"), str(conf)]
            process = self._spawn(f"{name}_sentinel_{index}", argv, port, dict(os.environ))
            processes.append(process)
            _wait(functools.partial(_sentinel_sees_replica, port), process)
        return processes, [p.port for p in processes[2:]]

    def serve(self, name: str, env: dict[str, str], *, workers: int = 1) -> Process:
        """The service as it is deployed: ``hook-service serve`` (server.py: its bounded
        uvicorn protocols, one listener, ``workers`` processes), configured by ``env``."""
        return self._server(name, ["-m", "hook_service", "serve"], env, workers)

    def floors(self, name: str, env: dict[str, str]) -> Process:
        """The floor routes (bench/bare_app.py) under the same server settings, one worker."""
        return self._server(name, ["-m", "bench.bare_app"], env, 1)

    def _server(self, name: str, args: list[str], env: dict[str, str], workers: int) -> Process:
        port = free_port()
        # HOOK_HOST and HOOK_PORT: the public listener; no internal one (one socket).
        listen = {"HOOK_HOST": HOST, "HOOK_PORT": str(port), "HOOK_WORKERS": str(workers)}
        process = self._spawn(name, [sys.executable, *args], port, {**os.environ, **env, **listen})
        _wait(lambda: _http_up(process.url), process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        self.started.remove(process)

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(host=HOST, port=port, socket_timeout=1, decode_responses=True)
    try:
        return dict(client.cluster("info")).get("cluster_state") == "ok"
    except redis.RedisError:
        return False
    finally:
        client.close()


def _binary(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        raise SystemExit(f"{name} is required: apt-get install {name}")
    return binary


def _sentinel_sees_replica(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(f"SENTINEL REPLICAS {SENTINEL_MASTER}\r\n".encode())
            reply = sock.recv(4096)
    except OSError:
        return False
    # An array of replicas, the first one up ("flags" is "slave", not "s_down,slave").
    return reply.startswith(b"*") and not reply.startswith(b"*0") and b"s_down" not in reply


def _replica_in_sync(port: int) -> bool:
    client = redis.Redis(host=HOST, port=port, socket_timeout=1, decode_responses=True)
    try:
        return client.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False
    finally:
        client.close()


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _http_up(url: str) -> bool:
    try:
        # Any answer (even 404/405) means the server is accepting requests.
        httpx.get(url + "/healthz", timeout=0.5)
    except httpx.HTTPError:
        return False
    return True


def _wait(ready: Callable[[], bool], process: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{process.name} did not become ready within {timeout:.0f} s")
