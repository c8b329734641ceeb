"""A real Redis Sentinel deployment for the tests: a master, a replica and three Sentinels
(quorum 2) from Debian's ``redis-server`` and ``redis-sentinel``, on free loopback ports, no
persistence, with short failure detection (``down-after-milliseconds`` 1 s) so a failover takes
seconds. conftest.py's fixtures ``sentinel_group`` (session) and ``sentinel_group_factory`` (a
group of its own, for failover tests) build it; :class:`Deployment` is what a behavioural
suite parametrised over "one Redis" and "Sentinel" gets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis

from hook_service._redis_target import RedisTarget
from tests.support import free_port, stop_process

MASTER_NAME = "hookmaster"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
READY_TIMEOUT = 20.0


class Server(Protocol):
    """What this module uses of conftest's ``RedisServer``."""

    port: int

    @property
    def url(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def running(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where a suite's stores go (``target``: a URL, or Sentinel's :class:`RedisTarget`) and
    the URL of the server that holds the data now (``url``), for looking at it directly."""

    target: RedisTarget | str
    url: str


def _ask(port: int, *command: str, timeout: float = 1.0) -> Any:
    client = redis.Redis(port=port, socket_timeout=timeout, decode_responses=True)
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.close()


class SentinelProcess:
    """One ``redis-sentinel`` monitoring :data:`MASTER_NAME`."""

    def __init__(self, binary: str, directory: Path, master_port: int) -> None:
        self.binary = binary
        self.directory = directory
        self.master_port = master_port
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for _attempt in range(5):
            self.port = free_port()
            conf = self.directory / "sentinel.conf"  # Sentinel rewrites it: one per process
            conf.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            with (self.directory / "sentinel.log").open("ab") as log:
                self._process = subprocess.Popen(
                    [self.binary, str(conf)], stdout=log, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._process.poll() is None:
                try:
                    if _ask(self.port, "PING", timeout=0.5):
                        return
                except redis.RedisError:
                    time.sleep(0.02)
            self.stop()
        log_tail = (self.directory / "sentinel.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"redis-sentinel did not start; log tail:\n{log_tail}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout=5)


class SentinelGroup:
    """A master, a replica and three Sentinels; :meth:`target` is what the service is given."""

    def __init__(
        self, sentinel_binary: str, make_server: Callable[..., Server], directory: Path
    ) -> None:
        self._binary = sentinel_binary
        self._make_server = make_server
        self._directory = directory
        self.servers: list[Server] = []
        self.sentinels: list[SentinelProcess] = []

    def start(self) -> None:
        master = self._make_server()
        replica = self._make_server("--replicaof", "127.0.0.1", str(master.port))
        self.servers = [master, replica]
        for index in range(3):
            directory = self._directory / f"sentinel-{index}"
            directory.mkdir(parents=True, exist_ok=True)
            sentinel = SentinelProcess(self._binary, directory, master.port)
            self.sentinels.append(sentinel)
            sentinel.start()
        self.wait_ready()

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()

    def target(self, min_replicas: int = 1) -> RedisTarget:
        """The Sentinels and the master's name, as ``HOOK_REDIS_SENTINELS`` etc. give them."""
        return RedisTarget(
            sentinels=tuple(("127.0.0.1", s.port) for s in self.sentinels),
            master=MASTER_NAME,
            min_replicas=min_replicas,
        )

    def deployment(self, min_replicas: int = 1) -> Deployment:
        return Deployment(self.target(min_replicas), self.master().url)

    def master_port(self) -> int:
        """The master's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                _host, port = _ask(
                    sentinel.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME
                )
                return int(port)
            except (redis.RedisError, TypeError):
                continue
        raise AssertionError("no Sentinel answers")

    def master(self) -> Server:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def replica(self) -> Server:
        port = self.master_port()
        return next(s for s in self.servers if s.port != port)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every Sentinel agrees on one master, sees the other two Sentinels and one
        replica up, and the replica's link to the master is up: a failover can then be made."""
        deadline = time.monotonic() + timeout
        why = "not asked yet"
        while time.monotonic() < deadline:
            why = self._not_ready()
            if not why:
                return
            time.sleep(0.1)
        raise AssertionError(f"the Sentinel group is not ready after {timeout} s: {why}")

    def _not_ready(self) -> str:
        try:
            ports = set()
            for sentinel in self.sentinels:
                client = redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True)
                try:
                    state: Any = client.sentinel_master(MASTER_NAME)
                    replicas: Any = client.sentinel_slaves(MASTER_NAME)
                finally:
                    client.close()
                if state["is_sdown"] or state["is_odown"]:
                    return f"Sentinel {sentinel.port} sees the master down"
                if state["num-other-sentinels"] < 2:
                    return f"Sentinel {sentinel.port} does not see the other Sentinels yet"
                if not [r for r in replicas if not r["is_sdown"] and not r["is_odown"]]:
                    return f"Sentinel {sentinel.port} sees no replica up"
                ports.add(int(state["port"]))
            if len(ports) != 1:
                return f"the Sentinels name different masters: {ports}"
            info = _ask(self.replica().port, "INFO", "replication")
            if info.get("master_link_status") != "up":
                return "the replica is not in sync with the master"
        except redis.RedisError as exc:
            return f"{type(exc).__name__}: {exc}"
        return ""

    def reset(self) -> None:
        """Empty, and the replica in sync (a test starts from there)."""
        client = redis.Redis.from_url(self.master().url, socket_timeout=5)
        try:
            client.flushall()
            if client.execute_command("WAIT", 1, 5000) < 1:  # type: ignore[no-untyped-call]
                raise AssertionError("the replica did not acknowledge the FLUSHALL")
        finally:
            client.close()

    def force_failover(self) -> None:
        """``SENTINEL FAILOVER``: the replica is promoted, the master demoted, no one down."""
        _ask(self.sentinels[0].port, "SENTINEL", "FAILOVER", MASTER_NAME)

    def kill_master(self) -> Server:
        """SIGKILL the master (no shutdown, no last replication): the Sentinels must notice."""
        master = self.master()
        os.kill(master.pid, signal.SIGKILL)
        return master
