"""``hook-service serve --workers N`` (issue 13, point 2): a real multi-worker serve, each
worker answering on the listeners bound from HOOK_PORT and HOOK_INTERNAL_PORT, with the same
settings."""

from __future__ import annotations

import base64
import os
import socket
import time
from pathlib import Path

import httpx

from tests.server.conftest import Runner
from tests.server.test_limits import answer_of, read_to_end
from tests.server.test_listeners import hook, token_request
from tests.support import TEST_KEK

MAX_TRIES = 200


def children(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent:
                found.add(int(entry))
    return found


def socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of the loopback connection from ``client_port``."""
    local, remote = f":{server_port:04X}", f":{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(local) and fields[2].endswith(remote):
            return fields[9]
    return None


def owner(pids: set[int], inode: str) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def test_two_workers_both_answer_with_the_same_settings(serve: Runner, redis_url: str) -> None:
    served = serve(
        "--workers",
        "2",
        internal=True,
        HOOK_REDIS_URL=redis_url,
        HOOK_KEYSTORE="file",
        HOOK_KEY_ENCRYPTION_KEYS=base64.b64encode(TEST_KEK).decode(),
        HOOK_FACTS_KEY=base64.b64encode(bytes(range(32, 64))).decode(),
        HOOK_READ_TIMEOUT="2",
    )
    workers = children(served.process.pid)
    answered: dict[int, int] = {}
    held = []
    try:
        for _ in range(MAX_TRIES):
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
            held.append(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
            inode = socket_inode(served.port, sock.getsockname()[1])
            assert inode is not None
            pid = owner(workers, inode)
            assert pid is not None
            answered[pid] = answered.get(pid, 0) + 1
            if len(answered) == 2:
                break
            time.sleep(0.01)
    finally:
        for sock in held:
            sock.close()
    assert len(answered) == 2, answered

    # Every worker has both listeners and the same settings: the internal paths only on the
    # internal port, the read timeout, one store (Redis) for a step and its token.
    for _ in range(4):
        assert httpx.get(served.url + "/openapi.json").status_code == 404
        assert httpx.get(served.internal_url + "/openapi.json").status_code == 200
        assert hook(served.url).json()["status"] == "review"
        assert token_request(served.internal_url).status_code == 200
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
        status, body = answer_of(read_to_end(sock))
    assert (status, body["detail"]) == (408, "the request did not arrive within 2 s")
