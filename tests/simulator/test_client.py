"""The simulator's wire over real sockets: a body that never ends is cut at its limit (64 KB
for the hook, contract 8; ``ANSWER_LIMIT`` for the rest) instead of being buffered whole, and a
redirect is an answer, not something followed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from hook_service.simulator.client import ANSWER_LIMIT, ServiceClient
from hook_service.simulator.lint import lint_hook_answer
from tests.simulator.support import sim_keys

pytestmark = pytest.mark.anyio

ENDLESS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)
REDIRECT = (
    b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


def _answer(connection: socket.socket, endless: bool) -> None:
    with connection:
        connection.recv(65536)  # the request; its content does not matter here
        if not endless:
            connection.sendall(REDIRECT)
            return
        chunk = b" " * 8192
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        connection.sendall(ENDLESS + b'2\r\n{"\r\n')
        try:
            while True:  # until the client hangs up
                connection.sendall(frame)
        except OSError:
            return


@pytest.fixture(params=[True, False], ids=["endless", "redirect"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    """A server answering every request with a never-ending JSON body, or with a redirect."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)  # guards a hang, never reached when the client behaves

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_answer, args=(connection, request.param), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", request.param
    listener.close()


async def test_endless_or_redirected_answers_end_in_a_clear_verdict(
    server: tuple[str, bool],
) -> None:
    url, endless = server
    async with httpx.AsyncClient() as http:
        service = ServiceClient(http, url, sim_keys(), api_key="k", time_limit=20)
        body = b"{}"
        hook = await service.call_hook(body, sim_keys().hook_headers(body))
        jwks = await service.get_jwks()
        token = await service.request_token({"user_id": "usr_x"})
    verdict = lint_hook_answer(hook, time_limit=20)
    if endless:
        # Cut at the limit well before the 20 s time limit: not request_failed.
        assert (verdict.reason, hook.truncated, len(hook.body)) == (
            "response_decode_failed",
            True,
            64 * 1024,
        )
        assert verdict.detail == "body larger than 65536 bytes"
        for answer in (jwks, token):
            assert (answer.status_code, answer.body) == (200, None)
            assert answer.error == f"HTTP 200 (over {ANSWER_LIMIT} bytes)"
    else:
        assert (verdict.reason, verdict.detail) == ("invalid_status_code", "HTTP 307: (empty body)")
        for answer in (jwks, token):
            assert answer.error == "HTTP 307 (no JSON body)"


async def test_the_backend_and_operator_calls_go_to_the_internal_url() -> None:
    async with httpx.AsyncClient() as http:
        check_routing(http)


def check_routing(http: httpx.AsyncClient) -> None:
    public = ServiceClient(http, "http://public:8000/", sim_keys())
    both = ServiceClient(http, "http://public:8000", sim_keys(), internal_url="http://in:8001/")
    assert public.url("/verification-token") == "http://public:8000/verification-token"
    assert both.url("/verification-token") == "http://in:8001/verification-token"
    assert both.url("/admin/keys/rotate") == "http://in:8001/admin/keys/rotate"
    assert both.url("/outcomes") == "http://in:8001/outcomes"
    assert both.url("/hooks/stepup") == "http://public:8000/hooks/stepup"
    assert both.url("/.well-known/jwks.json") == "http://public:8000/.well-known/jwks.json"
