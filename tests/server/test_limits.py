"""Request heads are bounded whichever parser runs (issue 10, point 1): the gauge on its own,
then over real sockets against ``hook-service serve --http httptools`` and ``--http h11``."""

from __future__ import annotations

import json
import select
import socket
from typing import Any

import httpx
import pytest

from hook_service.errors import HeadersTooLarge, UriTooLong
from hook_service.protocols import FIELDS_LIMIT, LINE_LIMIT, HeadGauge
from tests.server.conftest import Served

CHUNK = 1024
# Past the bound, the client waits this long for the answer before it sends more.
ANSWER_WAIT = 5.0


def feed(gauge: HeadGauge, *reads: bytes) -> Any:
    for data in reads:
        error = gauge.feed(data)
        if error is not None:
            return error
    return None


def test_the_gauge_allows_a_request_line_of_exactly_the_limit() -> None:
    line = b"GET /" + b"a" * (LINE_LIMIT - len(b"GET / HTTP/1.1\r\n")) + b" HTTP/1.1\r\n"
    assert len(line) == LINE_LIMIT
    assert feed(HeadGauge(), line, b"Host: x\r\n\r\n") is None
    assert isinstance(feed(HeadGauge(), b"G" + line), UriTooLong)


def test_the_gauge_refuses_a_long_request_line_before_it_ends() -> None:
    gauge = HeadGauge()
    assert feed(gauge, b"GET /" + b"a" * (LINE_LIMIT - 5)) is None
    assert isinstance(gauge.feed(b"a"), UriTooLong)


def test_the_gauge_counts_header_fields_up_to_the_blank_line() -> None:
    fields = b"X-A: " + b"b" * (FIELDS_LIMIT - len(b"X-A: \r\n\r\n")) + b"\r\n\r\n"
    assert len(fields) == FIELDS_LIMIT
    gauge = HeadGauge()
    # A body after the head, however large, is not the gauge's business.
    assert feed(gauge, b"POST / HTTP/1.1\r\n", fields + b"x" * 10 * FIELDS_LIMIT) is None
    assert gauge.ended
    over = HeadGauge()
    assert isinstance(feed(over, b"POST / HTTP/1.1\r\nX: 1\r\n", fields), HeadersTooLarge)


@pytest.mark.parametrize("split", [1, 2, 3])
def test_the_gauge_sees_a_blank_line_split_across_reads(split: int) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    cut = len(head) - split
    gauge = HeadGauge()
    assert feed(gauge, head[:cut]) is None
    assert not gauge.ended
    assert feed(gauge, head[cut:]) is None
    assert gauge.ended


def test_the_gauge_reads_bare_line_feeds_and_leading_blank_lines() -> None:
    gauge = HeadGauge()
    assert feed(gauge, b"\r\n\r\nGET / HTTP/1.0\n\n") is None
    assert gauge.ended and gauge.line == len(b"\r\n\r\nGET / HTTP/1.0\n")
    endless = HeadGauge()  # blank lines before the request line count against its bound
    assert isinstance(feed(endless, *[b"\r\n" * 512] * 9), UriTooLong)


def push(port: int, prefix: bytes, chunk: bytes, bound: int) -> tuple[int, bytes]:
    """Send ``prefix`` then ``chunk`` after ``chunk`` on one connection. Once past ``bound``
    bytes, wait for an answer before each further chunk. Returns the bytes sent when the
    server answered (or closed) and what it sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(prefix)
        sent += len(prefix)
        while sent < bound + 16 * CHUNK:
            wait = ANSWER_WAIT if sent > bound else 0
            if select.select([sock], [], [], wait)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        return sent, read_to_end(sock)


def read_to_end(sock: socket.socket) -> bytes:
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        pass
    return received


def answer_of(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "chunk",
    [b"a" * CHUNK, b"X-Filler: " + b"f" * (CHUNK - 12) + b"\r\n"],
    ids=["one long field", "many fields"],
)
def test_oversized_headers_get_431_after_the_bound(bounded: Served, chunk: bytes) -> None:
    rss = bounded.rss_kib()
    prefix = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    sent, raw = push(bounded.port, prefix, chunk, FIELDS_LIMIT + len(prefix))
    status, body = answer_of(raw)
    assert (status, body["error"]) == (431, "headers_too_large")
    # Refused on the read that crossed the bound: nothing more had been sent.
    assert sent <= FIELDS_LIMIT + len(prefix) + len(chunk)
    assert bounded.rss_kib() - rss < 8 * 1024
    assert httpx.get(bounded.url + "/healthz").json() == {"status": "ok"}


def test_an_oversized_url_gets_414_after_the_bound(bounded: Served) -> None:
    sent, raw = push(bounded.port, b"GET /", b"a" * CHUNK, LINE_LIMIT)
    status, body = answer_of(raw)
    assert (status, body["error"]) == (414, "uri_too_long")
    assert sent <= LINE_LIMIT + CHUNK
    assert httpx.get(bounded.url + "/healthz").json() == {"status": "ok"}


def test_heads_within_the_bounds_are_served(bounded: Served) -> None:
    headers = {f"x-field-{i}": "v" * 100 for i in range(100)}  # ~11 KiB of fields
    answer = httpx.get(bounded.url + "/healthz?" + "q" * 7000, headers=headers)
    assert answer.json() == {"status": "ok"}


def test_each_request_on_a_kept_alive_connection_gets_its_own_bound(bounded: Served) -> None:
    """The next request's head is counted from its own start, not from the connection's."""
    with httpx.Client() as client:
        fields = {"x-a": "b" * (FIELDS_LIMIT - 1024)}
        assert client.get(bounded.url + "/healthz", headers=fields).status_code == 200
        assert client.get(bounded.url + "/healthz", headers=fields).status_code == 200
        over = client.get(bounded.url + "/healthz", headers={"x-a": "b" * (FIELDS_LIMIT + 1)})
        assert over.status_code == 431
        assert over.json()["error"] == "headers_too_large"
