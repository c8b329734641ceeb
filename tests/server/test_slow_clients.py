"""Slow clients (issue 10, point 2): HOOK_READ_TIMEOUT for a request's head and body, and
HOOK_MAX_CONNECTIONS per listener and worker, over real sockets against ``hook-service serve``.
Loopback only; every loop has a deadline."""

from __future__ import annotations

import errno
import json
import resource
import selectors
import socket
import time
from typing import Any

import httpx

from tests.server.conftest import Runner, Served
from tests.server.test_limits import answer_of, read_to_end
from tests.support import hook_body

SLOW = 2000
READ_TIMEOUT = 3
# A loaded machine may close a connection late; never early.
SLACK = 8.0
TRICKLE_EVERY = 0.5
SLOW_HEAD = b"POST /hooks/stepup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-S"


def allow_open_files(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count, hard), hard))


def hook(url: str) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return httpx.post(url + "/hooks/stepup", content=hook_body(), headers=headers, timeout=10)


class SlowClients:
    """``count`` connections that send a request head one byte at a time, never finishing it."""

    def __init__(self, port: int, count: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.opened: dict[socket.socket, float] = {}
        self.closed: dict[socket.socket, tuple[float, bytes]] = {}
        self.received: dict[socket.socket, bytes] = {}
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(SLOW_HEAD)
            sock.setblocking(False)
            self.opened[sock] = time.monotonic()
            self.received[sock] = b""
            self.selector.register(sock, selectors.EVENT_READ)

    @property
    def still_open(self) -> list[socket.socket]:
        return [sock for sock in self.opened if sock not in self.closed]

    def poll(self, wait: float) -> None:
        for key, _ in self.selector.select(wait):
            sock: Any = key.fileobj
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            self.received[sock] += data
            if not data:
                self._close(sock)

    def trickle(self) -> None:
        for sock in self.still_open:
            try:
                sock.send(b"s")
            except BlockingIOError:
                pass
            except OSError as exc:  # closed by the server
                assert exc.errno in (errno.EPIPE, errno.ECONNRESET), exc
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        self.closed[sock] = (time.monotonic(), self.received[sock])
        self.selector.unregister(sock)
        sock.close()

    def run_until_closed(self, within: float) -> None:
        deadline = time.monotonic() + within
        next_trickle = 0.0
        while self.still_open and time.monotonic() < deadline:
            if time.monotonic() >= next_trickle:
                self.trickle()
                next_trickle = time.monotonic() + TRICKLE_EVERY
            self.poll(0.05)

    def close_all(self) -> None:
        for sock in self.still_open:
            self._close(sock)
        self.selector.close()


def test_2000_slow_clients_neither_starve_a_hook_nor_outlive_the_read_timeout(
    serve: Runner,
) -> None:
    allow_open_files(SLOW + 512)
    served = serve(HOOK_READ_TIMEOUT=str(READ_TIMEOUT))
    slow = SlowClients(served.port, SLOW)
    try:
        answer = hook(served.url)
        slow.poll(0)
        # Every slow connection was still open while the fresh hook request was answered.
        assert len(slow.still_open) == SLOW
        assert answer.status_code == 200
        assert answer.headers["x-hook-rule"] == "large-transfer"
        assert answer.json()["status"] == "review"
        slow.run_until_closed(READ_TIMEOUT + SLACK)
        assert slow.still_open == []
        for sock, (closed_at, received) in slow.closed.items():
            lived = closed_at - slow.opened[sock]
            assert READ_TIMEOUT - 0.1 <= lived <= READ_TIMEOUT + SLACK
            status, body = answer_of(received)
            assert (status, body["error"]) == (408, "request_timeout")
    finally:
        slow.close_all()
    assert hook(served.url).json()["status"] == "review"


def test_a_body_slower_than_the_read_timeout_gets_408(bounded: Served) -> None:
    head = b"POST /hooks/stepup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=20) as sock:
        sock.sendall(head + b"Content-Length: 1000\r\n\r\n" + hook_body()[:10])
        status, body = answer_of(read_to_end(sock))
    assert (status, body["error"]) == (408, "request_timeout")
    assert "3 s" in body["detail"]
    assert httpx.get(bounded.url + "/healthz").json() == {"status": "ok"}


def test_a_connection_that_sends_nothing_is_closed_too(bounded: Served) -> None:
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=20) as sock:
        status, body = answer_of(read_to_end(sock))
    assert (status, body["error"]) == (408, "request_timeout")


def test_over_the_cap_one_request_then_close_503_but_for_the_hook_and_a_cap_per_listener(
    serve: Runner,
) -> None:
    served = serve(internal=True, HOOK_MAX_CONNECTIONS="50", HOOK_READ_TIMEOUT="30")
    idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(50)]
    try:
        refused = httpx.get(served.url + "/healthz")
        assert refused.status_code == 503
        assert refused.json()["error"] == "overloaded"
        assert refused.headers["connection"] == "close"
        # The hook is never a 5xx: answered as usual, on a connection closed after it.
        answered = hook(served.url)
        assert answered.json()["status"] == "review"
        assert answered.headers["connection"] == "close"
        # The public listener is full; the internal one counts its own connections.
        assert httpx.get(served.internal_url + "/openapi.json").status_code == 200
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while (answer := httpx.get(served.url + "/healthz")).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.05)
    assert json.loads(answer.content) == {"status": "ok"}
